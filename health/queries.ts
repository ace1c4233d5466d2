import type { HealthConfig } from "../config/schema.ts";
import type { Row, Store } from "../store/index.ts";
import { emptyAggregates, type Aggregates, type Range } from "./score.ts";

/** Disconnect reasons that end a session on purpose; every other one is a drop. */
export const EXPECTED_DISCONNECTS = ["clean", "server_shutdown", "revoked", "token_rotated"] as const;

/** An epoch-microseconds time literal: InfluxQL's exact form, no time zone or parsing in between. */
export const micros = (ms: number) => `${Math.round(ms * 1000)}u`;

type Apply = (agg: Aggregates, row: Row) => void;
interface Statement {
  influxql: string;
  apply: Apply;
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
const numOrNull = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);

/**
 * The InfluxQL behind experience health: a fixed handful of aggregations,
 * each GROUP BY "device": the whole fleet is the same dozen queries as one
 * device or a batch of them (which add a filter on "device"). Names in them
 * come from validated configuration and registry ids, never from a request.
 */
export function healthStatements(config: HealthConfig, range: Range, devices?: readonly string[]): Statement[] {
  // Device ids are registry ids ([A-Za-z0-9._-]): nothing in them needs quoting.
  const only = devices ? ` AND (${devices.map((d) => `"device" = '${d}'`).join(" OR ")})` : "";
  const where = (extra?: string) =>
    `WHERE time >= ${micros(range.from)} AND time <= ${micros(range.to)}${only}${extra ? ` AND ${extra}` : ""}`;
  const latency = `"${config.latencyMetric}"`;
  const t = config.latencyTargetMs;
  const byDevice = `GROUP BY "device"`;
  const notExpected = EXPECTED_DISCONNECTS.map((r) => `"reason" != '${r}'`).join(" AND ");
  return [
    {
      influxql: `SELECT count(${latency}) AS latency_n, mean(${latency}) AS latency_mean, sum("${config.errorMetric}") AS errors_sum, count("${config.errorMetric}") AS errors_n FROM telemetry ${where()} ${byDevice}`,
      apply: (a, r) => {
        a.latencySamples = num(r.latency_n);
        a.latencyMean = numOrNull(r.latency_mean);
        a.errorSum = num(r.errors_sum);
        a.errorSamples = num(r.errors_n);
      },
    },
    {
      influxql: `SELECT count(${latency}) FROM telemetry ${where(`${latency} <= ${t}`)} ${byDevice}`,
      apply: (a, r) => void (a.latencyWithinT = num(r.count)),
    },
    {
      influxql: `SELECT count(${latency}) FROM telemetry ${where(`${latency} <= ${4 * t}`)} ${byDevice}`,
      apply: (a, r) => void (a.latencyWithin4T = num(r.count)),
    },
    {
      influxql: `SELECT count("props") FROM events ${where(`("event" = '${config.sessionEvent}' OR "event" = '${config.errorEvent}' OR "event" = '${config.crashEvent}')`)} ${byDevice}, "event"`,
      apply: (a, r) => {
        if (r.event === config.sessionEvent) a.sessions = num(r.count);
        if (r.event === config.errorEvent) a.errorEvents = num(r.count);
        if (r.event === config.crashEvent) a.crashEvents = num(r.count);
      },
    },
    {
      influxql: `SELECT count("rating") AS ratings, mean("rating") AS rating_mean, count("sentiment") AS texts, mean("sentiment") AS sentiment_mean FROM feedback ${where()} ${byDevice}`,
      apply: (a, r) => {
        a.ratings = num(r.ratings);
        a.ratingMean = numOrNull(r.rating_mean);
        a.texts = num(r.texts);
        a.sentimentMean = numOrNull(r.sentiment_mean);
      },
    },
    {
      influxql: `SELECT count("sentiment") FROM feedback ${where(`"sentiment" < 0`)} ${byDevice}`,
      apply: (a, r) => void (a.negativeTexts = num(r.count)),
    },
    {
      // One selector with other fields: InfluxDB answers them from the same point, with its time.
      influxql: `SELECT last("text") AS text, "sentiment", "rating" FROM feedback ${where(`"sentiment" < 0`)} ${byDevice}`,
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
      influxql: `SELECT count("action") FROM action_log ${where(`"status" = 'proposed' AND "kind" = 'suggest'`)} ${byDevice}`,
      apply: (a, r) => void (a.asks = num(r.count)),
    },
    // An answer may be sent twice (redelivery): distinct action ids count once.
    {
      influxql: `SELECT count(distinct("action")) FROM action_log ${where(`"status" = 'accepted'`)} ${byDevice}`,
      apply: (a, r) => void (a.accepted = num(r.count)),
    },
    {
      influxql: `SELECT count(distinct("action")) FROM action_log ${where(`"status" = 'declined'`)} ${byDevice}`,
      apply: (a, r) => void (a.declined = num(r.count)),
    },
    {
      influxql: `SELECT sum("online_ms") FROM presence ${where()} ${byDevice}`,
      apply: (a, r) => void (a.onlineMsSum = num(r.sum)),
    },
    {
      influxql: `SELECT first("online_ms") FROM presence ${where()} ${byDevice}`,
      apply: (a, r) => void (a.firstPresence = { at: r.time.getTime(), onlineMs: num(r.first) }),
    },
    {
      influxql: `SELECT count("client") FROM presence ${where(`"event" = 'disconnect' AND ${notExpected}`)} ${byDevice}`,
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
