import {
  ident,
  influxql,
  join,
  micros,
  whereDevicePage,
  whereWindow,
  type DevicePage,
  type InfluxQL,
  type Window,
} from "../store/influxql.ts";

/**
 * The measurements ingest writes, and the queries other parts need of them:
 * a reader imports a query, never a measurement name, so what ingest stores
 * and how can change here alone.
 */
export const TELEMETRY = "telemetry";
export const EVENTS = "events";
export const FEEDBACK = "feedback";
export const DEAD_LETTERS = "dead_letters";

const telemetry = ident(TELEMETRY);
const events = ident(EVENTS);
const feedback = ident(FEEDBACK);
const deadLetters = ident(DEAD_LETTERS);
/** Where a subject-tagged message may be stored: what the tag index answers about a subject. */
const subjectTagged = join([telemetry, events, feedback], ", ");

/**
 * What erasure does with a point of each measurement: all of it is device data
 * (or a copy of it), so a point that names the subject goes. Dead letters hold
 * raw payloads that need not be JSON, so the id is searched as a bare token.
 */
export const erasure = {
  policies: { [TELEMETRY]: "erase", [EVENTS]: "erase", [FEEDBACK]: "erase", [DEAD_LETTERS]: "erase" },
  rawText: [DEAD_LETTERS],
  /**
   * Fields that name subjects only by their keyed hash (`Ingest.subjectHash`), comma-separated: a dead letter
   * about a customer without consent. Erasure finds them by the hash, since the id is nowhere in them.
   */
  hashed: { [DEAD_LETTERS]: "subject_hash" },
} as const;

/** SHOW TAG VALUES rows: `value` is the tag's value. */
export interface TagValueRow {
  key: string;
  value: string;
}

/** The devices that carried data tagged with this subject (rows: TagValueRow). */
export const devicesOfSubject = (subject: string): InfluxQL =>
  influxql`SHOW TAG VALUES FROM ${subjectTagged} WITH KEY = "device" WHERE "subject" = ${subject}`;

/** The subjects whose data this device carried (rows: TagValueRow). */
export const subjectsOfDevice = (device: string): InfluxQL =>
  influxql`SHOW TAG VALUES FROM ${subjectTagged} WITH KEY = "subject" WHERE "device" = ${device}`;

/** The device's newest telemetry point at or after a time. */
export const newestTelemetry = (device: string, afterMicros: number): InfluxQL =>
  influxql`SELECT * FROM ${telemetry} WHERE "device" = ${device} AND time >= ${micros(afterMicros)} ORDER BY time DESC LIMIT 1`;

/** Mean, min and max of every field per bucket (columns `mean_<field>`, `min_<field>`, `max_<field>`). */
export const telemetryBuckets = (device: string, from: number, to: number, intervalMs: number): InfluxQL =>
  influxql`SELECT mean(*), min(*), max(*) FROM ${telemetry} WHERE "device" = ${device} AND time >= ${micros(from * 1000)} AND time <= ${micros(to * 1000)} GROUP BY time(${intervalMs}ms) fill(none)`;

/** A timeline page of the device's events: `props`, `event`, `subject`. */
export const eventsPage = (page: DevicePage): InfluxQL =>
  influxql`SELECT "props", "event", "subject" FROM ${events} ${whereDevicePage(page)}`;

/** A timeline page of the device's feedback: `rating`, `text`, `sentiment`, `subject`. */
export const feedbackPage = (page: DevicePage): InfluxQL =>
  influxql`SELECT "rating", "text", "sentiment", "subject" FROM ${feedback} ${whereDevicePage(page)}`;

/** A timeline page of the device's dead letters: `detail`, `channel`, `reason`. */
export const deadLettersPage = (page: DevicePage): InfluxQL =>
  influxql`SELECT "detail", "channel", "reason" FROM ${deadLetters} ${whereDevicePage(page)}`;

/** Count and mean of the sentiment of a subject's feedback: columns `n` and `mean`. */
export const subjectSentiment = (subject: string): InfluxQL =>
  influxql`SELECT count(sentiment) AS n, mean(sentiment) AS mean FROM ${feedback} WHERE "subject" = ${subject}`;

/**
 * Stored messages of one kind in [fromMs, toMs), for replaying history to the
 * rules; events only of the given names, and only of the given devices if any.
 */
export function history(
  kind: "telemetry" | "feedback" | "event",
  fromMs: number,
  toMs: number,
  options: { events?: readonly string[]; devices?: readonly string[] } = {},
): InfluxQL {
  // Bare nanoseconds, as InfluxQL reads an integer time.
  const range = [influxql`time >= ${fromMs * 1_000_000}`, influxql`time < ${toMs * 1_000_000}`];
  if (options.devices)
    range.push(
      influxql`(${join(
        options.devices.map((d) => influxql`device = ${d}`),
        " OR ",
      )})`,
    );
  const where = join(range, " AND ");
  if (kind === "telemetry") return influxql`SELECT * FROM ${telemetry} WHERE ${where}`;
  if (kind === "feedback") return influxql`SELECT * FROM ${feedback} WHERE ${where}`;
  const names = join(
    (options.events ?? []).map((e) => influxql`event = ${e}`),
    " OR ",
  );
  return influxql`SELECT * FROM ${events} WHERE (${names}) AND ${where}`;
}

/** Session start and end events after a time (epoch ms), oldest first: `device`, `event`, `subject`, `props`. */
export const sessionEvents = (start: string, end: string, sinceMs: number): InfluxQL =>
  influxql`SELECT device, event, subject, props FROM ${events} WHERE (event = ${start} OR event = ${end}) AND time > ${sinceMs * 1_000_000} ORDER BY time ASC`;

/**
 * Per device over a window: latency samples and mean, error sum and samples
 * (columns `latency_n`, `latency_mean`, `errors_sum`, `errors_n`).
 */
export const telemetryHealth = (window: Window, latencyMetric: string, errorMetric: string): InfluxQL => {
  const latency = ident(latencyMetric);
  const errors = ident(errorMetric);
  return influxql`SELECT count(${latency}) AS latency_n, mean(${latency}) AS latency_mean, sum(${errors}) AS errors_sum, count(${errors}) AS errors_n FROM ${telemetry} ${whereWindow(window)} GROUP BY "device"`;
};

/** Per device over a window: how many latency samples were at most `maxMs` (column `count`). */
export const latencyWithin = (window: Window, latencyMetric: string, maxMs: number): InfluxQL => {
  const latency = ident(latencyMetric);
  return influxql`SELECT count(${latency}) FROM ${telemetry} ${whereWindow(window, influxql`${latency} <= ${maxMs}`)} GROUP BY "device"`;
};

/** Per device and event name over a window: how many events of the given names (column `count`, tag `event`). */
export const eventCounts = (window: Window, names: readonly string[]): InfluxQL => {
  const any = influxql`(${join(
    names.map((n) => influxql`"event" = ${n}`),
    " OR ",
  )})`;
  return influxql`SELECT count("props") FROM ${events} ${whereWindow(window, any)} GROUP BY "device", "event"`;
};

/** Per device over a window: `ratings`, `rating_mean`, `texts`, `sentiment_mean`. */
export const feedbackHealth = (window: Window): InfluxQL =>
  influxql`SELECT count("rating") AS ratings, mean("rating") AS rating_mean, count("sentiment") AS texts, mean("sentiment") AS sentiment_mean FROM ${feedback} ${whereWindow(window)} GROUP BY "device"`;

/** Per device over a window: how many texts were negative (column `count`). */
export const negativeFeedbackCount = (window: Window): InfluxQL =>
  influxql`SELECT count("sentiment") FROM ${feedback} ${whereWindow(window, influxql`"sentiment" < 0`)} GROUP BY "device"`;

/**
 * Per device over a window: the latest negative text (`text`, `sentiment`,
 * `rating`, its time). One selector with other fields: InfluxDB answers them
 * from the same point, with its time.
 */
export const latestNegativeFeedback = (window: Window): InfluxQL =>
  influxql`SELECT last("text") AS text, "sentiment", "rating" FROM ${feedback} ${whereWindow(window, influxql`"sentiment" < 0`)} GROUP BY "device"`;

/**
 * An experiment's outcome records from a time on, with the owner's tag
 * (`subject` or `device`): named events (column `props`) or one telemetry
 * metric or feedback field (column `value`).
 */
export const ownerOutcomeRows = (
  source: { kind: "event"; name: string } | { kind: "telemetry" | "feedback"; field: string },
  tag: "subject" | "device",
  fromMs: number,
): InfluxQL => {
  const since = influxql`time >= ${micros(fromMs * 1000)}`;
  return source.kind === "event"
    ? influxql`SELECT "props" FROM ${events} WHERE "event" = ${source.name} AND ${since} GROUP BY ${ident(tag)}`
    : influxql`SELECT ${ident(source.field)} AS "value" FROM ${source.kind === "telemetry" ? telemetry : feedback} WHERE ${since} GROUP BY ${ident(tag)}`;
};
