/**
 * The action lifecycle as a type and one transition function. Every status
 * an action ever passes through is kept in its history; `nextStatus` says
 * which of them move the action itself.
 */

export type ActionKind = "set" | "suggest" | "clear" | "notify";

export const ACTION_STATUSES = [
  "proposed",
  "delivered",
  "applied",
  "accepted",
  "declined",
  "failed",
  "expired",
  "undone",
  "withdrawn",
] as const;
export type ActionStatus = (typeof ACTION_STATUSES)[number];

/** Statuses after which nothing but undo can happen. */
export const FINAL: ReadonlySet<ActionStatus> = new Set(["applied", "declined", "failed", "expired", "undone"]);

/**
 * The action's status after `incoming` is recorded, or undefined when it
 * stays as it is: a late or repeated ack never moves a finished action back.
 */
export function nextStatus(current: ActionStatus, incoming: ActionStatus): ActionStatus | undefined {
  // A pending delivery taken back (the shared device's session ended) says nothing about the action itself.
  if (incoming === "withdrawn") return undefined;
  if (incoming === "delivered" && current !== "proposed") return undefined;
  if (current === "undone" || (FINAL.has(current) && incoming !== "undone")) return undefined;
  return incoming;
}

/** Only a suggestion still waiting for its answer can be accepted or declined through the API. */
export const answerable = (action: { kind: ActionKind; status: ActionStatus }): boolean =>
  action.kind === "suggest" && (action.status === "proposed" || action.status === "delivered");

/** An applied set or clear, or an accepted suggestion, is in effect and can be undone. */
export const undoable = (action: { kind: ActionKind; status: ActionStatus }): boolean =>
  action.kind === "set" || action.kind === "clear"
    ? action.status !== "undone"
    : action.kind === "suggest" && action.status === "applied";
