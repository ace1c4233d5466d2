import type { Line } from "./lineprotocol.ts";

export interface Waiter {
  resolve(): void;
  reject(err: Error): void;
  logged: (() => void) | undefined;
}

export interface Batch {
  lines: Line[];
  waiters: Waiter[];
}

export interface Batcher {
  /** Adds lines to the current batch, cutting it when it is full, when it is old, or when the writer is idle. */
  add(lines: readonly Line[], waiter: Waiter): void;
  /** Hands the current batch (if it has lines) to the router now. */
  cut(): void;
  /** Cuts after the I/O callbacks of this turn of the event loop, if the writer is idle then. */
  cutSoon(): void;
  /** Lines wait in the current batch. */
  readonly waiting: boolean;
}

/**
 * Collects lines into batches: a batch is cut when it reaches the size, when
 * it reaches the age, or as soon as nothing is being made durable (a quiet
 * system answers in one write's time, a busy one batches more while the last
 * write works: group commit). Where a cut batch goes is the router's business.
 */
export function createBatcher(options: {
  batchSize: number;
  flushMs: number;
  /** Nothing of the writer's is being made durable now. */
  idle: () => boolean;
  /** Look again soon also when not idle (a commit log's fdatasync may just have resolved its callers). */
  eager: boolean;
  route: (batch: Batch) => void;
}): Batcher {
  const { batchSize, flushMs, idle, eager, route } = options;
  let current: Batch = { lines: [], waiters: [] };
  let timer: NodeJS.Timeout | undefined;
  let soon: NodeJS.Immediate | undefined;

  const cut = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (current.lines.length === 0) return;
    const batch = current;
    current = { lines: [], waiters: [] };
    route(batch);
  };

  // After the I/O callbacks of this turn of the event loop, so a burst of publishes read together is one batch.
  const cutSoon = () => {
    soon ??= setImmediate(() => {
      soon = undefined;
      if (idle()) cut();
    });
  };

  return {
    add(lines, waiter) {
      for (const line of lines) current.lines.push(line);
      current.waiters.push(waiter);
      if (current.lines.length >= batchSize) cut();
      else {
        timer ??= setTimeout(cut, flushMs);
        if (eager || idle()) cutSoon();
      }
    },
    cut,
    cutSoon,
    get waiting() {
      return current.lines.length > 0;
    },
  };
}
