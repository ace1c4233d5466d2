import type { z } from "zod";
import {
  messageOf,
  reasonOf,
  recordSchemas,
  type AckMessage,
  type Channel,
  type DeviceMessage,
  type Limits,
  type RejectReason,
} from "./messages.ts";
import { scoreSentiment } from "./sentiment.ts";

/** One refused publish, or one refused record of a batch. */
export interface Refusal {
  /** The record's position in a batch; undefined when the whole publish was refused. */
  index: number | undefined;
  reason: RejectReason;
  detail: string;
  /** What was refused, as text (the dead letter keeps a truncated copy). */
  payload: string;
}

export interface Parsed {
  messages: DeviceMessage[];
  acks: AckMessage[];
  refused: Refusal[];
}

export interface ParserOptions extends Limits {
  /** How far ahead of the receipt time a device clock may be, in ms. */
  maxFutureSkewMs: number;
  maxRecords: number;
  maxPayloadBytes: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The edge of the platform: bytes in, typed messages out, and for everything
 * else one specific reason. Records of a batch are judged one by one, so one
 * bad record does not cost the good ones.
 */
export function createParser(options: ParserOptions) {
  const schemas = recordSchemas(options);

  // Hot path: no closures per call (tsx keeps function names, which costs a property definition each).
  return function parse(channel: Channel, payload: Buffer | string, context: { device: string; now: number }): Parsed {
    const out: Parsed = { messages: [], acks: [], refused: [] };
    const bytes = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
    if (bytes > options.maxPayloadBytes)
      return refuseWhole(
        out,
        "too_large",
        `payload of ${bytes} bytes exceeds ${options.maxPayloadBytes}`,
        preview(payload),
      );

    let text: string;
    try {
      text = typeof payload === "string" ? payload : utf8.decode(payload);
    } catch {
      return refuseWhole(out, "malformed_json", "payload is not valid UTF-8", preview(payload));
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      return refuseWhole(out, "malformed_json", (err as Error).message, text);
    }

    const batch = Array.isArray(json);
    const records: unknown[] = batch ? (json as unknown[]) : [json];
    if (records.length === 0) return refuseWhole(out, "invalid_shape", "empty batch", text);
    if (records.length > options.maxRecords)
      return refuseWhole(
        out,
        "too_many_records",
        `batch of ${records.length} records exceeds ${options.maxRecords}`,
        text,
      );

    const schema = schemas[channel] as z.ZodType;
    for (let i = 0; i < records.length; i += 1) {
      const record = records[i];
      const at: Where = { batch, index: i, record, text };
      if (isObject(record) && record.device !== undefined && record.device !== context.device) {
        refuseRecord(
          out,
          at,
          "device_mismatch",
          "device",
          `names ${JSON.stringify(record.device)} but was sent by '${context.device}'`,
        );
        continue;
      }
      const proto = protoKeyAt(record);
      if (proto !== undefined) {
        refuseRecord(out, at, "invalid_name", proto, "'__proto__' is not a valid name");
        continue;
      }
      const result = schema.safeParse(record);
      if (!result.success) {
        const issue = result.error.issues[0]!;
        refuseRecord(out, at, reasonOf(issue), issue.path.map(String).join("."), messageOf(issue));
        continue;
      }
      const data = result.data as Record<string, unknown> & { ts?: number; subject?: string };
      if (channel === "acks") {
        const ack = data as unknown as Omit<AckMessage, "device">;
        out.acks.push({
          device: context.device,
          action: ack.action,
          status: ack.status,
          ...(ack.reason !== undefined ? { reason: ack.reason } : {}),
        });
        continue;
      }
      if (data.ts !== undefined && data.ts > context.now + options.maxFutureSkewMs) {
        refuseRecord(
          out,
          at,
          "future_timestamp",
          "ts",
          `${new Date(data.ts).toISOString()} is more than ${options.maxFutureSkewMs} ms ahead of the platform clock`,
        );
        continue;
      }
      out.messages.push(toMessage(channel, data, context));
    }
    return out;
  };
}

interface Where {
  batch: boolean;
  index: number;
  record: unknown;
  text: string;
}

function refuseWhole(out: Parsed, reason: RejectReason, detail: string, payload: string): Parsed {
  out.refused.push({ index: undefined, reason, detail, payload });
  return out;
}

function refuseRecord(out: Parsed, where: Where, reason: RejectReason, field: string, message: string): void {
  const prefix = where.batch ? `[${where.index}]` : "";
  const at = `${prefix}${prefix && field ? "." : ""}${field}`;
  out.refused.push({
    index: where.batch ? where.index : undefined,
    reason,
    detail: at ? `${at}: ${message}` : message,
    payload: where.batch ? copyOf(where.record) : where.text,
  });
}

function toMessage(
  channel: Exclude<Channel, "acks">,
  data: Record<string, unknown> & { ts?: number; subject?: string },
  context: { device: string; now: number },
): DeviceMessage {
  // Literal objects of one shape per kind (no spread): this runs for every record.
  const { device } = context;
  const subject = data.subject;
  const ts = data.ts ?? context.now;
  const tsFromDevice = data.ts !== undefined;
  if (channel === "telemetry")
    return {
      kind: "telemetry",
      device,
      subject,
      ts,
      tsFromDevice,
      metrics: data.metrics as Record<string, number | boolean | string>,
    };
  if (channel === "events")
    return {
      kind: "event",
      device,
      subject,
      ts,
      tsFromDevice,
      name: data.name as string,
      props: (data.props ?? {}) as Record<string, number | boolean | string | null>,
    };
  const text = data.text as string | undefined;
  return {
    kind: "feedback",
    device,
    subject,
    ts,
    tsFromDevice,
    rating: data.rating as number | undefined,
    text,
    sentiment: text === undefined ? undefined : scoreSentiment(text).comparative,
  };
}

/**
 * JSON.parse keeps a "__proto__" key as data, but zod skips it, which would
 * drop it silently; so it is refused here, where the contract has maps.
 */
function protoKeyAt(record: unknown): string | undefined {
  if (!isObject(record)) return undefined;
  if (Object.hasOwn(record, "__proto__")) return "";
  for (const key of ["metrics", "props"]) {
    const map = record[key];
    if (isObject(map) && Object.hasOwn(map, "__proto__")) return `${key}.__proto__`;
  }
  return undefined;
}

/** A record of a batch as text; a structure nested too deeply to print (JSON.parse takes it, stringify overflows) is named, not copied. */
function copyOf(record: unknown): string {
  try {
    return JSON.stringify(record) ?? "";
  } catch {
    return "(nested too deeply to copy)";
  }
}

function preview(payload: Buffer | string): string {
  return typeof payload === "string" ? payload.slice(0, 2048) : payload.subarray(0, 2048).toString("utf8");
}
