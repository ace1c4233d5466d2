import { z } from "zod";
import { topic } from "../changes/index.ts";
import { ACTION_STATUSES } from "./status.ts";

const owner = z.custom<`device:${string}` | `subject:${string}`>(
  (v) => typeof v === "string" && (v.startsWith("device:") || v.startsWith("subject:")),
  "an owner is device:<id> or subject:<id>",
);

/** The time of the action_log or profile_changes point the change is: unique per series, the same on every node. */
const micros = z.number().int().nonnegative();

/** One `proposed` row of an action: one per target device (device "" when it was logged without one). */
export const proposedEvent = z.object({
  action: z.string().min(1),
  status: z.literal("proposed"),
  device: z.string(),
  micros,
  rule: z.string(),
  kind: z.enum(["set", "suggest", "clear", "notify"]),
  key: z.string(),
  owner,
  why: z.string(),
  /** JSON text, as the row stores it. */
  value: z.string().optional(),
  previous: z.string().optional(),
  prompt: z.string().optional(),
  subject: z.string().optional(),
  /** The action this one follows (an accepted suggestion reaching the customer's other touchpoints). */
  cause: z.string().optional(),
  /** Where the action arose when that is not its first target; not stored, so a rebuild takes the first target. */
  origin: z.string().optional(),
});

/** Any later row of an action: a device's ack, a delivery, an expiry, an undo. */
export const transitionEvent = z.object({
  action: z.string().min(1),
  status: z.enum(
    ACTION_STATUSES.filter((s) => s !== "proposed") as [Exclude<(typeof ACTION_STATUSES)[number], "proposed">],
  ),
  device: z.string(),
  micros,
  by: z.string().optional(),
  reason: z.string().optional(),
  /** JSON text: the owner's value before an accepted suggestion was applied. */
  previous: z.string().optional(),
});

export const actionLogEvent = z.union([proposedEvent, transitionEvent]);
export type ProposedEvent = z.infer<typeof proposedEvent>;
export type TransitionEvent = z.infer<typeof transitionEvent>;
export type ActionLogEvent = z.infer<typeof actionLogEvent>;

/** A row of the action log: an action, the status it reached, on which device, when. */
export const ACTION_LOG_TOPIC = topic(
  "actions.log",
  actionLogEvent,
  (e) => `${e.action}|${e.status}|${e.device}|${e.micros}`,
);

export const profileEvent = z.object({
  owner,
  key: z.string(),
  op: z.enum(["set", "clear"]),
  /** JSON text of the value set. */
  value: z.string().optional(),
  /** The action that made the change. */
  action: z.string(),
  micros,
});
export type ProfileEvent = z.infer<typeof profileEvent>;

/** A key of a profile set or cleared. */
export const PROFILE_TOPIC = topic("actions.profiles", profileEvent, (e) => `${e.owner}|${e.key}|${e.micros}`);
