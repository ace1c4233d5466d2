import type { z } from "zod";
import {
  ackSchema,
  eventSchema,
  feedbackSchema,
  telemetrySchema,
  type AckMessage,
  type Channel,
  type DeviceMessage,
} from "./messages.ts";

export type RejectReason = "malformed_json" | "invalid_shape" | "future_timestamp";

export type Parsed =
  | { ok: true; channel: "acks"; acks: AckMessage[] }
  | { ok: true; channel: Exclude<Channel, "acks">; messages: DeviceMessage[] }
  | { ok: false; reason: RejectReason; detail: string };

export interface ParseOptions {
  device: string;
  now: number;
  /** How far ahead of the receipt time a device clock may be, in ms. */
  maxFutureSkewMs: number;
  maxBatch: number;
}

const schemas = { telemetry: telemetrySchema, events: eventSchema, feedback: feedbackSchema, acks: ackSchema };

/** The edge of the platform: bytes in, typed messages or one specific reason out. */
export function parsePayload(channel: Channel, payload: Buffer | string, opts: ParseOptions): Parsed {
  let json: unknown;
  try {
    json = JSON.parse(typeof payload === "string" ? payload : payload.toString("utf8"));
  } catch (err) {
    return { ok: false, reason: "malformed_json", detail: (err as Error).message };
  }
  const records = Array.isArray(json) ? json : [json];
  if (records.length === 0) return { ok: false, reason: "invalid_shape", detail: "empty batch" };
  if (records.length > opts.maxBatch) {
    return { ok: false, reason: "invalid_shape", detail: `batch of ${records.length} records exceeds ${opts.maxBatch}` };
  }
  const schema = schemas[channel] as z.ZodType;
  const parsed: unknown[] = [];
  for (const [index, record] of records.entries()) {
    const result = schema.safeParse(record);
    if (!result.success) {
      const where = Array.isArray(json) ? `[${index}]` : "";
      return { ok: false, reason: "invalid_shape", detail: formatIssues(result.error, where) };
    }
    parsed.push(result.data);
  }
  if (channel === "acks") {
    return { ok: true, channel, acks: (parsed as z.infer<typeof ackSchema>[]).map((a) => ({ ...a, device: opts.device })) };
  }
  const messages: DeviceMessage[] = [];
  for (const data of parsed as Array<{ ts?: number; subject?: string } & Record<string, unknown>>) {
    if (data.ts !== undefined && data.ts > opts.now + opts.maxFutureSkewMs) {
      return {
        ok: false,
        reason: "future_timestamp",
        detail: `ts ${new Date(data.ts).toISOString()} is more than ${opts.maxFutureSkewMs} ms ahead of the platform clock`,
      };
    }
    const envelope = { device: opts.device, subject: data.subject, ts: data.ts ?? opts.now, tsFromDevice: data.ts !== undefined };
    if (channel === "telemetry") messages.push({ ...envelope, kind: "telemetry", metrics: data.metrics as Record<string, number | boolean | string> });
    else if (channel === "events") messages.push({ ...envelope, kind: "event", name: data.name as string, props: (data.props ?? {}) as Record<string, number | boolean | string | null> });
    else messages.push({ ...envelope, kind: "feedback", rating: data.rating as number | undefined, text: data.text as string | undefined });
  }
  return { ok: true, channel, messages };
}

function formatIssues(error: z.ZodError, where: string): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${where}${i.path.length ? `.${i.path.join(".")}` : ""}: ${i.message}`.replace(/^\./, ""))
    .join("; ");
}
