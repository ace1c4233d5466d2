import { z } from "zod";
import { SUBJECT_ID } from "../registry/index.ts";

/**
 * Why a message (or one record of a batch) was refused: the dead-letter
 * `reason` tag and the label of the dead-letter counter. A bounded set, so the
 * tag keeps series cardinality bounded.
 */
export const rejectReasons = [
  "too_large", // the payload exceeds maxPayloadBytes
  "malformed_json", // not UTF-8 JSON
  "too_many_records", // a batch longer than maxRecords
  "invalid_shape", // not the contract: missing or unknown fields, wrong types, out of range
  "invalid_name", // a metric, prop or event name outside the safe set, or reserved
  "too_many_fields", // more metrics or props than maxFields
  "not_finite", // a number that is not finite (1e999 parses to Infinity)
  "value_too_long", // a string value over its limit
  "invalid_timestamp", // ts neither epoch ms nor ISO-8601 with offset, or before 2000
  "future_timestamp", // ts further ahead than maxFutureSkewMs
  "invalid_subject", // subject outside the subject id syntax
  "device_mismatch", // the record names another device than the one that sent it
  "write_rejected", // InfluxDB refused the point (e.g. a field type conflict); detail has its message
] as const;
export type RejectReason = (typeof rejectReasons)[number];

/** Names that are tag keys or InfluxDB's own, so they cannot be field names. */
const RESERVED = new Set(["time", "device", "subject", "event", "channel"]);
/**
 * Metric, prop and event names: ASCII letters first (no `_`: InfluxDB 2.x/3.x
 * reserve `_field`, `_time`..., and it keeps `__proto__` out), then letters,
 * digits, `_`, `.` or `-`. Nothing in them needs escaping in line protocol.
 */
export const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
export const MAX_STRING_VALUE = 256;
export const MAX_TEXT = 4000;
/** 2000-01-01: earlier `ts` values are nearly always epoch seconds sent as milliseconds. */
const MIN_TS = Date.UTC(2000, 0, 1);
/** The largest time a JavaScript Date holds. */
const MAX_TS = 8.64e15;

const refuse = <T>(ctx: z.RefinementCtx<T>, reason: RejectReason, message: string) => ctx.addIssue({ code: "custom", message, params: { reason } });

const name = z.string().superRefine((n, ctx) => {
  if (!NAME.test(n)) refuse(ctx, "invalid_name", "names are 1-64 characters: ASCII letters, digits, '_', '.' or '-', starting with a letter");
  else if (RESERVED.has(n)) refuse(ctx, "invalid_name", `'${n}' is reserved`);
});

/** A number, boolean or bounded string; one message per problem, not zod's union of three. */
const value = (maxString: number, nullable = false) =>
  z.unknown().superRefine((v, ctx) => {
    if (v === null && nullable) return;
    if (typeof v === "number") {
      if (!Number.isFinite(v)) refuse(ctx, "not_finite", "must be a finite number");
    } else if (typeof v === "string") {
      if (v.length > maxString) refuse(ctx, "value_too_long", `strings are at most ${maxString} characters`);
    } else if (typeof v !== "boolean") {
      refuse(ctx, "invalid_shape", `must be a number, boolean or string, not ${v === null ? "null" : Array.isArray(v) ? "an array" : typeof v}`);
    }
  }) as unknown as z.ZodType<number | boolean | string>;

const fieldMap = <T>(entry: z.ZodType<T>, maxFields: number, what: string) =>
  z.record(name, entry).superRefine((m, ctx) => {
    const n = Object.keys(m).length;
    if (n > maxFields) refuse(ctx, "too_many_fields", `at most ${maxFields} ${what} per record (got ${n})`);
  });

const ISO = z.iso.datetime({ offset: true, local: false });
/** Epoch milliseconds or an ISO-8601 string with offset, normalised to epoch milliseconds. */
const timestamp = z.unknown().transform((v, ctx) => {
  const ms = typeof v === "number" ? v : typeof v === "string" && ISO.safeParse(v).success ? Date.parse(v) : NaN;
  if (typeof v === "number" && !Number.isInteger(v)) refuse(ctx, "invalid_timestamp", "epoch milliseconds must be a whole number");
  else if (!Number.isFinite(ms)) refuse(ctx, "invalid_timestamp", "expected epoch milliseconds or an ISO-8601 time with offset, such as 2026-01-01T12:00:00Z");
  else if (ms < MIN_TS) refuse(ctx, "invalid_timestamp", `before 2000-01-01; epoch seconds instead of milliseconds?`);
  else if (ms > MAX_TS) refuse(ctx, "invalid_timestamp", "beyond the representable range");
  else return ms;
  return z.NEVER;
});

const subject = z.unknown().superRefine((v, ctx) => {
  if (typeof v !== "string" || !SUBJECT_ID.test(v)) refuse(ctx, "invalid_subject", "subject ids are 1-128 characters: ASCII letters, digits, '.', '_', ':' or '-', starting with a letter or digit");
}) as unknown as z.ZodType<string>;

export interface Limits {
  maxFields: number;
}

/** The record schemas of the contract (DESIGN.md), for the given limits. */
export function recordSchemas(limits: Limits) {
  const common = {
    ts: timestamp.optional(),
    subject: subject.optional(),
    // Firmware may name itself; parse.ts refuses any other device before this runs.
    device: z.string().optional(),
  };
  return {
    telemetry: z.strictObject({
      ...common,
      metrics: fieldMap(value(MAX_STRING_VALUE), limits.maxFields, "metrics").refine((m) => Object.keys(m).length > 0, "needs at least one metric"),
    }),
    events: z.strictObject({
      ...common,
      name,
      props: fieldMap(value(MAX_STRING_VALUE, true) as z.ZodType<number | boolean | string | null>, limits.maxFields, "props").optional(),
    }),
    feedback: z
      .strictObject({
        ...common,
        rating: z.number().int("a whole number from 1 to 5").min(1, "a whole number from 1 to 5").max(5, "a whole number from 1 to 5").optional(),
        text: z.string().superRefine((t, ctx) => {
          if (t.length > MAX_TEXT) refuse(ctx, "value_too_long", `text is at most ${MAX_TEXT} characters`);
        }).optional(),
      })
      .refine((f) => f.rating !== undefined || (f.text !== undefined && f.text.trim() !== ""), "needs a rating or a text"),
    acks: z.strictObject({
      action: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "an action id as sent on the actions topic"),
      status: z.enum(["applied", "accepted", "declined", "failed", "undone"]),
      reason: z.string().max(500).optional(),
      device: z.string().optional(),
    }),
  };
}

export const channels = ["telemetry", "events", "feedback", "acks"] as const;
export type Channel = (typeof channels)[number];

interface Envelope {
  device: string;
  subject: string | undefined;
  /** Epoch ms as the device stated it, or the time of receipt. */
  ts: number;
  /** Whether ts came from the device (then the point is idempotent under redelivery). */
  tsFromDevice: boolean;
}
export interface TelemetryMessage extends Envelope {
  kind: "telemetry";
  metrics: Record<string, number | boolean | string>;
}
export interface EventMessage extends Envelope {
  kind: "event";
  name: string;
  props: Record<string, number | boolean | string | null>;
}
export interface FeedbackMessage extends Envelope {
  kind: "feedback";
  rating: number | undefined;
  text: string | undefined;
  /** Comparative sentiment of `text` (AFINN score per word, about -5..5); undefined without text. */
  sentiment: number | undefined;
}
export type DeviceMessage = TelemetryMessage | EventMessage | FeedbackMessage;
export interface AckMessage {
  device: string;
  action: string;
  status: "applied" | "accepted" | "declined" | "failed" | "undone";
  reason?: string | undefined;
}
