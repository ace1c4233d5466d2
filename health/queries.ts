import type { HealthConfig } from "../config/schema.ts";
import type { Row, Store } from "../store/index.ts";
import {
  eventCounts,
  feedbackHealth,
  latencyWithin,
  latestNegativeFeedback,
  negativeFeedbackCount,
  telemetryHealth,
} from "../ingest/queries.ts";
import { answered, suggestionsAsked } from "../actions/queries.ts";
import { firstOnlineMs, onlineMsSum, unexpectedDisconnects } from "../broker/queries.ts";
import type { InfluxQL } from "../store/influxql.ts";
import { emptyAggregates, type Aggregates, type Range } from "./score.ts";

/** Disconnect reasons that end a session on purpose; every other one is a drop. */
export const EXPECTED_DISCONNECTS = ["clean", "server_shutdown", "revoked", "token_rotated"] as const;

type Apply = (agg: Aggregates, row: Row) => void;
interface Statement {
  influxql: InfluxQL;
  apply: Apply;
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
const numOrNull = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);

/**
 * The InfluxQL behind experience health: a fixed handful of aggregations,
 * each GROUP BY "device": the whole fleet is the same dozen queries as one
 * device or a batch of them (which add a filter on "device"). Each part that
 * owns a measurement writes its queries; health only folds their rows.
 */
export function healthStatements(config: HealthConfig, range: Range, devices?: readonly string[]): Statement[] {
  const window = { from: range.from, to: range.to, ...(devices ? { devices } : {}) };
  const t = config.latencyTargetMs;
  return [
    {
      influxql: telemetryHealth(window, config.latencyMetric, config.errorMetric),
      apply: (a, r) => {
        a.latencySamples = num(r.latency_n);
        a.latencyMean = numOrNull(r.latency_mean);
        a.errorSum = num(r.errors_sum);
        a.errorSamples = num(r.errors_n);
      },
    },
    {
      influxql: latencyWithin(window, config.latencyMetric, t),
      apply: (a, r) => void (a.latencyWithinT = num(r.count)),
    },
    {
      influxql: latencyWithin(window, config.latencyMetric, 4 * t),
      apply: (a, r) => void (a.latencyWithin4T = num(r.count)),
    },
    {
      influxql: eventCounts(window, [config.sessionEvent, config.errorEvent, config.crashEvent]),
      apply: (a, r) => {
        if (r.event === config.sessionEvent) a.sessions = num(r.count);
        if (r.event === config.errorEvent) a.errorEvents = num(r.count);
        if (r.event === config.crashEvent) a.crashEvents = num(r.count);
      },
    },
    {
      influxql: feedbackHealth(window),
      apply: (a, r) => {
        a.ratings = num(r.ratings);
        a.ratingMean = numOrNull(r.rating_mean);
        a.texts = num(r.texts);
        a.sentimentMean = numOrNull(r.sentiment_mean);
      },
    },
    {
      influxql: negativeFeedbackCount(window),
      apply: (a, r) => void (a.negativeTexts = num(r.count)),
    },
    {
      influxql: latestNegativeFeedback(window),
      apply: (a, r) => {
        if (typeof r.text !== "string") return;
        a.latestNegative = {
          text: r.text,
          sentiment: num(r.sentiment),
          rating: numOrNull(r.rating),
          at: r.time.getTime(),
        };
      },
    },
    {
      influxql: suggestionsAsked(window),
      apply: (a, r) => void (a.asks = num(r.count)),
    },
    // An answer may be sent twice (redelivery): distinct action ids count once.
    {
      influxql: answered(window, "accepted"),
      apply: (a, r) => void (a.accepted = num(r.count)),
    },
    {
      influxql: answered(window, "declined"),
      apply: (a, r) => void (a.declined = num(r.count)),
    },
    {
      influxql: onlineMsSum(window),
      apply: (a, r) => void (a.onlineMsSum = num(r.sum)),
    },
    {
      influxql: firstOnlineMs(window),
      apply: (a, r) => void (a.firstPresence = { at: r.time.getTime(), onlineMs: num(r.first) }),
    },
    {
      influxql: unexpectedDisconnects(window, EXPECTED_DISCONNECTS),
      apply: (a, r) => void (a.drops = num(r.count)),
    },
  ];
}

/** Runs the statements side by side (InfluxDB spreads them over its cores) and folds the rows per device. */
export async function queryAggregates(store: Store, statements: Statement[]): Promise<Map<string, Aggregates>> {
  const results = await Promise.all(statements.map((s) => store.query(s.influxql)));
  const byDevice = new Map<string, Aggregates>();
  results.forEach((rows, i) => {
    const apply = statements[i]!.apply;
    for (const row of rows) {
      const device = row.device;
      if (typeof device !== "string") continue;
      let agg = byDevice.get(device);
      if (!agg) byDevice.set(device, (agg = emptyAggregates()));
      apply(agg, row);
    }
  });
  return byDevice;
}
