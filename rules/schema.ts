import { z } from "zod";
import { parseDuration } from "../config/duration.ts";
import { experimentSchema } from "./experiment.ts";

const key = z
  .string()
  .regex(/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/, "a dotted key such as ui.theme (lowercase letters, digits, '_')");
const json: z.ZodType<unknown> = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  z.null(),
  z.array(z.lazy(() => json)),
  z.record(
    z.string(),
    z.lazy(() => json),
  ),
]);
const expr = z.string().min(1, "an empty CEL expression");
const valueOrExpr = { value: json.optional(), expr: expr.optional() };
const onlyOne = (a: { value?: unknown; expr?: string }) => !(a.value !== undefined && a.expr !== undefined);
const oneMsg = { message: "give either value or expr, not both" };

const setAction = z
  .strictObject({ set: key, ...valueOrExpr })
  .refine(onlyOne, oneMsg)
  .refine((a) => a.value !== undefined || a.expr !== undefined, { message: "set needs a value or an expr" });
const suggestAction = z
  .strictObject({ suggest: key, ...valueOrExpr, prompt: z.string().min(1).max(200) })
  .refine(onlyOne, oneMsg)
  .refine((a) => a.value !== undefined || a.expr !== undefined, { message: "suggest needs a value or an expr" });
const clearAction = z.strictObject({ clear: key });
const notifyAction = z
  .strictObject({
    notify: z.url({ protocol: /^https?$/, error: "a webhook URL (http or https)" }),
    message: z.string().min(1).max(500).optional(),
    expr: expr.optional(),
  })
  .refine((a) => (a.message === undefined) !== (a.expr === undefined), {
    message: "notify needs a message or an expr (one of them)",
  });

export const actionSchema = z.union([setAction, suggestAction, clearAction, notifyAction], {
  error:
    "each action is one of {set: key, value|expr}, {suggest: key, value|expr, prompt}, {clear: key}, {notify: url, message|expr}",
});

const trigger = z
  .string()
  .regex(
    /^(telemetry|feedback|presence|event:[A-Za-z_][A-Za-z0-9_.-]{0,63})$/,
    "one of telemetry, feedback, presence, event:<name>",
  );
const source = z
  .string()
  .regex(/^(telemetry|feedback|event:[A-Za-z_][A-Za-z0-9_.-]{0,63})$/, "one of telemetry, feedback, event:<name>");

/** "30d" (a time window), "last 20 sessions" or "last 50 events" (count windows). */
export type WindowSpec = { kind: "time"; ms: number } | { kind: "sessions"; n: number } | { kind: "events"; n: number };
const windowSpec = z.string().transform((text, ctx): WindowSpec => {
  const count = /^last (\d{1,4}) (sessions|events)$/.exec(text.trim());
  if (count) {
    const n = Number(count[1]);
    if (n >= 1 && n <= 1000) return { kind: count[2] as "sessions" | "events", n };
  }
  const ms = parseDuration(text.trim());
  if (ms !== undefined && ms > 0 && ms <= 400 * 86_400_000) return { kind: "time", ms };
  ctx.addIssue({
    code: "custom",
    message: "a duration up to 400d such as 30d, or 'last N sessions' / 'last N events' with N from 1 to 1000",
  });
  return z.NEVER;
});

export const aggregateFns = [
  "count",
  "sum",
  "avg",
  "min",
  "max",
  "last",
  "distinct",
  "mode",
  "mode_share",
  "absent",
  "sessions",
] as const;
const needsValue = new Set(["sum", "avg", "min", "max", "last", "distinct", "mode", "mode_share"]);

export const aggregateSchema = z
  .strictObject({
    fn: z.enum(aggregateFns),
    /** The messages counted; for `sessions` without `of`, the sessions themselves. */
    of: source.optional(),
    /** CEL over msg: which of those messages count. */
    where: expr.optional(),
    /** CEL over msg: the value aggregated (sum, avg, min, max, last, distinct, mode, mode_share). */
    value: expr.optional(),
    window: windowSpec,
  })
  .refine((a) => a.of !== undefined || a.fn === "sessions", {
    message: "needs `of` (telemetry, feedback or event:<name>)",
    path: ["of"],
  })
  .refine((a) => !needsValue.has(a.fn) || a.value !== undefined, {
    message: "this function needs `value`, a CEL expression such as msg.props.amount",
    path: ["value"],
  })
  .refine((a) => a.fn !== "sessions" || a.window.kind === "sessions", {
    message: "`sessions` counts within a window of 'last N sessions'",
    path: ["window"],
  });
export type AggregateSpec = z.infer<typeof aggregateSchema>;

export const ruleSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "lowercase letters, digits and '-' (1-64)"),
  description: z.string().max(500).optional(),
  on: trigger,
  scope: z.enum(["device", "subject"]).default("device"),
  when: expr.default("true"),
  /** Windowed aggregates over the scope's history, read in CEL as agg.<name>. */
  aggregates: z
    .record(
      z.string().regex(/^[a-z][a-z0-9_]{0,31}$/, "aggregate names are lowercase letters, digits and '_'"),
      aggregateSchema,
    )
    .optional(),
  then: z.array(actionSchema).min(1, "a rule needs at least one action").max(16),
  /**
   * The consent purpose the rule needs from the customer. Subject-scoped rules
   * personalise, so they need `personalization` unless they say otherwise.
   */
  purpose: z.enum(["personalization", "analytics", "feedback"]).optional(),
  cooldown: z
    .string()
    .refine((d) => parseDuration(d) !== undefined, "a duration such as 30s, 15m, 1h or 7d")
    .transform((d) => parseDuration(d)!)
    .optional(),
  enabled: z.boolean().default(true),
  /**
   * A set or clear whose value already holds in the target's profile
   * (or was sent in the last minutes) is left out (outcome `unchanged`); `resend: true` sends it anyway, e.g. for a
   * device that must hear the action itself each time.
   */
  resend: z.boolean().default(false),
  /** A holdout experiment: a fraction of the owners gets no action (outcome `held_out`), to compare an outcome against. */
  experiment: experimentSchema.optional(),
});

export type RuleSpec = z.infer<typeof ruleSchema>;
export type ActionSpec = z.infer<typeof actionSchema>;
