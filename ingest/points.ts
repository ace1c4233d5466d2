import { nextMicros } from "../store/clock.ts";
import { toLine, type FieldValue, type Line } from "./lineprotocol.ts";
import type { DeviceMessage } from "./messages.ts";

/**
 * The storage schema of device data (docs/schema.md). Tags are only bounded
 * identifiers (device id, subject id, event name), all validated at the edge;
 * free text and values are always fields, so series cardinality grows with the
 * fleet, never with the data.
 *
 * The timestamp is decided here, once, before the line is batched or spooled:
 * a device-stated `ts` maps to exactly that time (a redelivered message
 * overwrites its own point), otherwise the receipt time with a unique
 * microsecond, so a replay from the spool rewrites the same points. The
 * message keeps it (`micros`): with the device, it is the record's identity,
 * which rules derive action ids from.
 */
export function toDeviceLine(msg: DeviceMessage): Line {
  const micros = (msg.micros ??= msg.tsFromDevice ? msg.ts * 1000 : nextMicros(msg.ts));
  const tags: Array<[string, string]> = [["device", msg.device]];
  if (msg.kind === "event") tags.push(["event", msg.name]);
  if (msg.subject !== undefined) tags.push(["subject", msg.subject]);
  switch (msg.kind) {
    case "telemetry":
      return toLine("telemetry", tags, msg.metrics, micros);
    case "event":
      return toLine("events", tags, { props: JSON.stringify(msg.props) }, micros);
    case "feedback": {
      const fields: Record<string, FieldValue> = {};
      if (msg.rating !== undefined) fields.rating = msg.rating;
      if (msg.text !== undefined) fields.text = msg.text;
      if (msg.sentiment !== undefined) fields.sentiment = msg.sentiment;
      return toLine("feedback", tags, fields, micros);
    }
  }
}

export const DEAD_LETTER_PAYLOAD_CHARS = 1024;
const DEAD_LETTER_DETAIL_CHARS = 1000;

export interface DeadLetter {
  device: string;
  /** telemetry | events | feedback | acks, or the measurement of a point InfluxDB refused. */
  channel: string;
  reason: string;
  detail: string;
  /** Where it came from: `devices/{id}/{channel}` or `POST /api/ingest/{channel}`. */
  topic: string;
  /** Absent for a record about a subject without consent for its purpose: only `subject_hash` says who. */
  payload: string | undefined;
  /** Keyed hashes of the subjects such a record names (comma-separated), in place of the record. */
  subjectHash?: string | undefined;
  /** Position in a batch publish. */
  index?: number | undefined;
}

/** A refused message as a `dead_letters` point: the reason is a tag (bounded set), the rest are fields. */
export function toDeadLetterLine(letter: DeadLetter): Line {
  const fields: Record<string, FieldValue> = {
    detail: truncate(letter.detail, DEAD_LETTER_DETAIL_CHARS),
    topic: letter.topic,
  };
  if (letter.payload !== undefined) fields.payload = truncate(letter.payload, DEAD_LETTER_PAYLOAD_CHARS);
  if (letter.subjectHash !== undefined) fields.subject_hash = letter.subjectHash;
  if (letter.index !== undefined) fields.index = letter.index;
  return toLine(
    "dead_letters",
    [
      ["channel", letter.channel],
      ["device", letter.device],
      ["reason", letter.reason],
    ],
    fields,
    nextMicros(),
  );
}

/** Cuts at a character boundary without splitting a surrogate pair. */
function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = /[\uD800-\uDBFF]/.test(text[max - 1]!) ? max - 1 : max;
  return text.slice(0, end);
}
