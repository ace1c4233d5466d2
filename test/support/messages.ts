// The JSON a device receives on its actions and state topics, typed as far as the tests read it.

export interface ActionMessage {
  id: string;
  rule: string;
  kind: string;
  key?: string;
  value?: unknown;
  why: string;
}

export interface StateMessage {
  subject: string | null;
  profile: Record<string, unknown>;
}

export const parseAction = (payload: string): ActionMessage => JSON.parse(payload) as ActionMessage;

export const parseState = (payload: string): StateMessage => JSON.parse(payload) as StateMessage;
