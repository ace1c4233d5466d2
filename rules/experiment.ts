import { createHash } from "node:crypto";
import { z } from "zod";

/**
 * Holdout experiments: a rule may hold a fraction of its owners out, to
 * measure what its actions achieve against owners that would have got them.
 */

const holdout = z.union([z.number(), z.string()]).transform((v, ctx): number => {
  const text = typeof v === "string" ? v.trim() : undefined;
  const pct = text !== undefined ? /^(\d{1,2}(?:\.\d+)?)%$/.exec(text) : null;
  const n = typeof v === "number" ? v : pct ? Number(pct[1]) / 100 : Number.NaN;
  if (Number.isFinite(n) && n > 0 && n < 1) return n;
  ctx.addIssue({ code: "custom", message: "a fraction between 0 and 1 (0.1) or a percentage such as 10%" });
  return z.NEVER;
});
const eventName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/, "an event name such as tap");
const days = z.number().int().min(1).max(90);

export const outcomeSchema = z.union(
  [
    z.literal("participation").transform(() => ({ kind: "participation" as const })),
    z.strictObject({ kind: z.literal("participation") }),
    z.strictObject({ kind: z.literal("event_count"), event: eventName }),
    z.strictObject({
      kind: z.literal("metric_mean"),
      metric: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/, "a telemetry metric name"),
      days: days.default(7),
    }),
    z.strictObject({
      kind: z.literal("health"),
      component: z.enum(["sentiment", "rating"]),
      days: days.default(7),
    }),
  ],
  {
    error:
      "an outcome is participation, {kind: event_count, event}, {kind: metric_mean, metric, days?} or {kind: health, component: sentiment|rating, days?}",
  },
);
export type OutcomeMeasure = z.infer<typeof outcomeSchema>;

export const experimentSchema = z.strictObject({ holdout, outcome: outcomeSchema });
export type ExperimentSpec = z.infer<typeof experimentSchema>;

export const describeOutcome = (o: OutcomeMeasure): string => {
  switch (o.kind) {
    case "participation":
      return "answers / asks per owner since assignment";
    case "event_count":
      return `'${o.event}' events per session per owner since assignment`;
    case "metric_mean":
      return `mean of telemetry metric '${o.metric}' per owner over the ${o.days} days after assignment`;
    case "health":
      return `mean feedback ${o.component} per owner over the ${o.days} days after assignment`;
  }
};

/**
 * The owner's place in [0,1): the first 8 bytes of sha256(rule id, owner).
 * Stable across restarts and nodes, and independent between rules.
 */
export function unitOf(rule: string, owner: string): number {
  const digest = createHash("sha256").update(rule).update("\0").update(owner).digest();
  // 53 bits keep the division exact in a double.
  return Number(digest.readBigUInt64BE(0) >> 11n) / 2 ** 53;
}

export type Group = "treated" | "held_out";
export const groupOf = (rule: string, owner: string, fraction: number): Group =>
  unitOf(rule, owner) < fraction ? "held_out" : "treated";

/** Below this many owners in either group the report says `too_small` rather than guess. */
export const MIN_GROUP = 30;
/** Two-sided 95% quantile of the normal distribution. */
const Z95 = 1.959963984540054;

export interface GroupStats {
  size: number;
  mean: number | null;
  sd: number | null;
}

export function stats(values: readonly number[]): GroupStats {
  const n = values.length;
  if (n === 0) return { size: 0, mean: null, sd: null };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : null;
  return { size: n, mean, sd };
}

export interface Comparison {
  treated: GroupStats;
  heldOut: GroupStats;
  difference: { estimate: number; low: number; high: number; confidence: 0.95 } | null;
  verdict: "helps" | "hurts" | "no_difference" | "too_small";
  note: string;
}

/**
 * Treated minus held out, with Welch's standard error and the normal
 * approximation for the 95% interval: fine once both groups have MIN_GROUP
 * owners, which is when a verdict is given at all.
 */
export function compare(treatedValues: readonly number[], heldValues: readonly number[]): Comparison {
  const treated = stats(treatedValues);
  const heldOut = stats(heldValues);
  if (treated.size < MIN_GROUP || heldOut.size < MIN_GROUP)
    return {
      treated,
      heldOut,
      difference: null,
      verdict: "too_small",
      note: `too small to tell: each group needs at least ${MIN_GROUP} owners (treated ${treated.size}, held out ${heldOut.size})`,
    };
  const estimate = treated.mean! - heldOut.mean!;
  const se = Math.sqrt(treated.sd! ** 2 / treated.size + heldOut.sd! ** 2 / heldOut.size);
  const low = estimate - Z95 * se;
  const high = estimate + Z95 * se;
  const verdict = low > 0 ? "helps" : high < 0 ? "hurts" : "no_difference";
  return {
    treated,
    heldOut,
    difference: { estimate, low, high, confidence: 0.95 },
    verdict,
    note: "difference of means (treated - held out), 95% interval from Welch's standard error with the normal approximation",
  };
}

/** The window an outcome is measured over for an owner assigned at `at` (ms), up to `now`. */
export function outcomeWindow(o: OutcomeMeasure, at: number, now: number): { from: number; to: number } {
  const span = "days" in o ? o.days * 86_400_000 : Infinity;
  return { from: at, to: Math.min(now, at + span) };
}
