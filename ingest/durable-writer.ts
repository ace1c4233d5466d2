import type { Logger } from "pino";
import type { StoreWriteError, Store } from "../store/index.ts";
import { writeIsolating as isolate } from "./isolate.ts";
import type { Line } from "./lineprotocol.ts";
import type { CommitLog, Ticket } from "./commit-log.ts";
import type { Spool } from "./spool.ts";
import { createBatcher, type Batch as Collected } from "./batcher.ts";
import { initialMode, next, type WriterEvent, type WriterMode } from "./writer-mode.ts";

export interface DurableWriterOptions {
  store: Pick<Store, "writeLines">;
  spool: Spool;
  /**
   * Where batches on their way to InfluxDB are made durable first. With it, a
   * write resolves once its batch is fdatasync'd there; without it, once
   * InfluxDB (or the spool) has the batch.
   */
  commitLog?: CommitLog;
  log: Logger;
  batchSize: number;
  flushMs: number;
  /** Write requests under way at once; more parallelism than this only queues inside InfluxDB. */
  maxInFlight: number;
  /** Batches' worth of lines (maxQueuedBatches x batchSize) waiting for a write slot; further ones go to the spool, which bounds memory. */
  maxQueuedBatches: number;
  writeTimeoutMs: number;
  /** A line InfluxDB refused for good (HTTP 400), with its message. */
  onRejected(line: Line, message: string): void;
  events?: WriterEvents;
}

/** What the writer reports for metrics. */
export interface WriterEvents {
  /** InfluxDB took a batch (directly or replayed from the spool). */
  written?(points: number, seconds: number, from: "direct" | "spool"): void;
  spooled?(points: number): void;
  /** A batch could not be stored nor spooled (spool full); its callers were refused. */
  refused?(points: number, reason: string): void;
}

export interface DurableWriter {
  /**
   * Resolves once the lines are durable: in the commit log, stored in InfluxDB
   * (or refused by it and handed to onRejected), or appended to the spool.
   * Rejects when none is possible (the spool is full): the caller must not acknowledge.
   *
   * `onLogged` is called once the lines are written to the commit log (they
   * survive a crash of this process; the fdatasync may still be under way), or
   * once they are durable when there is no commit log; never for lines that
   * are refused.
   */
  write(lines: readonly Line[], onLogged?: () => void): Promise<void>;
  /** Cuts the current batch and waits until everything accepted so far is in InfluxDB or in the spool. */
  flush(): Promise<void>;
  /** `spooling` from an outage until the spool has been replayed. */
  readonly mode: "direct" | "spooling";
  /** Lines accepted but not yet durable. */
  readonly pending: number;
  close(): Promise<void>;
}

/** A batch on its way: the batcher cut it, the routing below takes it to InfluxDB or the spool. */
interface Batch extends Collected {
  /** Its place in the commit log, while it waits in memory for InfluxDB. */
  ticket?: Ticket;
  /** Its waiters have been answered. */
  answered?: boolean;
  /** Its waiters have been told it is logged. */
  told?: boolean;
}

/**
 * Routes the batches the batcher cuts and keeps a few write requests in
 * flight. A batch is cut when it reaches the size, when it reaches the age,
 * or at once when no write is under way: a quiet system answers in one
 * write's time, a busy one batches more while InfluxDB works (group commit).
 *
 * With a commit log, "no write under way" means no write to the log: a
 * batch is appended there as it is cut and answered once it is on disk, and
 * batches waiting for a write slot are merged into InfluxDB writes of up to
 * batchSize lines, so InfluxDB still sees large writes.
 *
 * When InfluxDB is unreachable, answers 5xx or times out, the batch goes to
 * the disk spool (then it counts as durable), and so does every later batch,
 * in order, until the spool has been replayed; then writes go directly again.
 * So do batches that find the memory queue full (InfluxDB slower than the
 * traffic). A 400 is never retried as a whole: the batch is split to isolate
 * the points InfluxDB refuses (1.x stores the good points of a partial write,
 * and rewriting them is harmless since a point is identified by series and
 * timestamp).
 */
export function createDurableWriter(options: DurableWriterOptions): DurableWriter {
  const {
    store,
    spool,
    commitLog,
    batchSize,
    flushMs,
    maxInFlight,
    maxQueuedBatches,
    writeTimeoutMs,
    events = {},
  } = options;
  const log = options.log.child({ part: "writer" });
  const queue: Batch[] = [];
  let inFlight = 0;
  let queuedLines = 0;
  let pending = 0;
  let outstanding = 0;
  let mode: WriterMode = initialMode;
  const on = (event: WriterEvent) => {
    mode = next(mode, event);
  };
  let replaying: Promise<void> | undefined;
  let wakeReplay: (() => void) | undefined;
  const idle: Array<() => void> = [];

  const tell = (batch: Batch) => {
    if (batch.told) return;
    batch.told = true;
    for (const waiter of batch.waiters) waiter.logged?.();
  };

  const answer = (batch: Batch, err?: Error) => {
    if (batch.answered) return;
    batch.answered = true;
    if (!err) tell(batch);
    for (const waiter of batch.waiters) {
      if (err) waiter.reject(err);
      else waiter.resolve();
    }
  };

  /** The batch is in InfluxDB or in the spool (or, with err, in neither). */
  const settle = (batch: Batch, err?: Error) => {
    pending -= batch.lines.length;
    outstanding -= 1;
    if (!err && batch.ticket) commitLog?.release(batch.ticket);
    if (err && batch.answered && batch.ticket) {
      // Acknowledged from the commit log, which keeps it: the next start hands it to the spool.
      log.error(
        { err: err.message, points: batch.lines.length },
        "batch neither stored nor spooled; it stays in the commit log until the next start",
      );
    }
    answer(batch, err);
    if (outstanding === 0) idle.splice(0).forEach((done) => done());
  };

  /** Appends a batch that is going to wait in memory; it is answered as soon as it is on disk. */
  const commit = (batch: Batch) => {
    if (!commitLog) return;
    const ticket = commitLog.append(batch.lines);
    batch.ticket = ticket;
    ticket.written.then(
      () => {
        tell(batch);
        // What arrived during this write is the next one.
        if (batcher.waiting) batcher.cutSoon();
      },
      () => undefined,
    );
    ticket.durable.then(
      () => {
        on({ type: "commit-log-durable" });
        answer(batch);
      },
      (err: Error) => {
        batch.ticket = undefined;
        if (mode.commitLog === "ok")
          log.warn(
            { err: err.message },
            "commit log append failed; batches are acknowledged once InfluxDB or the spool has them",
          );
        on({ type: "commit-log-failed" });
        if (batcher.waiting) batcher.cutSoon();
      },
    );
  };

  /**
   * Nothing of ours is being made durable: InfluxDB has no write of ours under
   * way (with a commit log: the log is not in the middle of a write), or,
   * while spooling, the spool is not (so one batch holds what arrived during the last one).
   */
  const idleNow = () =>
    mode.route === "spooling"
      ? !spool.busy
      : mode.route === "catching-up"
        ? false
        : commitLog
          ? !commitLog.busy
          : inFlight === 0 && queue.length === 0;

  /** Where a cut batch goes: the memory queue towards InfluxDB, or the spool. */
  const route = (batch: Batch) => {
    outstanding += 1;
    // While catching up the queue may exceed its bound for the moment the last appends take to replay.
    if (mode.route === "direct" ? queuedLines >= maxQueuedBatches * batchSize : mode.route === "spooling") {
      // InfluxDB is down or slower than the traffic: memory stays bounded, the spool takes the rest in order.
      spillQueued();
      toSpool(batch);
    } else {
      commit(batch);
      queue.push(batch);
      queuedLines += batch.lines.length;
      pump();
    }
  };

  const spillQueued = () => {
    queuedLines = 0;
    for (const queued of queue.splice(0)) toSpool(queued);
  };

  /**
   * Starts writes while slots are free, each of as many waiting batches as fit
   * in batchSize lines. With a commit log nobody waits for InfluxDB, so a
   * further write starts beside one under way only with a full batch to send:
   * a quiet system makes one write at a time, not one per fdatasync.
   */
  const pump = () => {
    while (
      mode.route === "direct" &&
      inFlight < maxInFlight &&
      queue.length > 0 &&
      (!commitLog || inFlight === 0 || queuedLines >= batchSize)
    ) {
      const group = [queue.shift()!];
      let lines = group[0]!.lines.length;
      while (queue.length > 0 && lines + queue[0]!.lines.length <= batchSize) {
        lines += queue[0]!.lines.length;
        group.push(queue.shift()!);
      }
      queuedLines -= lines;
      void send(group, lines);
    }
  };

  const send = async (group: Batch[], points: number) => {
    inFlight += 1;
    const started = performance.now();
    try {
      await writeIsolating(group.length === 1 ? group[0]!.lines : group.flatMap((b) => b.lines));
      events.written?.(points, (performance.now() - started) / 1000, "direct");
      for (const batch of group) settle(batch);
    } catch (err) {
      const e = err as StoreWriteError;
      if (mode.route === "direct")
        log.warn(
          { status: e.status, err: e.message, points },
          "InfluxDB write failed; spooling to disk until it is back",
        );
      for (const batch of group) toSpool(batch);
      // Keep the order: what waited for a write slot goes to the spool behind it.
      spillQueued();
    } finally {
      inFlight -= 1;
      pump();
      if (batcher.waiting && idleNow()) batcher.cutSoon();
    }
  };

  const toSpool = (batch: Batch) => {
    on({ type: "spooled" });
    spool.append(batch.lines).then(
      () => {
        events.spooled?.(batch.lines.length);
        settle(batch);
        if (batcher.waiting) batcher.cutSoon();
      },
      (err: Error) => {
        events.refused?.(batch.lines.length, err.message);
        log.warn(
          { err: err.message, points: batch.lines.length },
          "batch neither stored nor spooled; its messages are not acknowledged",
        );
        settle(batch, err);
      },
    );
    startReplay();
  };

  /** Ends a catch-up: batches waiting in memory go to the spool, in order. */
  const spillQueue = () => {
    if (mode.route !== "catching-up") return;
    on({ type: "catch-up-abandoned" });
    spillQueued();
  };

  const startReplay = () => {
    if (mode.closing) return;
    replaying ??= replay()
      .catch((err: Error) => log.error({ err: err.message }, "spool replay stopped"))
      .finally(() => {
        replaying = undefined;
      });
  };

  /** Writes the spool to InfluxDB oldest first, retrying outages with capped backoff. */
  const replay = async () => {
    let attempt = 0;
    while (!mode.closing) {
      let lines: readonly Line[] | undefined;
      try {
        // One round from the end: hold new batches in memory so the traffic cannot keep the spool from emptying.
        if (spool.depth.points <= batchSize * maxInFlight) on({ type: "spool-nearly-replayed" });
        // Replay shares the write slots with direct writes still under way (at least one for itself).
        lines = await spool.head(batchSize * Math.max(1, maxInFlight - inFlight));
        if (!lines) {
          // A direct write that failed just now may have started an append.
          if (spool.busy || spool.depth.batches > 0) continue;
          on({ type: "spool-replayed" });
          log.info("spool replayed; writing to InfluxDB directly again");
          pump();
          if (batcher.waiting) batcher.cutSoon();
          return;
        }
        // A round of up to maxInFlight batches at once; rounds go in order, and a failed round is written again whole.
        const round: Array<readonly Line[]> = [];
        for (let i = 0; i < lines.length; i += batchSize) round.push(lines.slice(i, i + batchSize));
        await Promise.all(
          round.map(async (part) => {
            const started = performance.now();
            await writeIsolating(part);
            events.written?.(part.length, (performance.now() - started) / 1000, "spool");
          }),
        );
        await spool.shift();
        attempt = 0;
      } catch (err) {
        spillQueue(); // still down: what waits in memory goes to the spool, behind what is there
        const e = err as StoreWriteError;
        const delay = Math.min(5000, 100 * 2 ** Math.min(attempt, 6));
        attempt += 1;
        log.warn(
          { status: e.status, err: e.message, retryInMs: delay, spooled: spool.depth.batches },
          "spool replay waiting for InfluxDB",
        );
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, delay);
          wakeReplay = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wakeReplay = undefined;
      }
    }
  };

  const writeIsolating = (lines: readonly Line[]) =>
    isolate(
      lines,
      (part) => store.writeLines(part.join("\n"), writeTimeoutMs),
      (line, message) => options.onRejected(line, message),
    );

  const batcher = createBatcher({ batchSize, flushMs, idle: idleNow, eager: commitLog !== undefined, route });

  const flush = () => {
    batcher.cut();
    if (outstanding === 0) return Promise.resolve();
    return new Promise<void>((resolve) => idle.push(resolve));
  };

  // Batches left in the spool by an earlier run go first.
  if (spool.depth.batches > 0) {
    on({ type: "spooled" });
    startReplay();
  }

  return {
    write(lines, onLogged) {
      if (mode.closing) return Promise.reject(new Error("ingest is shutting down"));
      if (lines.length === 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        pending += lines.length;
        batcher.add(lines, { resolve, reject, logged: onLogged });
      });
    },
    flush,
    get mode() {
      return mode.route === "direct" ? ("direct" as const) : ("spooling" as const);
    },
    get pending() {
      return pending;
    },
    async close() {
      if (mode.closing) return;
      on({ type: "close" });
      spillQueue();
      // Everything accepted becomes durable; what InfluxDB cannot take now stays in the spool for the next start.
      await flush();
      wakeReplay?.();
      await replaying;
    },
  };
}
