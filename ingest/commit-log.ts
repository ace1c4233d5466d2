import { mkdir, open, readdir, readFile, rm, type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { decodeBody, encodeFrame, frameAt, HEADER } from "./frame.ts";
import type { Line } from "./lineprotocol.ts";
import { syncDir } from "./sync-dir.ts";

export interface CommitLogOptions {
  dir: string;
  /**
   * Size of a segment file, allocated (written with zeros) before it is used;
   * appends move on to the next one when it is full, and a segment is deleted
   * once all of it is released.
   */
  segmentBytes: number;
  log: Logger;
}

/** One appended batch, until it is released. */
export interface Ticket {
  /**
   * Resolves once the batch is written to the log file: from then on it
   * survives a crash of this process (not yet of the machine).
   */
  readonly written: Promise<void>;
  /** Resolves once the batch is on disk (written and fdatasync'd); rejects when the disk refused it. */
  readonly durable: Promise<void>;
}

export interface CommitLog {
  /** Appends a batch; appends that arrive together share one write, and writes made during an fdatasync share the next one (group commit). */
  append(lines: readonly Line[]): Ticket;
  /** The batch is in InfluxDB or in the spool: the log need not keep it any longer. Repeats are ignored. */
  release(ticket: Ticket): void;
  /** A write is under way: what is appended now goes in the next one. */
  readonly busy: boolean;
  /** Batches appended and not yet released. */
  readonly live: number;
  /** Deletes the segments once everything appended has been released; otherwise keeps them for the next start. */
  close(): Promise<void>;
}

export interface OpenedCommitLog {
  log: CommitLog;
  /**
   * Batches a previous run appended and never released (it stopped before
   * InfluxDB or the spool had them), oldest first. The caller puts them in the
   * spool and then calls forgetRecovered(); a crash in between only replays them twice.
   */
  recovered: Line[][];
  forgetRecovered(): Promise<void>;
}

interface Segment {
  seq: number;
  /** Bytes appended or reserved for appends under way. */
  bytes: number;
  /** The file, allocated and named durably; prepared before the segment is needed. */
  file: Promise<FileHandle>;
  fd: FileHandle | undefined;
  /** Appends not yet released. */
  live: number;
  /** Appends not yet written (successfully or not). */
  unwritten: number;
  /** No more appends go here. */
  sealed: boolean;
  /** The file's committed size: a failed write is truncated back to it. */
  size: number;
}

interface TicketState extends Ticket {
  segment: Segment;
  released: boolean;
}

interface Pending {
  ticket: TicketState;
  frame: Buffer;
  wrote(): void;
  resolve(): void;
  reject(err: Error): void;
}

const SEGMENT = /^(\d{12})\.log$/;
const segmentName = (seq: number) => `${String(seq).padStart(12, "0")}.log`;

/**
 * The commit log: every batch that would otherwise wait in memory for
 * InfluxDB is appended here first, and it counts as durable (a QoS 1 PUBACK,
 * the rules) once it is fdatasync'd, which takes a fraction of a millisecond
 * where an InfluxDB write takes milliseconds, and InfluxDB's tail much more.
 * The batch is released once InfluxDB or the spool has it. After a crash,
 * what was never released is handed to the caller at the next start, for the
 * spool to replay. So the log only ever holds what is in memory on its way to
 * InfluxDB: a few segments at most.
 *
 * Segments are written with zeros before use (the next one while the current
 * one fills), so an append overwrites allocated blocks and its fdatasync has no
 * file size to commit: on ext4 that keeps it from waiting for a journal commit,
 * and with it for every other process's dirty data (InfluxDB's compactions),
 * which is what made appending fdatasyncs slow at the tail. A zero header marks the end.
 */
export async function openCommitLog(options: CommitLogOptions): Promise<OpenedCommitLog> {
  const { dir, segmentBytes } = options;
  const log = options.log.child({ part: "commit-log" });
  await mkdir(dir, { recursive: true });

  const found = (await readdir(dir))
    .map((n) => SEGMENT.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  const recovered: Line[][] = [];
  for (const seq of found) {
    const data = await readFile(path.join(dir, segmentName(seq)));
    let offset = 0;
    while (offset < data.length) {
      if (isZeroHeader(data, offset)) break; // the allocated, never written rest of the segment
      const frame = frameAt(data, offset);
      if (!frame) {
        // Only an append that never completed (so was never acknowledged) leaves a torn frame.
        log.warn(
          { segment: segmentName(seq), offset, discarded: data.length - offset },
          "commit log segment ends in an incomplete frame; ignoring the rest",
        );
        break;
      }
      recovered.push(decodeBody(frame.body));
      offset += frame.size;
    }
  }
  if (recovered.length > 0)
    log.warn(
      { batches: recovered.length, points: recovered.reduce((n, b) => n + b.length, 0) },
      "commit log holds batches of a run that did not stop cleanly; they go to the spool",
    );

  let nextSeq = (found.at(-1) ?? 0) + 1;
  const segments = new Set<Segment>();
  let current: Segment | undefined;
  let pending: Pending[] = [];
  let flushing: Promise<void> | undefined;
  let live = 0;
  let closed = false;

  /** Creates, zero-fills and durably names a segment file. */
  const allocate = async (seq: number): Promise<FileHandle> => {
    const fd = await open(path.join(dir, segmentName(seq)), "wx");
    try {
      const zeros = Buffer.alloc(Math.min(segmentBytes, 1 << 20));
      for (let at = 0; at < segmentBytes; at += zeros.length)
        await fd.write(zeros, 0, Math.min(zeros.length, segmentBytes - at), at);
      await fd.sync();
      await syncDir(dir); // the new file's name is part of what must survive a crash
      return fd;
    } catch (err) {
      await fd.close().catch(() => undefined);
      throw err;
    }
  };
  let spare: { seq: number; file: Promise<FileHandle> } | undefined;
  const prepare = () => {
    const seq = nextSeq++;
    const file = allocate(seq);
    file.catch(() => undefined); // reported by the append that needs it
    return { seq, file };
  };

  const drop = async (segment: Segment) => {
    segments.delete(segment);
    const fd = segment.fd ?? (await segment.file.catch(() => undefined));
    segment.fd = undefined;
    await fd?.close();
    await rm(path.join(dir, segmentName(segment.seq)), { force: true }).catch((err: Error) =>
      log.warn({ err: err.message }, "could not delete a released commit log segment"),
    );
  };

  const dropIfDone = (segment: Segment) => {
    if (segment.sealed && segment.live === 0 && segment.unwritten === 0) void drop(segment);
  };

  const releaseState = (ticket: TicketState) => {
    if (ticket.released) return;
    ticket.released = true;
    ticket.segment.live -= 1;
    live -= 1;
    dropIfDone(ticket.segment);
  };

  /** Written, waiting for their fdatasync, in order. */
  let unsynced: Array<{ segment: Segment; run: Pending[] }> = [];
  let syncing: Promise<void> | undefined;

  /** Writes one run of appends to the same segment in one writev; the fdatasync follows on its own. */
  const writeRun = async (segment: Segment, run: Pending[]) => {
    const bytes = run.reduce((n, p) => n + p.frame.length, 0);
    try {
      segment.fd ??= await segment.file;
      const at = segment.size;
      try {
        const { bytesWritten } = await segment.fd.writev(
          run.map((p) => p.frame),
          at,
        );
        if (bytesWritten !== bytes)
          throw new Error(`short write to the commit log (${bytesWritten} of ${bytes} bytes)`);
      } catch (err) {
        await segment.fd.truncate(at).catch(() => undefined);
        throw err;
      }
      segment.size = at + bytes;
      for (const p of run) p.wrote();
      unsynced.push({ segment, run });
      startSync();
    } catch (err) {
      segment.unwritten -= run.length;
      segment.bytes -= bytes;
      // Not on disk: nothing to keep, and the batch is durable only once InfluxDB or the spool has it.
      for (const p of run) releaseState(p.ticket);
      for (const p of run) p.reject(err as Error);
      dropIfDone(segment);
    }
  };

  /**
   * One fdatasync at a time for everything written before it started, while
   * the next appends are being written: a record is in the log (and the rules
   * see it) without waiting for the disk's flush, which on a shared disk now
   * and then takes hundreds of milliseconds; its acknowledgement waits for it.
   */
  const syncAll = async () => {
    while (unsynced.length > 0) {
      const group = unsynced;
      unsynced = [];
      const failed = new Map<Segment, Error>();
      for (const segment of new Set(group.map((g) => g.segment))) {
        try {
          await segment.fd!.datasync();
        } catch (err) {
          log.error({ err: (err as Error).message, segment: segmentName(segment.seq) }, "commit log fdatasync failed");
          failed.set(segment, err as Error);
        }
      }
      for (const { segment, run } of group) {
        segment.unwritten -= run.length;
        const err = failed.get(segment);
        // Written but perhaps not on disk: not kept (replaying it after a crash would only rewrite the same points).
        if (err) for (const p of run) releaseState(p.ticket);
        for (const p of run) {
          if (err) p.reject(err);
          else p.resolve();
        }
        dropIfDone(segment);
      }
    }
  };

  const startSync = () => {
    syncing ??= syncAll().finally(() => {
      syncing = undefined;
      if (unsynced.length > 0) startSync();
    });
  };

  const flush = async () => {
    while (pending.length > 0) {
      const group = pending;
      pending = [];
      let start = 0;
      for (let i = 1; i <= group.length; i += 1) {
        if (i === group.length || group[i]!.ticket.segment !== group[start]!.ticket.segment) {
          await writeRun(group[start]!.ticket.segment, group.slice(start, i));
          start = i;
        }
      }
    }
  };

  const kick = () => {
    flushing ??= flush().finally(() => {
      flushing = undefined;
      if (pending.length > 0) kick();
    });
  };

  const segmentFor = (bytes: number): Segment => {
    if (current && current.bytes > 0 && current.bytes + bytes > segmentBytes) {
      current.sealed = true;
      dropIfDone(current);
      current = undefined;
    }
    if (!current) {
      const { seq, file } = spare ?? prepare();
      spare = undefined;
      current = { seq, file, bytes: 0, fd: undefined, live: 0, unwritten: 0, sealed: false, size: 0 };
      segments.add(current);
    }
    // The next segment is made ready while this one fills.
    if (!spare && current.bytes + bytes > segmentBytes / 2) spare = prepare();
    return current;
  };

  // The first segment is allocated now, off the first append's path.
  spare = prepare();

  const commitLog: CommitLog = {
    append(lines) {
      if (closed) {
        const refused = Promise.reject(new Error("commit log is closed"));
        return { written: refused, durable: refused } satisfies Ticket;
      }
      const frame = encodeFrame(lines);
      const segment = segmentFor(frame.length);
      segment.bytes += frame.length;
      segment.live += 1;
      segment.unwritten += 1;
      live += 1;
      let resolve!: () => void;
      let reject!: (err: Error) => void;
      let wrote!: () => void;
      let notWritten!: (err: Error) => void;
      const durable = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      const written = new Promise<void>((res, rej) => {
        wrote = res;
        notWritten = rej;
      });
      written.catch(() => undefined); // the same error reaches whoever awaits durable
      const ticket: TicketState = { written, durable, segment, released: false };
      pending.push({ ticket, frame, wrote, resolve, reject: (err) => (notWritten(err), reject(err)) });
      kick();
      return ticket;
    },

    release(ticket) {
      releaseState(ticket as TicketState);
    },

    get busy() {
      return flushing !== undefined;
    },

    get live() {
      return live;
    },

    async close() {
      closed = true;
      while (flushing || syncing) await (flushing ?? syncing);
      if (spare) {
        const unused = spare;
        spare = undefined;
        const fd = await unused.file.catch(() => undefined);
        await fd?.close();
        await rm(path.join(dir, segmentName(unused.seq)), { force: true });
      }
      if (live > 0) {
        log.warn(
          { batches: live },
          "commit log closed with batches neither in InfluxDB nor in the spool; they are recovered at the next start",
        );
        for (const segment of segments) await segment.fd?.close();
        return;
      }
      for (const segment of [...segments]) await drop(segment);
    },
  };

  return {
    log: commitLog,
    recovered,
    async forgetRecovered() {
      for (const seq of found) await rm(path.join(dir, segmentName(seq)), { force: true });
      await syncDir(dir);
    },
  };
}

const isZeroHeader = (data: Buffer, offset: number) => {
  for (let i = offset; i < Math.min(offset + HEADER, data.length); i += 1) if (data[i] !== 0) return false;
  return true;
};
