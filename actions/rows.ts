import type { Point } from "../store/index.ts";
import type { ActionLogEvent, ProfileEvent } from "./events.ts";
import { ACTION_LOG } from "./queries.ts";

export { ACTION_LOG };
export const PROFILE_CHANGES = "profile_changes";

/** A stored row as the influx client answers it: `time` carries nanoseconds when the store has them. */
type StoredRow = Record<string, unknown> & { time: Date & { getNanoTime?: () => string } };

/** A field as text; InfluxDB answers strings, numbers and booleans. */
const text = (v: unknown): string | undefined =>
  typeof v === "string" ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : undefined;

/** The row's timestamp in microseconds, the precision points are written with. */
export function rowMicros(time: StoredRow["time"]): number {
  const nanos = time.getNanoTime?.();
  return nanos === undefined ? time.getTime() * 1000 : Number(BigInt(nanos) / 1000n);
}

/** The action_log point that records the event. */
export function actionLogPoint(event: ActionLogEvent): Point {
  const optional = (fields: Record<string, string | undefined>) =>
    Object.fromEntries(Object.entries(fields).filter((entry): entry is [string, string] => entry[1] !== undefined));
  const fields =
    event.status === "proposed"
      ? {
          action: event.action,
          status: event.status,
          rule: event.rule,
          kind: event.kind,
          key: event.key,
          owner: event.owner,
          why: event.why,
          ...optional({
            value: event.value,
            previous: event.previous,
            prompt: event.prompt,
            subject: event.subject,
            cause: event.cause,
          }),
        }
      : {
          action: event.action,
          status: event.status,
          ...optional({ by: event.by, reason: event.reason, previous: event.previous }),
        };
  return {
    measurement: ACTION_LOG,
    tags: event.device ? { device: event.device } : {},
    fields,
    timestamp: String(event.micros),
  };
}

/**
 * The change a stored action_log row is; lenient about fields older rows
 * lack, as the rebuild always was. Answers undefined for a row that is no action.
 */
export function actionLogEventOf(row: StoredRow): unknown {
  const base = { action: row.action, status: row.status, device: text(row.device) ?? "", micros: rowMicros(row.time) };
  if (row.status !== "proposed")
    return { ...base, by: text(row.by), reason: text(row.reason), previous: text(row.previous) };
  return {
    ...base,
    rule: text(row.rule) ?? "",
    kind: text(row.kind) ?? "set",
    key: text(row.key) ?? "",
    owner: text(row.owner) ?? `device:${text(row.device) ?? ""}`,
    why: text(row.why) ?? "",
    value: text(row.value),
    previous: text(row.previous),
    prompt: text(row.prompt),
    subject: text(row.subject),
    cause: text(row.cause),
  };
}

export function profilePoint(event: ProfileEvent): Point {
  return {
    measurement: PROFILE_CHANGES,
    tags: { owner: event.owner },
    fields: {
      key: event.key,
      op: event.op,
      action: event.action,
      ...(event.op === "set" && event.value !== undefined ? { value: event.value } : {}),
    },
    timestamp: String(event.micros),
  };
}

export function profileEventOf(row: StoredRow): unknown {
  return {
    owner: row.owner,
    key: row.key,
    op: row.op === "set" ? "set" : "clear",
    value: text(row.value),
    action: text(row.action) ?? "",
    micros: rowMicros(row.time),
  };
}
