import { createHash, randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Point, RawRow, Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { ident, influxql, join, regex, type InfluxQL } from "../store/influxql.ts";
import { devicesOfSubject, erasure as ingestErasure } from "../ingest/queries.ts";
import type { ChangeFeed } from "../changes/index.ts";
import { erasureChanges, type ForgettingViews } from "./erasures.ts";
import { namedPattern, redact } from "./mentions.ts";
import { policyOf, scan, shapes, SUBJECT_TAGS, type Shape } from "./scan.ts";

export { ERASURES } from "./names.ts";
import { ERASURES } from "./names.ts";

/** The in-memory views that hold something about a subject; each forgets them when the feed says so. */
export interface ErasableViews extends ForgettingViews {
  touchpoints: ForgettingViews["touchpoints"] & { heldDevices(subject: string): string[] };
  actions: ForgettingViews["actions"] & { flush(): Promise<void> };
  rules: { forgetSubject(subject: string, devices: readonly string[]): Promise<void> };
  ingest: { flush(): Promise<void>; readonly spoolDepth: { points: number }; subjectHash(subject: string): string };
  /** The fleet view measured the devices they used, their feedback included: measured again without it. */
  health: { touch(device: string): void };
}

export class ErasureError extends Error {
  constructor(
    readonly code: "SPOOL_NOT_EMPTY" | "ERASURE_INCOMPLETE",
    message: string,
  ) {
    super(message);
  }
}

export interface ErasureReport {
  subject: string;
  erasure: string;
  at: string;
  /** Points removed, per measurement. */
  deleted: Record<string, number>;
  /** Points of someone else that mentioned the subject and had the mention replaced. */
  redacted: Record<string, number>;
  /** What still names the subject afterwards: only staff-written configuration (rule texts), to be changed by hand. */
  remaining: Record<string, number>;
}

/**
 * The erasure record keeps no erased data. It holds a salted SHA-256 of the
 * subject id, so the customer's export (which knows the id) and an auditor
 * given the id can find it, while the database alone does not name them.
 */
export function subjectHash(subject: string, salt: string): string {
  return createHash("sha256").update(salt).update("\0").update(subject).digest("base64url");
}

/** RFC 3339 with up to nine fractional digits -> nanoseconds since the epoch, exactly. */
export function nanosOf(time: string): string {
  const match = /^(.*?)(?:\.(\d{1,9}))?Z$/.exec(time);
  if (!match) throw new Error(`unexpected InfluxDB time '${time}'`);
  const seconds = BigInt(Math.floor(Date.parse(`${match[1]}Z`) / 1000));
  return String(seconds * 1_000_000_000n + BigInt((match[2] ?? "").padEnd(9, "0")));
}

const BATCH = 200;
/** How long the other nodes have to confirm they wrote what they admitted about the subject. */
const CONFIRM_MS = 10_000;

/** Deletes these points of the shape, BATCH statements per request. */
async function deleteRows(store: Store, shape: Shape, rows: readonly RawRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += BATCH)
    await store.exec(
      join(
        rows.slice(i, i + BATCH).map((row) => deleteOne(shape, row)),
        "; ",
      ),
    );
}

/** Resolves once every peer has confirmed, or when the time is up (the caller checks which). */
async function allConfirmed(peers: readonly string[], confirmed: ReadonlyMap<string, number>, ms: number) {
  const until = Date.now() + ms;
  while (peers.some((n) => !confirmed.has(n)) && Date.now() < until)
    await new Promise((resolve) => setTimeout(resolve, 5));
}

/** Measurement -> the field that names subjects by their keyed hash (see ingest/queries.ts `erasure.hashed`). */
const HASHED_FIELDS: Readonly<Record<string, string>> = ingestErasure.hashed;

/**
 * Erases a subject from every measurement and every in-memory view. Consent
 * first (from this moment nothing about them is admitted or used), then what
 * was in flight is flushed and the views forget them, so nothing lands after
 * the delete,
 * then InfluxDB: series tagged with them are dropped, points that name them
 * in a field are deleted (their own data, their actions' lifecycle rows) or
 * have the mention redacted (someone else's record), and a last scan checks
 * that nothing is left. Idempotent: a retry after a failure finishes the job.
 */
export async function eraseSubject(
  subject: string,
  by: string,
  deps: { store: Store; log: Logger; views: ErasableViews; changes: ChangeFeed; confirmMs?: number },
): Promise<ErasureReport> {
  const { store, views, changes } = deps;
  const log = deps.log.child({ part: "privacy" });
  if (views.ingest.spoolDepth.points > 0) {
    throw new ErasureError(
      "SPOOL_NOT_EMPTY",
      "InfluxDB is catching up with data spooled during an outage, which may include this customer's; erase again once it is done",
    );
  }
  const started = Date.now();
  // The devices whose own windows counted this customer's messages, to warm them again without.
  const used = new Set<string>();
  for (const rows of await store.exec(devicesOfSubject(subject))) {
    for (const row of rows) used.add(String(row.value));
  }

  const id = `era_${randomBytes(9).toString("base64url")}`;
  // In a cluster every other live node confirms it has written what it admitted about them before `started`.
  const peers = (await changes.peers?.()) ?? [];
  const confirmed = new Map<string, number>();
  const stopListening = changes.subscribe(erasureChanges, (e) => {
    if (e.op === "flushed" && e.erasure === id) confirmed.set(e.node, e.spooled);
  });
  try {
    // No record about them is admitted from now on, and their tokens stop working (every node, via the feed).
    await changes.publish(erasureChanges, { op: "started", erasure: id, subject, micros: nextMicros() });
    // What was admitted before is made durable and handed to the views (a turn of the event loop), then forgotten.
    await views.ingest.flush();
    await new Promise((resolve) => setImmediate(resolve));
    await allConfirmed(peers, confirmed, deps.confirmMs ?? CONFIRM_MS);
  } finally {
    stopListening();
  }
  const silent = peers.filter((n) => !confirmed.has(n));
  if (silent.length > 0)
    throw new ErasureError(
      "ERASURE_INCOMPLETE",
      `node ${silent.join(", ")} did not confirm within ${Math.round((deps.confirmMs ?? CONFIRM_MS) / 1000)} s that it wrote what it had received about this customer; nothing was deleted: erase again (a node that died is dropped from the cluster after ${3} s)`,
    );
  const spooling = [...confirmed].filter(([, points]) => points > 0).map(([n]) => n);
  if (spooling.length > 0)
    throw new ErasureError(
      "SPOOL_NOT_EMPTY",
      `node ${spooling.join(", ")} is catching up with data spooled during an InfluxDB outage, which may include this customer's; erase again once it is done`,
    );
  for (const device of views.touchpoints.heldDevices(subject)) used.add(device);
  await changes.publish(erasureChanges, { op: "forget", erasure: id, subject, micros: nextMicros() });
  await views.actions.flush();

  const deleted: Record<string, number> = {};
  const redacted: Record<string, number> = {};
  const add = (counts: Record<string, number>, measurement: string, n: number) =>
    n > 0 && (counts[measurement] = (counts[measurement] ?? 0) + n);

  const all = await shapes(store);
  for (const shape of all) {
    const tags = shape.tags.filter((t) => SUBJECT_TAGS[t]);
    if (tags.length === 0 || policyOf(shape.name) === "keep") continue;
    const where = join(
      tags.map((t) => influxql`${ident(t)} = ${SUBJECT_TAGS[t]!(subject)}`),
      " OR ",
    );
    const [counts = []] = await store.exec(influxql`SELECT count(*) FROM ${ident(shape.name)} WHERE ${where}`);
    const n = Math.max(
      0,
      ...counts.flatMap((row) =>
        Object.entries(row)
          .filter(([k]) => k.startsWith("count_"))
          .map(([, v]) => Number(v)),
      ),
    );
    if (n === 0) continue;
    await store.exec(influxql`DROP SERIES FROM ${ident(shape.name)} WHERE ${where}`);
    add(deleted, shape.name, n);
  }

  // What is left names them in a field: delete their own points, redact the mention in others'.
  const named = new RegExp(namedPattern(subject));
  for await (const { shape, matches } of scan(store, subject, (s) => policyOf(s.name) !== "keep")) {
    const own = matches.filter((m) => m.own).map((m) => m.row);
    await deleteRows(store, shape, own);
    add(deleted, shape.name, own.length);
    const rewrites = matches
      .filter((m) => !m.own)
      .map((m) => redacted_(shape, m.row, subject, named))
      .filter((p) => Object.keys(p.fields ?? {}).length > 0);
    await store.writeNanos(rewrites);
    add(redacted, shape.name, rewrites.length);
  }

  // Points that name them only by the keyed hash (dead letters kept without their consent) can still be
  // linked to them by whoever has the id and the data dir: they go too, or lose the hash where others share them.
  const keyed = views.ingest.subjectHash(subject);
  for await (const { shape, matches } of hashed(store, all, keyed)) {
    const own = matches.filter((m) => m.others.length === 0).map((m) => m.row);
    await deleteRows(store, shape, own);
    add(deleted, shape.name, own.length);
    const rewrites = matches
      .filter((m) => m.others.length > 0)
      .map((m) => rewritten(shape, m.row, { [m.field]: m.others.join(",") }));
    await store.writeNanos(rewrites);
    add(redacted, shape.name, rewrites.length);
  }

  await views.rules.forgetSubject(subject, [...used]);
  for (const device of used) views.health.touch(device);

  const remaining: Record<string, number> = {};
  for await (const { shape, matches } of scan(store, subject, undefined, true))
    add(remaining, shape.name, matches.length);
  for await (const { shape, matches } of hashed(store, await shapes(store), keyed))
    add(remaining, shape.name, matches.length);

  const salt = randomBytes(16).toString("base64url");
  const micros = nextMicros();
  const total = Object.values(deleted).reduce((a, b) => a + b, 0);
  const hash = subjectHash(subject, salt);
  await store.write([
    {
      measurement: ERASURES,
      fields: {
        erasure: id,
        subject_hash: hash,
        salt,
        by,
        points: total,
        detail: JSON.stringify({ deleted, redacted, remaining }),
      },
      timestamp: String(micros),
    },
  ]);
  await changes.publish(erasureChanges, {
    op: "recorded",
    erasure: id,
    subjectHash: hash,
    salt,
    by,
    points: total,
    micros,
  });
  log.info(
    {
      erasure: id,
      by,
      deleted: total,
      redacted: Object.values(redacted).reduce((a, b) => a + b, 0),
      remaining,
      ms: Date.now() - started,
    },
    "subject erased",
  );
  return { subject, erasure: id, at: new Date(Math.floor(micros / 1000)).toISOString(), deleted, redacted, remaining };
}

/** A tag's value as InfluxDB returned it (tags are strings; an absent one is null). */
const tagText = (value: unknown): string =>
  typeof value === "string" ? value : value == null ? "" : JSON.stringify(value);

/** One point: its series (every tag, absent ones as '') at its exact time. */
function deleteOne(shape: Shape, row: RawRow): InfluxQL {
  const series = shape.tags.map((t) => influxql`${ident(t)} = ${tagText(row[t])}`);
  // The time as InfluxDB wrote it (RFC 3339 with nanoseconds), a string literal: a Date would lose the nanoseconds.
  return influxql`DELETE FROM ${ident(shape.name)} WHERE ${join([...series, influxql`time = ${row.time}`], " AND ")}`;
}

/** The same point with every string field that names the subject redacted: same series and time, so InfluxDB overwrites those fields in place. */
function redacted_(shape: Shape, row: RawRow, subject: string, named: RegExp): Point {
  const fields: Record<string, string> = {};
  for (const f of shape.fields) {
    const value = row[f.key];
    if (f.type === "string" && typeof value === "string" && named.test(value)) fields[f.key] = redact(value, subject);
  }
  return rewritten(shape, row, fields);
}

/** The point's series and time with these fields: written, it overwrites them in place. */
function rewritten(shape: Shape, row: RawRow, fields: Record<string, string>): Point {
  const tags: Record<string, string> = {};
  for (const t of shape.tags) if (tagText(row[t]) !== "") tags[t] = tagText(row[t]);
  return { measurement: shape.name, tags, fields, timestamp: nanosOf(row.time) };
}

/**
 * Points whose hash field (HASHED_FIELDS) lists this keyed hash, in chunks, each with the other hashes it
 * lists (a batch about several customers): hex digests, so the pattern needs no escaping.
 */
async function* hashed(
  store: Store,
  all: readonly Shape[],
  hash: string,
): AsyncGenerator<{ shape: Shape; matches: Array<{ row: RawRow; field: string; others: string[] }> }> {
  for (const shape of all) {
    const field = HASHED_FIELDS[shape.name];
    if (!field || !shape.fields.some((f) => f.key === field)) continue;
    const where = influxql`${ident(field)} =~ ${regex(`(^|,)${hash}(,|$)`)}`;
    for await (const rows of store.stream(influxql`SELECT * FROM ${ident(shape.name)} WHERE ${where}`)) {
      yield {
        shape,
        matches: rows.map((row) => ({
          row,
          field,
          others: String(row[field])
            .split(",")
            .filter((h) => h !== "" && h !== hash),
        })),
      };
    }
  }
}
