import { createHash } from "node:crypto";
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
 * Writes a snapshot so that a crash at any moment leaves the previous one or
 * this one, whole: a temporary file, fsync'd, renamed over the old one, and
 * the directory fsync'd so the new name is durable too.
 */
export async function writeSnapshot(file: string, snapshot: ViewSnapshot): Promise<number> {
  const content = Buffer.from(JSON.stringify({ format: SNAPSHOT_FORMAT, ...snapshot }), "utf8");
  const sum = createHash("sha256").update(content).digest("hex");
  const header = Buffer.from(`REFEED-VIEWS-SNAPSHOT ${SNAPSHOT_FORMAT} ${sum} ${content.length}\n`, "latin1");
  const temp = `${file}.${process.pid}.tmp`;
  const handle = await open(temp, "w", 0o600);
  try {
    await handle.writeFile(Buffer.concat([header, content]));
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  await rename(temp, file);
  await syncDir(path.dirname(file));
  return header.length + content.length;
}

/** Removes the snapshot, e.g. when it may hold what an erasure removed and cannot be renewed. */
export async function removeSnapshot(file: string): Promise<void> {
  await rm(file, { force: true });
  await syncDir(path.dirname(file));
}
