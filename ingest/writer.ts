import type { Logger } from "pino";
import type { Point, Store, StoreWriteError } from "../store/index.ts";
import { writeIsolating } from "./isolate.ts";

export interface BatchWriterOptions {
  store: Store;
  log: Logger;
  batchSize: number;
  flushMs: number;
  /** Write requests under way at once; more parallelism than this only queues inside InfluxDB. */
  maxInFlight?: number;
  /** A point InfluxDB refused for good (HTTP 400), with its message. */
  onRejected(point: Point, message: string): void;
  /** How long close() keeps retrying while InfluxDB is unreachable before it gives up (default 2 s). */
  closeTimeoutMs?: number;
}

export interface BatchWriter {
  /**
   * Resolves once the points are stored in InfluxDB (or recorded as rejected);
   * rejects only when close() gave up on an unreachable InfluxDB.
   */
  write(points: readonly Point[]): Promise<void>;
  /** Writes everything buffered now and waits for it. */
  flush(): Promise<void>;
  /** Points accepted but not yet stored. */
  readonly pending: number;
  close(): Promise<void>;
}

interface Batch {
  points: Point[];
  waiters: Array<{ resolve(): void; reject(err: Error): void }>;
}

/**
 * Collects points into batches that are cut at a size or an age, and keeps a
 * few write requests in flight. While InfluxDB is unreachable or failing (5xx)
 * a batch is retried with capped backoff, in order; callers that await write()
 * are held back meanwhile, which is the backpressure the broker relies on.
 * (Ingest's device data goes through durable-writer.ts, which spools instead.)
 * At shutdown the retries are bounded, so an outage cannot hang the platform's
 * exit; what is given up is logged as an error.
 */
export function createBatchWriter(options: BatchWriterOptions): BatchWriter {
  const { store, log, batchSize, flushMs } = options;
  const maxInFlight = options.maxInFlight ?? 4;
  let current: Batch = { points: [], waiters: [] };
  let timer: NodeJS.Timeout | undefined;
  const queue: Batch[] = [];
  let inFlight = 0;
  let pending = 0;
  let closed = false;
  /** Set by close(): past this time an outage is not retried any more. */
  let giveUpAt: number | undefined;
  const idle: Array<() => void> = [];

  const cut = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (current.points.length === 0) return;
    queue.push(current);
    current = { points: [], waiters: [] };
    pump();
  };

  const pump = () => {
    while (inFlight < maxInFlight && queue.length > 0) {
      const batch = queue.shift()!;
      inFlight += 1;
      void send(batch).then(
        () => settle(batch),
        (err: Error) => settle(batch, err),
      );
    }
  };

  const settle = (batch: Batch, err?: Error) => {
    inFlight -= 1;
    pending -= batch.points.length;
    for (const waiter of batch.waiters) {
      if (err) waiter.reject(err);
      else waiter.resolve();
    }
    pump();
    if (inFlight === 0 && queue.length === 0 && current.points.length === 0) idle.splice(0).forEach((f) => f());
  };

  const send = async (batch: Batch): Promise<void> => {
    for (let attempt = 0; ; attempt += 1) {
      try {
        await writeSplitting(batch.points);
        if (attempt > 0)
          log.info(
            { part: "writer", points: batch.points.length, attempts: attempt + 1 },
            "InfluxDB write succeeded after retry",
          );
        return;
      } catch (err) {
        const e = err as StoreWriteError;
        if (giveUpAt !== undefined && Date.now() >= giveUpAt) {
          log.error(
            { part: "writer", points: batch.points.length, status: e.status, err: e.message },
            "InfluxDB unreachable at shutdown; points not stored",
          );
          throw err;
        }
        const delay = Math.min(
          5000,
          100 * 2 ** Math.min(attempt, 6),
          giveUpAt === undefined ? Infinity : Math.max(0, giveUpAt - Date.now()),
        );
        log.warn(
          { part: "writer", points: batch.points.length, status: e.status, err: e.message, retryInMs: delay },
          "InfluxDB write failed; retrying",
        );
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  };

  // InfluxDB 1.x answers 400 for a batch with bad points after storing the good ones: isolate them.
  const writeSplitting = (points: Point[]) =>
    writeIsolating(
      points,
      (part) => store.write(part),
      (point, reason) => options.onRejected(point, reason),
    );

  return {
    write(points) {
      if (closed) return Promise.reject(new Error("writer is closed"));
      if (points.length === 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        current.points.push(...points);
        current.waiters.push({ resolve, reject });
        pending += points.length;
        if (current.points.length >= batchSize) cut();
        else timer ??= setTimeout(cut, flushMs);
      });
    },
    flush() {
      cut();
      if (inFlight === 0 && queue.length === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idle.push(resolve));
    },
    get pending() {
      return pending;
    },
    async close() {
      giveUpAt = Date.now() + (options.closeTimeoutMs ?? 2000);
      await this.flush();
      closed = true;
    },
  };
}
