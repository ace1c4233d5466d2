import { z } from "zod";
import { SUBJECT_ID } from "../registry/index.ts";

/** Names that are tag keys or InfluxDB's own and so cannot be metric names. */
const RESERVED = new Set(["time", "device", "subject", "event", "channel"]);
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
const name = z
  .string()
  .regex(NAME, "1-64 characters: letters, digits, '_', '.' or '-', starting with a letter or '_'")
  .refine((n) => !RESERVED.has(n), "is a reserved name");

/** Epoch milliseconds or an ISO-8601 string, normalised to epoch milliseconds. */
const timestamp = z.union([
  z.number().int("epoch milliseconds must be a whole number").min(0).max(8.64e15),
  z.iso.datetime({ offset: true, local: false }).transform((s) => Date.parse(s)),
]);

const subject = z.string().regex(SUBJECT_ID, "1-128 characters: letters, digits, '.', '_', ':' or '-'");
const metricValue = z.union([z.number().refine(Number.isFinite, "must be a finite number"), z.boolean(), z.string().max(256)]);

const common = { ts: timestamp.optional(), subject: subject.optional() };

export const telemetrySchema = z.strictObject({
  ...common,
  metrics: z
    .record(name, metricValue)
    .refine((m) => Object.keys(m).length > 0, "needs at least one metric")
    .refine((m) => Object.keys(m).length <= 64, "at most 64 metrics per message"),
});

export const eventSchema = z.strictObject({
  ...common,
  name,
  props: z
    .record(name, z.union([metricValue, z.null()]))
    .refine((p) => Object.keys(p).length <= 32, "at most 32 props per event")
    .optional(),
});

export const feedbackSchema = z
  .strictObject({
    ...common,
    rating: z.number().int().min(1).max(5).optional(),
    text: z.string().max(4000).optional(),
  })
  .refine((f) => f.rating !== undefined || (f.text !== undefined && f.text.trim() !== ""), "needs a rating or a text");

export const ackSchema = z.strictObject({
  action: z.string().min(1).max(64),
  status: z.enum(["applied", "accepted", "declined", "failed", "undone"]),
  reason: z.string().max(500).optional(),
});

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
}
export type DeviceMessage = TelemetryMessage | EventMessage | FeedbackMessage;
export type AckMessage = z.infer<typeof ackSchema> & { device: string };
