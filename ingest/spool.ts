import { mkdir, open, readdir, readFile, rm, writeFile, type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { checksum, decodeBody, encodeFrame, frameAt, HEADER } from "./frame.ts";
import type { Line } from "./lineprotocol.ts";
import { syncDir } from "./sync-dir.ts";

/** The spool holds as much as it may; the caller must not acknowledge what it could not take. */
export class SpoolFullError extends Error {
  readonly code = "REFEED_SPOOL_FULL";
}

export interface SpoolOptions {
  dir: string;
  /** Bound on the bytes not yet replayed. */
  maxBytes: number;
  /** Size at which appends move on to a new segment file; replayed segments are deleted. */
  segmentBytes: number;
  log: Logger;
}

export interface SpoolDepth {
  batches: number;
  points: number;
  bytes: number;
}

export interface Spool {
  /** Appends one batch; resolves once it is on disk (fsync'd). Rejects with SpoolFullError when it does not fit. */
  append(lines: readonly Line[]): Promise<void>;
  /**
   * The oldest lines not yet replayed (waiting for appends under way), or undefined
   * when the spool is empty: whole batches, as many consecutive ones as fit in
   * `maxLines` (at least one), so small batches from a quiet outage replay in few writes.
   */
  head(maxLines?: number): Promise<readonly Line[] | undefined>;
  /** Marks what head() returned as replayed. */
  shift(): Promise<void>;
  readonly depth: Readonly<SpoolDepth>;
  /** Appends are under way. */
  readonly busy: boolean;
  close(): Promise<void>;
}

/** Bytes read at once when replaying. */
const READ_CHUNK = 4 * 1024 * 1024;
const SEGMENT = /^(\d{12})\.spool$/;
const segmentName = (seq: number) => `${String(seq).padStart(12, "0")}.spool`;

interface Pending {
  frame: Buffer;
  points: number;
  resolve(): void;
  reject(err: Error): void;
}

/**
 * An append-only, fsync'd, size-bounded queue of batches on local disk, in
 * segment files read from a cursor. Appends that arrive together share one
 * write and one fsync (group commit). The cursor is saved without fsync: after
 * a crash a few batches may be replayed twice, which is harmless because each
 * point carries its final timestamp and InfluxDB keeps one point per series
 * and time.
 */
export async function openSpool(options: SpoolOptions): Promise<Spool> {
  const { dir, maxBytes, segmentBytes } = options;
  const log = options.log.child({ part: "spool" });
  await mkdir(dir, { recursive: true });
  const cursorFile = path.join(dir, "cursor.json");

  /** Committed (fsync'd) size of every segment not yet deleted, in order. */
  const sizes = new Map<number, number>();
  const depth: SpoolDepth = { batches: 0, points: 0, bytes: 0 };
  let cursor = await readCursor(cursorFile);

  const found = (await readdir(dir))
    .map((n) => SEGMENT.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  for (const seq of found) {
    const file = path.join(dir, segmentName(seq));
    if (seq < cursor.seq) {
      await rm(file, { force: true });
      continue;
    }
    if (seq > cursor.seq && sizes.size === 0) cursor = { seq, offset: 0 };
    const data = await readFile(file);
    const frames: Array<{ at: number; size: number; points: number }> = [];
    let offset = 0;
    while (offset < data.length) {
      const frame = frameAt(data, offset);
      if (!frame) {
        // Only an append that never completed (so was never acknowledged) leaves a torn frame.
        log.error(
          { segment: segmentName(seq), offset, discarded: data.length - offset },
          "spool segment ends in an incomplete or damaged frame; truncating it",
        );
        await truncateFile(file, offset);
        break;
      }
      frames.push({ at: offset, size: frame.size, points: frame.points });
      offset += frame.size;
    }
    if (seq === cursor.seq && cursor.offset !== offset && !frames.some((f) => f.at === cursor.offset)) {
      log.warn(
        { segment: segmentName(seq), offset: cursor.offset },
        "spool cursor is not at a batch boundary; replaying the segment from its start",
      );
      cursor = { seq, offset: 0 };
    }
    for (const frame of frames) {
      if (seq === cursor.seq && frame.at < cursor.offset) continue;
      depth.batches += 1;
      depth.points += frame.points;
      depth.bytes += frame.size;
    }
    sizes.set(seq, offset);
  }
  if (sizes.size === 0) cursor = { seq: Math.max(cursor.seq, (found.at(-1) ?? 0) + 1), offset: 0 };
  let nextSeq = Math.max(cursor.seq, ...sizes.keys()) + 1;
  if (depth.batches > 0) log.warn({ ...depth }, "spool holds batches from before; they will be replayed");

  let active: { seq: number; fd: FileHandle } | undefined;
  let reader: { seq: number; fd: FileHandle } | undefined;
  let cached: { lines: Line[]; size: number; points: number; batches: number } | undefined;
  let pending: Pending[] = [];
  let reserved = 0;
  let flushing: Promise<void> | undefined;
  let closed = false;

  const rotate = async () => {
    await active?.fd.close();
    const seq = nextSeq++;
    const fd = await open(path.join(dir, segmentName(seq)), "wx");
    await syncDir(dir); // the new file's name is part of what must survive a crash
    active = { seq, fd };
    sizes.set(seq, 0);
  };

  const flush = async () => {
    while (pending.length > 0) {
      const group = pending;
      pending = [];
      const bytes = group.reduce((n, p) => n + p.frame.length, 0);
      reserved -= bytes;
      try {
        if (!active || (sizes.get(active.seq)! > 0 && sizes.get(active.seq)! + bytes > segmentBytes)) await rotate();
        const { seq, fd } = active!;
        const at = sizes.get(seq)!;
        try {
          const { bytesWritten } = await fd.writev(
            group.map((p) => p.frame),
            at,
          );
          if (bytesWritten !== bytes) throw new Error(`short write to the spool (${bytesWritten} of ${bytes} bytes)`);
          await fd.datasync();
        } catch (err) {
          await fd.truncate(at).catch(() => undefined);
          throw err;
        }
        sizes.set(seq, at + bytes);
        for (const p of group) {
          depth.batches += 1;
          depth.points += p.points;
          depth.bytes += p.frame.length;
        }
        for (const p of group) p.resolve();
      } catch (err) {
        log.error({ err: (err as Error).message, batches: group.length }, "spool append failed");
        for (const p of group) p.reject(err as Error);
      }
    }
  };

  const kick = (): Promise<void> => {
    flushing ??= flush().finally(() => {
      flushing = undefined;
      // An append made while the last group's callers were being resolved.
      if (pending.length > 0) void kick();
    });
    return flushing;
  };

  const readerFor = async (seq: number): Promise<FileHandle> => {
    if (reader?.seq === seq) return reader.fd;
    await reader?.fd.close();
    reader = { seq, fd: await open(path.join(dir, segmentName(seq)), "r") };
    return reader.fd;
  };

  /** Moves the cursor past replayed segments, deleting them; true when a batch is at the cursor. */
  const advanceToData = async (): Promise<boolean> => {
    for (;;) {
      const size = sizes.get(cursor.seq);
      if (size !== undefined && cursor.offset < size) return true;
      const later = [...sizes.keys()].filter((s) => s > cursor.seq);
      if (later.length === 0) return false;
      if (size !== undefined && active?.seq !== cursor.seq) await dropSegment(cursor.seq);
      cursor = { seq: Math.min(...later), offset: 0 };
    }
  };

  const dropSegment = async (seq: number) => {
    sizes.delete(seq);
    const fd = reader?.seq === seq ? reader.fd : undefined;
    if (fd) reader = undefined;
    await fd?.close();
    await rm(path.join(dir, segmentName(seq)), { force: true });
  };

  const saveCursor = () =>
    writeFile(cursorFile, JSON.stringify(cursor)).catch((err: Error) =>
      log.warn({ err: err.message }, "could not save the spool cursor"),
    );

  return {
    append(lines) {
      if (closed) return Promise.reject(new Error("spool is closed"));
      const frame = encodeFrame(lines);
      if (depth.bytes + reserved + frame.length > maxBytes) {
        return Promise.reject(
          new SpoolFullError(
            `the spool is full (${depth.bytes + reserved} of ${maxBytes} bytes); refusing until InfluxDB takes the backlog`,
          ),
        );
      }
      reserved += frame.length;
      const done = new Promise<void>((resolve, reject) =>
        pending.push({ frame, points: lines.length, resolve, reject }),
      );
      void kick();
      return done;
    },

    async head(maxLines = Number.POSITIVE_INFINITY) {
      if (cached) return cached.lines;
      while (!(await advanceToData())) {
        if (!flushing && pending.length === 0) return undefined;
        await kick();
      }
      const fd = await readerFor(cursor.seq);
      const end = sizes.get(cursor.seq)!;
      const read: { lines: Line[]; size: number; points: number; batches: number } = {
        lines: [],
        size: 0,
        points: 0,
        batches: 0,
      };
      // One read for many frames; a frame larger than the chunk is read on its own.
      let chunk = Buffer.alloc(0);
      let chunkAt = cursor.offset;
      const bytesAt = async (at: number, length: number): Promise<Buffer> => {
        if (at < chunkAt || at + length > chunkAt + chunk.length) {
          chunkAt = at;
          chunk = Buffer.alloc(Math.max(length, Math.min(READ_CHUNK, end - at)));
          const { bytesRead } = await fd.read(chunk, 0, chunk.length, at);
          if (bytesRead < length) throw new Error(`spool segment ${segmentName(cursor.seq)} is shorter than recorded`);
        }
        return chunk.subarray(at - chunkAt, at - chunkAt + length);
      };
      while (cursor.offset + read.size < end) {
        const at = cursor.offset + read.size;
        const header = await bytesAt(at, HEADER);
        const length = header.readUInt32BE(0);
        const count = header.readUInt32BE(4);
        const sum = header.readUInt32BE(8);
        if (read.batches > 0 && read.lines.length + count > maxLines) break;
        if (at + HEADER + length > end)
          throw new Error(`spool frame at ${segmentName(cursor.seq)}:${at} runs past the end of its segment`);
        const body = await bytesAt(at + HEADER, length);
        // Damaged on disk after it was written: skipping it loses that batch, keeping it would stop the replay for good.
        if (checksum(body) !== sum)
          log.error(
            { segment: segmentName(cursor.seq), offset: at, points: count },
            "spool batch damaged on disk; skipped",
          );
        else for (const line of decodeBody(body)) read.lines.push(line);
        read.size += HEADER + length;
        read.points += count;
        read.batches += 1;
      }
      cached = read;
      return cached.lines;
    },

    async shift() {
      if (!cached) throw new Error("shift() without head()");
      cursor = { seq: cursor.seq, offset: cursor.offset + cached.size };
      depth.batches -= cached.batches;
      depth.points -= cached.points;
      depth.bytes -= cached.size;
      cached = undefined;
      if (depth.batches === 0 && pending.length === 0 && !flushing) {
        // Drained: free the disk now and start the next outage on a fresh segment.
        // State changes first, so an append arriving meanwhile opens that new segment.
        const drained = [...sizes.keys()];
        const handles = [active?.fd, reader?.fd];
        active = undefined;
        reader = undefined;
        sizes.clear();
        cursor = { seq: nextSeq, offset: 0 };
        for (const fd of handles) await fd?.close();
        for (const seq of drained) await rm(path.join(dir, segmentName(seq)), { force: true });
      }
      await saveCursor();
    },

    depth,

    get busy() {
      return flushing !== undefined || pending.length > 0;
    },

    async close() {
      closed = true;
      await flushing;
      await active?.fd.close();
      await reader?.fd.close();
      active = undefined;
      reader = undefined;
      await saveCursor();
    },
  };
}

async function readCursor(file: string): Promise<{ seq: number; offset: number }> {
  try {
    const parsed = JSON.parse(await readFile(file, "utf8")) as { seq?: unknown; offset?: unknown };
    if (Number.isSafeInteger(parsed.seq) && Number.isSafeInteger(parsed.offset))
      return { seq: parsed.seq as number, offset: parsed.offset as number };
  } catch {
    // missing or damaged: replay from the first segment (replay is idempotent)
  }
  return { seq: 0, offset: 0 };
}

async function truncateFile(file: string, length: number): Promise<void> {
  const handle = await open(file, "r+");
  try {
    await handle.truncate(length);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
