import { microsOfRow } from "../store/clock.ts";
import type { ActionRecord } from "../actions/index.ts";
import type { ConsentChange } from "../consent/index.ts";
import type { Row, Store } from "../store/index.ts";
import { actionsMovedSince, proposedPage } from "../actions/queries.ts";
import { presencePage } from "../broker/queries.ts";
import { deadLettersPage, eventsPage, feedbackPage, telemetryBuckets } from "../ingest/queries.ts";
import type { DevicePage, InfluxQL } from "../store/influxql.ts";

export const entryTypes = ["event", "feedback", "action", "presence", "consent", "dead_letter"] as const;
export type EntryType = (typeof entryTypes)[number];

/** One thing that happened on a device, newest first in a timeline. */
export type Entry = { type: EntryType; at: string; key: string } & Record<string, unknown>;
/** An entry with its exact time (epoch microseconds), for ordering and cursors. */
interface Timed {
  micros: number;
  entry: Entry;
}

export interface TelemetrySummary {
  /** Bucket length in milliseconds. */
  interval: number;
  /** Bucket start times, epoch milliseconds. */
  time: number[];
  /** Per numeric metric: mean, min and max per bucket (null where a bucket has no sample of it). */
  metrics: Record<string, { mean: Array<number | null>; min: Array<number | null>; max: Array<number | null> }>;
}

export interface TimelineSources {
  store: Store;
  action(id: string): ActionRecord | undefined;
  consentHistory(subject: string): ConsentChange[];
}

export interface TimelineQuery {
  device: string;
  /** The device's subjects, whose consent changes belong in its timeline. */
  subjects: readonly string[];
  from: number;
  /** Inclusive upper bound, epoch microseconds (a cursor's time, or now). */
  untilMicros: number;
  /** Entries at exactly `untilMicros` already shown on the previous page. */
  skip: number;
  limit: number;
  types: ReadonlySet<EntryType>;
}

export interface TimelinePage {
  entries: Entry[];
  /** Cursor of the next (older) page, or null when this one reaches `from`. */
  next: string | null;
}

const iso = (us: number) => new Date(Math.floor(us / 1000)).toISOString();

export function encodeCursor(untilMicros: number, skip: number): string {
  return Buffer.from(`${untilMicros}.${skip}`).toString("base64url");
}

export function decodeCursor(cursor: string): { untilMicros: number; skip: number } | undefined {
  const match = /^(\d{1,17})\.(\d{1,6})$/.exec(Buffer.from(cursor, "base64url").toString("utf8"));
  if (!match) return undefined;
  return { untilMicros: Number(match[1]), skip: Number(match[2]) };
}

const text = (v: unknown) => (typeof v === "string" ? v : null);
const numberOrNull = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
const parseProps = (v: unknown) => {
  if (typeof v !== "string") return {};
  try {
    return JSON.parse(v) as unknown;
  } catch {
    return {};
  }
};

/** An action as the device's timeline shows it: what, why, and its lifecycle on this device. */
export function actionEntry(record: ActionRecord, device: string): Entry {
  const lifecycle = [
    { status: "proposed", at: new Date(record.createdAt).toISOString() },
    ...record.transitions
      .filter((t) => t.device === device && t.status !== "proposed")
      .map((t) => ({
        status: t.status,
        at: t.at,
        ...(t.by ? { by: t.by } : {}),
        ...(t.reason ? { reason: t.reason } : {}),
      })),
  ];
  return {
    type: "action",
    key: `action:${record.id}`,
    at: new Date(record.createdAt).toISOString(),
    id: record.id,
    rule: record.rule,
    kind: record.kind,
    // A notification's key is its webhook URL: an operator's secret, not for the support view.
    target: record.kind === "notify" ? null : record.key,
    value: record.value ?? null,
    prompt: record.prompt ?? null,
    why: record.why,
    subject: record.subject ?? null,
    status: lifecycle.at(-1)!.status,
    lifecycle,
  };
}

type Source = (q: TimelineQuery, n: number) => Promise<Timed[]>;

/**
 * Each kind of entry comes from its own measurement (or in-memory view), newest
 * first and at most n of them; the page is the newest `limit` of their merge.
 */
function sources(s: TimelineSources): Record<EntryType, Source> {
  const page = (q: TimelineQuery, limit: number): DevicePage => ({
    device: q.device,
    from: q.from,
    untilMicros: q.untilMicros,
    limit,
  });
  const rows = async (influxql: InfluxQL, toEntry: (row: Row, us: number) => Entry): Promise<Timed[]> =>
    (await s.store.query(influxql)).map((row) => {
      const us = microsOfRow(row.time);
      return { micros: us, entry: toEntry(row, us) };
    });
  return {
    event: (q, n) =>
      rows(eventsPage(page(q, n)), (r, us) => ({
        type: "event",
        key: `event:${us}:${String(r.event)}:${text(r.subject) ?? ""}`,
        at: iso(us),
        name: String(r.event),
        subject: text(r.subject),
        props: parseProps(r.props),
      })),
    feedback: (q, n) =>
      rows(feedbackPage(page(q, n)), (r, us) => ({
        type: "feedback",
        key: `feedback:${us}:${text(r.subject) ?? ""}`,
        at: iso(us),
        subject: text(r.subject),
        rating: numberOrNull(r.rating),
        text: text(r.text),
        sentiment: numberOrNull(r.sentiment),
      })),
    presence: (q, n) =>
      rows(presencePage(page(q, n)), (r, us) => ({
        type: "presence",
        key: `presence:${us}:${String(r.event)}:${text(r.client) ?? ""}`,
        at: iso(us),
        event: String(r.event),
        reason: text(r.reason),
        transport: text(r.transport),
        client: text(r.client),
      })),
    dead_letter: (q, n) =>
      rows(deadLettersPage(page(q, n)), (r, us) => ({
        type: "dead_letter",
        key: `dead_letter:${us}:${String(r.channel)}`,
        at: iso(us),
        channel: String(r.channel),
        reason: String(r.reason),
        detail: text(r.detail),
      })),
    action: async (q, n) => {
      // The action's `proposed` row for this device places it; the in-memory action log has the rest.
      const found = await s.store.query(proposedPage(page(q, n)));
      return found.flatMap((row) => {
        const record = s.action(String(row.action));
        return record ? [{ micros: microsOfRow(row.time), entry: actionEntry(record, q.device) }] : [];
      });
    },
    consent: async (q, n) =>
      q.subjects
        .flatMap((subject) => s.consentHistory(subject))
        .map((c) => ({ micros: c.at.getTime() * 1000, change: c }))
        .filter(({ micros: us }) => us >= q.from * 1000 && us <= q.untilMicros)
        .sort((a, b) => b.micros - a.micros)
        .slice(0, n)
        .map(({ micros: us, change }) => ({
          micros: us,
          entry: {
            type: "consent",
            key: `consent:${us}:${change.subject}:${change.purpose}`,
            at: iso(us),
            subject: change.subject,
            purpose: change.purpose,
            granted: change.granted,
            by: change.by,
          },
        })),
  };
}

const newestFirst = (a: Timed, b: Timed) =>
  b.micros - a.micros || (a.entry.key < b.entry.key ? -1 : a.entry.key > b.entry.key ? 1 : 0);

/** A page of a device's timeline, newest first, with a cursor for the next older page. */
export async function timelinePage(s: TimelineSources, q: TimelineQuery): Promise<TimelinePage> {
  const n = q.limit + q.skip + 1;
  const all = sources(s);
  const found = (await Promise.all([...q.types].map((type) => all[type](q, n)))).flat().sort(newestFirst);
  // The previous page ended inside a run of entries with the same time: skip what it showed.
  let start = 0;
  while (start < q.skip && found[start]?.micros === q.untilMicros) start += 1;
  const page = found.slice(start, start + q.limit);
  if (found.length <= start + q.limit || page.length === 0) return { entries: page.map((t) => t.entry), next: null };
  const last = page.at(-1)!.micros;
  const atLast = page.filter((t) => t.micros === last).length + (last === q.untilMicros ? start : 0);
  return { entries: page.map((t) => t.entry), next: encodeCursor(last, atLast) };
}

/**
 * Everything at or after `afterMicros`, and the actions whose lifecycle moved
 * since then, for live updates; `truncated` when more arrived than `limit`.
 */
export async function timelineSince(
  s: TimelineSources,
  q: Pick<TimelineQuery, "device" | "subjects" | "types" | "limit"> & { afterMicros: number },
): Promise<{ entries: Entry[]; truncated: boolean }> {
  const types = new Set([...q.types].filter((t) => t !== "action"));
  const page = await timelinePage(s, {
    ...q,
    types,
    from: Math.floor(q.afterMicros / 1000),
    untilMicros: (Date.now() + 60_000) * 1000,
    skip: 0,
  });
  const entries = page.entries;
  if (q.types.has("action")) {
    const moved = await s.store.query(actionsMovedSince(q.device, q.afterMicros));
    for (const id of new Set(moved.map((r) => String(r.action)))) {
      const record = s.action(id);
      if (record) entries.push(actionEntry(record, q.device));
    }
  }
  return { entries, truncated: page.next !== null };
}

/** Mean, min and max of every numeric metric per bucket: what the device view charts. */
export async function telemetrySummary(
  store: Store,
  device: string,
  from: number,
  to: number,
  interval: number,
): Promise<TelemetrySummary> {
  const rows = await store.query(telemetryBuckets(device, from, to, interval));
  const summary: TelemetrySummary = { interval, time: [], metrics: {} };
  // mean(*) answers numeric fields only, so a mean_ column marks a metric worth a chart.
  const names = new Set<string>();
  for (const row of rows)
    for (const column of Object.keys(row)) if (column.startsWith("mean_")) names.add(column.slice(5));
  for (const name of [...names].sort()) summary.metrics[name] = { mean: [], min: [], max: [] };
  for (const row of rows) {
    summary.time.push(row.time.getTime());
    for (const name of names) {
      const m = summary.metrics[name]!;
      m.mean.push(numberOrNull(row[`mean_${name}`]));
      m.min.push(numberOrNull(row[`min_${name}`]));
      m.max.push(numberOrNull(row[`max_${name}`]));
    }
  }
  return summary;
}
