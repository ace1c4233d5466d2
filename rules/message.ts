import type { DeviceMessage } from "../ingest/index.ts";

/**
 * A device's session came or went (from the broker's presence events). It is
 * operational, about the device only: it never carries a subject.
 */
export interface PresenceMessage {
  kind: "presence";
  device: string;
  subject: undefined;
  ts: number;
  tsFromDevice: false;
  event: "connect" | "disconnect" | "will";
  /** Why a session ended (disconnects only), e.g. clean, keepalive_timeout, revoked. */
  reason: string | undefined;
  transport: string | undefined;
}

/** Everything a rule can be triggered by. */
export type RuleMessage = DeviceMessage | PresenceMessage;
