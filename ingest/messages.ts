import { z } from "zod";
import { SUBJECT_ID } from "../registry/ids.ts";

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

const refuse = <T>(ctx: z.RefinementCtx<T>, reason: RejectReason, message: string) =>
  ctx.addIssue({ code: "custom", message, params: { reason } });

/** Why a name is refused, or undefined when it is a safe one. */
function badName(n: string): string | undefined {
  if (!NAME.test(n)) return "names are 1-64 characters: ASCII letters, digits, '_', '.' or '-', starting with a letter";
  if (RESERVED.has(n)) return `'${n}' is reserved`;
  return undefined;
}

const name = z.string().superRefine((n, ctx) => {
  const problem = badName(n);
  if (problem) refuse(ctx, "invalid_name", problem);
});

type FieldValue = number | boolean | string;

/**
 * A map of safe names to numbers, booleans or bounded strings (null too for
 * event props), checked in one pass: zod's record of two sub-schemas costs
 * ten times more on the hot path, and yields one message per problem, not a union's three.
 */
function fieldMap<T extends FieldValue | null>(options: {
  maxFields: number;
  what: string;
  nullable: boolean;
  min: number;
}) {
  return z.unknown().superRefine((m, ctx) => {
    if (m === undefined) return refuse(ctx, "invalid_shape", "is required");
    if (typeof m !== "object" || m === null || Array.isArray(m)) {
      return refuse(
        ctx,
        "invalid_shape",
        `expected an object of ${options.what}, not ${m === null ? "null" : Array.isArray(m) ? "an array" : `a ${typeof m}`}`,
      );
    }
    const keys = Object.keys(m);
    if (keys.length < options.min) return refuse(ctx, "invalid_shape", `needs at least one of the ${options.what}`);
    if (keys.length > options.maxFields)
      return refuse(
        ctx,
        "too_many_fields",
        `at most ${options.maxFields} ${options.what} per record (got ${keys.length})`,
      );
    for (const key of keys) {
      const problem = badName(key);
      if (problem)
        return ctx.addIssue({ code: "custom", path: [key], message: problem, params: { reason: "invalid_name" } });
      const v = (m as Record<string, unknown>)[key];
      if (v === null && options.nullable) continue;
      if (typeof v === "number") {
        if (!Number.isFinite(v))
          return ctx.addIssue({
            code: "custom",
            path: [key],
            message: "must be a finite number",
            params: { reason: "not_finite" },
          });
      } else if (typeof v === "string") {
        if (v.length > MAX_STRING_VALUE)
          return ctx.addIssue({
            code: "custom",
            path: [key],
            message: `strings are at most ${MAX_STRING_VALUE} characters`,
            params: { reason: "value_too_long" },
          });
      } else if (typeof v !== "boolean") {
        const got = v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
        return ctx.addIssue({
          code: "custom",
          path: [key],
          message: `must be a number, boolean or string, not ${got}`,
          params: { reason: "invalid_shape" },
        });
      }
    }
  }) as unknown as z.ZodType<Record<string, T>>;
}

const ISO = z.iso.datetime({ offset: true, local: false });
/** Epoch milliseconds or an ISO-8601 string with offset, normalised to epoch milliseconds. */
const timestamp = z.unknown().transform((v, ctx) => {
  const ms = typeof v === "number" ? v : typeof v === "string" && ISO.safeParse(v).success ? Date.parse(v) : NaN;
  if (typeof v === "number" && !Number.isInteger(v))
    refuse(ctx, "invalid_timestamp", "epoch milliseconds must be a whole number");
  else if (!Number.isFinite(ms))
    refuse(
      ctx,
      "invalid_timestamp",
      "expected epoch milliseconds or an ISO-8601 time with offset, such as 2026-01-01T12:00:00Z",
    );
  else if (ms < MIN_TS) refuse(ctx, "invalid_timestamp", `before 2000-01-01; epoch seconds instead of milliseconds?`);
  else if (ms > MAX_TS) refuse(ctx, "invalid_timestamp", "beyond the representable range");
  else return ms;
  return z.NEVER;
});

const subject = z.unknown().superRefine((v, ctx) => {
  if (typeof v !== "string" || !SUBJECT_ID.test(v))
    refuse(
      ctx,
      "invalid_subject",
      "subject ids are 1-128 characters: ASCII letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
    );
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
      metrics: fieldMap<FieldValue>({ maxFields: limits.maxFields, what: "metrics", nullable: false, min: 1 }),
    }),
    events: z.strictObject({
      ...common,
      name,
      props: fieldMap<FieldValue | null>({
        maxFields: limits.maxFields,
        what: "props",
        nullable: true,
        min: 0,
      }).optional(),
    }),
    feedback: z
      .strictObject({
        ...common,
        rating: z
          .number()
          .int("a whole number from 1 to 5")
          .min(1, "a whole number from 1 to 5")
          .max(5, "a whole number from 1 to 5")
          .optional(),
        text: z
          .string()
          .superRefine((t, ctx) => {
            if (t.length > MAX_TEXT) refuse(ctx, "value_too_long", `text is at most ${MAX_TEXT} characters`);
          })
          .optional(),
      })
      .refine(
        (f) => f.rating !== undefined || (f.text !== undefined && f.text.trim() !== ""),
        "needs a rating or a text",
      ),
    acks: z.strictObject({
      action: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "an action id as sent on the actions topic"),
      status: z.enum(["applied", "accepted", "declined", "failed", "undone"]),
      reason: z.string().max(500).optional(),
      device: z.string().optional(),
    }),
  };
}

/** Our own checks name their reason; a bad record key is a bad name; the rest is the contract's shape. */
export function reasonOf(issue: z.core.$ZodIssue): RejectReason {
  if (issue.code === "custom" && typeof issue.params?.reason === "string") return issue.params.reason as RejectReason;
  if (issue.code === "invalid_key") return issue.issues[0] ? reasonOf(issue.issues[0]) : "invalid_name";
  return "invalid_shape";
}

export function messageOf(issue: z.core.$ZodIssue): string {
  if (issue.code === "unrecognized_keys")
    return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}`;
  if (issue.code === "invalid_key") return issue.issues[0]?.message ?? issue.message;
  if (issue.code === "invalid_type") {
    if (issue.path.length === 0) return "each record must be a JSON object";
    const received = /received (\w+)$/.exec(issue.message)?.[1];
    if (received === "undefined") return "is required";
    return `expected ${issue.expected === "record" ? "an object" : `a ${issue.expected}`}${received ? `, not ${received === "array" ? "an array" : received === "null" ? "null" : `a ${received}`}` : ""}`;
  }
  return issue.message;
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
  /** The stored point's time in µs, set once when the record is stored (see points.ts). */
  micros?: number;
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
  sentiment?: number | undefined;
}
export type DeviceMessage = TelemetryMessage | EventMessage | FeedbackMessage;
export interface AckMessage {
  device: string;
  action: string;
  status: "applied" | "accepted" | "declined" | "failed" | "undone";
  reason?: string | undefined;
}
