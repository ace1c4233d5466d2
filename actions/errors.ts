/** The `rule` of a change the customer (or an admin for them) made to their own profile; no rule id can take it. */
export const CUSTOMER_RULE = "@customer";

export class ActionError extends Error {
  constructor(
    readonly code: "ACTION_NOT_FOUND" | "ACTION_NOT_UNDOABLE" | "ACTION_NOT_ANSWERABLE",
    message: string,
  ) {
    super(message);
  }
}
