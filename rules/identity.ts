import { createHash } from "node:crypto";
import type { RuleMessage } from "./message.ts";

/**
 * What makes a record itself: its device and the time it is stored at (unique
 * per series, see ingest/points.ts). A presence change is not stored as a
 * record; its device, time and kind name it.
 */
export function recordIdentity(msg: RuleMessage): string {
  if (msg.kind === "presence") return `${msg.device}|p${msg.ts}|${msg.event}|${msg.reason ?? ""}`;
  return `${msg.device}|${msg.micros ?? `ms${msg.ts}`}`;
}

/**
 * An action's id, derived from the rule, its target and the record that
 * triggered it (and which of the rule's actions it is): a node that takes a
 * partition over and evaluates a record again proposes the same id, and the
 * action log refuses the second one.
 */
export function actionIdOf(rule: string, target: string, record: string, index: number): string {
  const digest = createHash("sha256").update(`${rule}\n${target}\n${record}\n${index}`).digest();
  return `act_${digest.subarray(0, 12).toString("base64url")}`;
}
