import { z } from "zod";
import { healthComponents, type HealthComponent, type HealthConfig, type HealthWeights } from "../config/schema.ts";

export { healthComponents, type HealthComponent };

/**
 * What InfluxDB answered for one device over the window: counts, sums and
 * means from GROUP BY "device" queries (health/queries.ts), never raw points.
 */
const count = z.number().nonnegative();
const mean = z.number().nullable();
/**
 * What InfluxDB's aggregations say about one device over a window. A schema,
 * not only a type: in a cluster the view's leader hands these to the other
 * nodes through Redis (./shared.ts), and they are parsed where they come in.
 */
export const aggregatesSchema = z.object({
  sessions: count,
  errorEvents: count,
  crashEvents: count,
  /** Sum and number of samples of the telemetry error counter. */
  errorSum: z.number(),
  errorSamples: count,
  latencySamples: count,
  latencyMean: mean,
  /** Samples at or under the target T, and at or under 4T. */
  latencyWithinT: count,
  latencyWithin4T: count,
  ratings: count,
  ratingMean: mean,
  texts: count,
  sentimentMean: mean,
  negativeTexts: count,
  latestNegative: z
    .object({ text: z.string(), sentiment: z.number(), rating: z.number().nullable(), at: z.number() })
    .optional(),
  asks: count,
  accepted: count,
  declined: count,
  /** Sum of presence `online_ms` in the window, and the window's first presence event. */
  onlineMsSum: z.number(),
  firstPresence: z.object({ at: z.number(), onlineMs: z.number() }).optional(),
  drops: count,
});
export type Aggregates = z.infer<typeof aggregatesSchema>;

export const emptyAggregates = (): Aggregates => ({
  sessions: 0,
  errorEvents: 0,
  crashEvents: 0,
  errorSum: 0,
  errorSamples: 0,
  latencySamples: 0,
  latencyMean: null,
  latencyWithinT: 0,
  latencyWithin4T: 0,
  ratings: 0,
  ratingMean: null,
  texts: 0,
  sentimentMean: null,
  negativeTexts: 0,
  latestNegative: undefined,
  asks: 0,
  accepted: 0,
  declined: 0,
  onlineMsSum: 0,
  firstPresence: undefined,
  drops: 0,
});

/** What the platform knows of the device beside InfluxDB's answer. */
export interface DeviceContext {
  kind: string | undefined;
  createdAt: number;
  /** Connected to this process now, and since its last presence event (`changedAt`). */
  online: boolean;
  changedAt: number | undefined;
  /** The device's first connection ever (undefined: never connected, nothing to say about connectivity). */
  firstSeen: number | undefined;
}

export interface Component {
  /** 0-100, or null when the window holds nothing to judge it by. */
  score: number | null;
  weight: number;
  explanation: string;
  inputs: Record<string, number | string | null>;
}

export type HealthStatus = "good" | "fair" | "poor" | "unknown";

export interface Scored {
  score: number | null;
  status: HealthStatus;
  components: Record<HealthComponent, Component>;
}

export interface Range {
  from: number;
  to: number;
}

const DAY = 86_400_000;
const clamp01 = (x: number) => Math.min(1, Math.max(0, x));
const round = (x: number, digits = 1) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const fmt = (x: number, digits = 2) => String(round(x, digits));
const pct = (x: number) => `${Math.round(x * 100)}%`;

export function statusOf(score: number | null): HealthStatus {
  if (score === null) return "unknown";
  return score >= 80 ? "good" : score >= 50 ? "fair" : "poor";
}

/** The weights for a kind of device: the defaults with the kind's overrides. */
export function weightsFor(config: Pick<HealthConfig, "weights" | "kinds">, kind: string | undefined): HealthWeights {
  const override = kind ? config.kinds[kind] : undefined;
  return override
    ? { ...config.weights, ...Object.fromEntries(Object.entries(override).filter(([, v]) => v !== undefined)) }
    : config.weights;
}

/**
 * The experience-health model (docs/health.md has each formula with an
 * example). Pure: the same aggregates, context and config give the same score.
 */
export function score(agg: Aggregates, ctx: DeviceContext, range: Range, config: HealthConfig): Scored {
  const weights = weightsFor(config, ctx.kind);
  const lifetime = Math.max(1, range.to - Math.max(range.from, ctx.createdAt));
  const components: Record<HealthComponent, Component> = {
    reliability: { ...reliability(agg, lifetime, config), weight: weights.reliability },
    performance: { ...performance(agg, config), weight: weights.performance },
    sentiment: { ...sentiment(agg, config), weight: weights.sentiment },
    participation: { ...participation(agg), weight: weights.participation },
    connectivity: { ...connectivity(agg, ctx, range, config), weight: weights.connectivity },
  };
  let sum = 0;
  let total = 0;
  for (const name of healthComponents) {
    const c = components[name];
    if (c.score === null || c.weight === 0) continue;
    sum += c.score * c.weight;
    total += c.weight;
  }
  const overall = total > 0 ? round(sum / total) : null;
  return { score: overall, status: statusOf(overall), components };
}

type Part = Omit<Component, "weight">;

/** Errors and crashes per session (per day for a device without sessions), against their budgets. */
function reliability(agg: Aggregates, lifetime: number, config: HealthConfig): Part {
  const errors = agg.errorEvents + agg.errorSum;
  const crashes = agg.crashEvents;
  const inputs = {
    sessions: agg.sessions,
    errors,
    crashes,
    errorsPerSession: config.errorsPerSession,
    crashesPerSession: config.crashesPerSession,
  };
  if (agg.sessions === 0 && agg.errorSamples === 0 && errors === 0 && crashes === 0) {
    return {
      score: null,
      explanation: `no sessions, ${config.errorEvent}/${config.crashEvent} events or '${config.errorMetric}' telemetry in the window`,
      inputs,
    };
  }
  const perSessions = agg.sessions > 0;
  const units = perSessions ? agg.sessions : Math.max(1, lifetime / DAY);
  const unit = perSessions ? "session" : "day";
  const errorRate = errors / units;
  const crashRate = crashes / units;
  const value = 100 * clamp01(1 - errorRate / config.errorsPerSession - crashRate / config.crashesPerSession);
  const basis = perSessions ? `in ${plural(agg.sessions, "session")}` : `in ${fmt(units, 1)} days without sessions`;
  return {
    score: round(value),
    explanation: `${plural(errors, "error")} and ${plural(crashes, "crash", "crashes")} ${basis}: ${fmt(errorRate)} errors and ${fmt(crashRate)} crashes per ${unit} (budgets ${config.errorsPerSession} and ${config.crashesPerSession})`,
    inputs: { ...inputs, errorRate: round(errorRate, 3), crashRate: round(crashRate, 3), per: unit },
  };
}

/** Apdex of the latency metric with target T: (satisfied + tolerating / 2) / samples. */
function performance(agg: Aggregates, config: HealthConfig): Part {
  const t = config.latencyTargetMs;
  const n = agg.latencySamples;
  const satisfied = Math.min(n, agg.latencyWithinT);
  const tolerating = Math.max(0, Math.min(n, agg.latencyWithin4T) - satisfied);
  const frustrated = n - satisfied - tolerating;
  const inputs = {
    metric: config.latencyMetric,
    targetMs: t,
    samples: n,
    satisfied,
    tolerating,
    frustrated,
    meanMs: agg.latencyMean === null ? null : round(agg.latencyMean),
  };
  if (n === 0) return { score: null, explanation: `no '${config.latencyMetric}' telemetry in the window`, inputs };
  const apdex = (satisfied + tolerating / 2) / n;
  return {
    score: round(100 * apdex),
    explanation: `Apdex ${fmt(apdex)} over ${plural(n, "sample")} of ${config.latencyMetric} (target ${t} ms): ${satisfied} satisfied, ${tolerating} tolerating (up to ${4 * t} ms), ${frustrated} frustrated; mean ${Math.round(agg.latencyMean ?? 0)} ms`,
    inputs: { ...inputs, apdex: round(apdex, 3) },
  };
}

/** Ratings (1-5) and text sentiment (AFINN comparative, against the span), weighed by how many there are. */
function sentiment(agg: Aggregates, config: HealthConfig): Part {
  const inputs = {
    ratings: agg.ratings,
    meanRating: agg.ratingMean === null ? null : round(agg.ratingMean, 2),
    texts: agg.texts,
    meanSentiment: agg.sentimentMean === null ? null : round(agg.sentimentMean, 3),
    negativeTexts: agg.negativeTexts,
    span: config.sentimentSpan,
  };
  const n = agg.ratings + agg.texts;
  if (n === 0) return { score: null, explanation: "no feedback in the window", inputs };
  const ratingScore = agg.ratings > 0 && agg.ratingMean !== null ? (100 * (agg.ratingMean - 1)) / 4 : 0;
  const textScore =
    agg.texts > 0 && agg.sentimentMean !== null
      ? 50 + 50 * Math.max(-1, Math.min(1, agg.sentimentMean / config.sentimentSpan))
      : 0;
  const value = (agg.ratings * ratingScore + agg.texts * textScore) / n;
  const parts = [
    agg.ratings > 0 ? `${plural(agg.ratings, "rating")} averaging ${fmt(agg.ratingMean ?? 0, 1)} of 5` : "",
    agg.texts > 0
      ? `${plural(agg.texts, "text")} averaging ${fmt(agg.sentimentMean ?? 0)} sentiment (${agg.negativeTexts} negative)`
      : "",
  ].filter(Boolean);
  return { score: round(clamp01(value / 100) * 100), explanation: parts.join(" and "), inputs };
}

/** Prompts answered and suggestions accepted, each out of the suggestions offered. */
function participation(agg: Aggregates): Part {
  const answered = agg.accepted + agg.declined;
  const inputs = { asks: agg.asks, answered, accepted: agg.accepted, declined: agg.declined };
  if (agg.asks === 0) return { score: null, explanation: "no prompts or suggestions offered in the window", inputs };
  const answerRate = clamp01(answered / agg.asks);
  const acceptRate = clamp01(agg.accepted / agg.asks);
  return {
    score: round(50 * (answerRate + acceptRate)),
    explanation: `answered ${answered} of ${plural(agg.asks, "prompt")} (${pct(answerRate)}), accepted ${agg.accepted} (${pct(acceptRate)})`,
    inputs: { ...inputs, answerRate: round(answerRate, 3), acceptRate: round(acceptRate, 3) },
  };
}

/**
 * Online share of the device's time in service in the window, against the target, times
 * the share of the drop budget left. Online time is the sum of presence
 * `online_ms` in the window, less the part of the first event's interval that
 * lies before the window, plus the time since the last event if online now.
 */
function connectivity(agg: Aggregates, ctx: DeviceContext, range: Range, config: HealthConfig): Part {
  const inputs: Record<string, number | null> = {
    onlineShare: null,
    onlineTarget: config.onlineTarget,
    drops: agg.drops,
    dropsPerDay: null,
    dropBudget: config.dropsPerDay,
  };
  if (ctx.firstSeen === undefined) return { score: null, explanation: "never connected over MQTT", inputs };
  // A device is judged from when it went into service (its first connection), not from when it was provisioned.
  const inService = Math.max(1, range.to - Math.max(range.from, ctx.firstSeen));
  const before = agg.firstPresence ? Math.max(0, agg.firstPresence.onlineMs - (agg.firstPresence.at - range.from)) : 0;
  const tail = ctx.online ? range.to - Math.max(range.from, ctx.changedAt ?? range.from) : 0;
  const onlineMs = Math.max(0, agg.onlineMsSum - before + tail);
  const share = clamp01(onlineMs / inService);
  const perDay = agg.drops / Math.max(1, inService / DAY);
  const value = 100 * clamp01(share / config.onlineTarget) * clamp01(1 - perDay / config.dropsPerDay);
  return {
    score: round(value),
    explanation: `online ${pct(share)} of the window (target ${pct(config.onlineTarget)}), ${plural(agg.drops, "unexpected disconnect")} (${fmt(perDay, 1)} a day; budget ${config.dropsPerDay})`,
    inputs: { ...inputs, onlineShare: round(share, 4), onlineMs: Math.round(onlineMs), dropsPerDay: round(perDay, 2) },
  };
}
