import { createHash, type Hash } from "node:crypto";
import { open, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { syncDir } from "../ingest/sync-dir.ts";
import type { KeptRow } from "../store/answers.ts";

/** Bumped whenever what a snapshot holds changes meaning; a snapshot of another version is not used. */
export const SNAPSHOT_FORMAT = 1;
export const SNAPSHOT_FILE = "views.snapshot";

/**
 * What the views were rebuilt from: InfluxDB's answers to their queries at
 * the last rebuild, and every change the feed brought since (applied again,
 * the views being idempotent).
 */
export interface ViewSnapshot {
  writtenAt: string;
  /** Which InfluxDB database the views are of: a snapshot of another one is never used. */
  influx: { url: string; db: string };
  answers: Array<[query: string, rows: KeptRow[]]>;
  events: Array<{ topic: string; event: unknown }>;
}

const keptRow = z.looseObject({ time: z.string().regex(/^\d+$/) });
const body = z.strictObject({
  format: z.literal(SNAPSHOT_FORMAT),
  writtenAt: z.string(),
  influx: z.strictObject({ url: z.string(), db: z.string() }),
  answers: z.array(z.tuple([z.string(), z.array(keptRow)])),
  events: z.array(z.strictObject({ topic: z.string(), event: z.unknown() })),
});

// The first line names the format and vouches for the rest: its length and SHA-256.
const HEADER = /^REFEED-VIEWS-SNAPSHOT (\d+) ([0-9a-f]{64}) (\d+)\n/;

export type SnapshotRead =
  | { ok: true; snapshot: ViewSnapshot }
  | { ok: false; reason: "missing" | "unverified" | "other_database"; detail: string };

/**
 * Reads and verifies a snapshot: the format, the length and checksum of its
 * content, its shape, and that it is of this InfluxDB database. Anything else
 * answers why it is not to be used; a snapshot that does not verify never is.
 */
export async function readSnapshot(file: string, expect: { url: string; db: string }): Promise<SnapshotRead> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { ok: false, reason: "missing", detail: file };
    return { ok: false, reason: "unverified", detail: (err as Error).message };
  }
  const newline = bytes.indexOf(0x0a);
  const header = HEADER.exec(bytes.subarray(0, newline + 1).toString("latin1"));
  if (!header) return { ok: false, reason: "unverified", detail: "no snapshot header" };
  const [, format, sum, length] = header;
  if (Number(format) !== SNAPSHOT_FORMAT)
    return { ok: false, reason: "unverified", detail: `format ${format}, this Refeed reads ${SNAPSHOT_FORMAT}` };
  const content = bytes.subarray(newline + 1);
  if (content.length !== Number(length))
    return { ok: false, reason: "unverified", detail: `${content.length} bytes of content, the header says ${length}` };
  if (createHash("sha256").update(content).digest("hex") !== sum)
    return { ok: false, reason: "unverified", detail: "the checksum does not match the content" };
  let parsed;
  try {
    parsed = body.safeParse(JSON.parse(content.toString("utf8")));
  } catch (err) {
    return { ok: false, reason: "unverified", detail: `not JSON: ${(err as Error).message}` };
  }
  if (!parsed.success)
    return { ok: false, reason: "unverified", detail: parsed.error.issues[0]?.message ?? "unexpected shape" };
  const { influx } = parsed.data;
  if (influx.db !== expect.db || influx.url !== expect.url)
    return {
      ok: false,
      reason: "other_database",
      detail: `the snapshot is of database '${influx.db}' at ${influx.url}, not '${expect.db}' at ${expect.url}`,
    };
  const { format: _format, ...snapshot } = parsed.data;
  return { ok: true, snapshot };
}

/**
 * The answers as the start of a snapshot's content, with the SHA-256 state
 * after them: they change only when renewed and are most of the file, so a
 * periodic write encodes and hashes only the changes behind them.
 */
export interface PreparedAnswers {
  readonly bytes: Buffer;
  readonly hash: Hash;
}

export function prepareAnswers(answers: ViewSnapshot["answers"]): PreparedAnswers {
  const bytes = Buffer.from(`{"format":${SNAPSHOT_FORMAT},"answers":${JSON.stringify(answers)}`, "utf8");
  return { bytes, hash: createHash("sha256").update(bytes) };
}

/**
 * Writes a snapshot so that a crash at any moment leaves the previous one or
 * this one, whole: a temporary file, fsync'd, renamed over the old one, and
 * the directory fsync'd so the new name is durable too.
 */
export async function writeSnapshot(
  file: string,
  snapshot: ViewSnapshot | (Omit<ViewSnapshot, "answers"> & { prepared: PreparedAnswers }),
): Promise<number> {
  const { writtenAt, influx, events } = snapshot;
  const prepared = "prepared" in snapshot ? snapshot.prepared : prepareAnswers(snapshot.answers);
  const rest = Buffer.from(
    `,"writtenAt":${JSON.stringify(writtenAt)},"influx":${JSON.stringify(influx)},"events":${JSON.stringify(events)}}`,
    "utf8",
  );
  const sum = prepared.hash.copy().update(rest).digest("hex");
  const length = prepared.bytes.length + rest.length;
  const header = Buffer.from(`REFEED-VIEWS-SNAPSHOT ${SNAPSHOT_FORMAT} ${sum} ${length}\n`, "latin1");
  const temp = `${file}.${process.pid}.tmp`;
  const handle = await open(temp, "w", 0o600);
  try {
    const parts = [header, prepared.bytes, rest];
    const total = header.length + length;
    let written = (await handle.writev(parts)).bytesWritten;
    // writev may stop short (a signal, a nearly full disk): the rest follows, or write fails with the reason.
    if (written < total) {
      const all = Buffer.concat(parts);
      while (written < total) written += (await handle.write(all, written, total - written, written)).bytesWritten;
    }
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  await rename(temp, file);
  await syncDir(path.dirname(file));
  return header.length + length;
}

/** Removes the snapshot, e.g. when it may hold what an erasure removed and cannot be renewed. */
export async function removeSnapshot(file: string): Promise<void> {
  await rm(file, { force: true });
  await syncDir(path.dirname(file));
}
