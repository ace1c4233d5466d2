import type { Logger } from "pino";

const WINDOW_MS = 10_000;
/** Distinct (reason, address) bursts followed at once; beyond it, new ones share one line per window. */
const MAX_BURSTS = 1000;

interface Burst {
  count: number;
  fields: Record<string, unknown>;
}

/**
 * One log line per burst of refusals from one address for one reason: the
 * first is logged at once, what follows within 10 s is counted and summed up
 * in one line at the end of the window. A flood of ten thousand sockets is a
 * few lines, not ten thousand.
 */
export class RefusalLog {
  private readonly bursts = new Map<string, Burst>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly log: Logger) {}

  refused(reason: string, address: string, fields: Record<string, unknown>, msg: string): void {
    const key = this.bursts.size < MAX_BURSTS ? `${reason}|${address}` : `${reason}|*`;
    const burst = this.bursts.get(key);
    if (burst) {
      burst.count += 1;
      return;
    }
    const line = { reason, address: key.endsWith("|*") ? "*" : address, ...fields };
    this.log.warn(line, msg);
    this.bursts.set(key, { count: 0, fields: line });
    this.timer ??= setInterval(() => this.flush(), WINDOW_MS).unref();
  }

  /** Sums up the window's refusals; a burst that had none is over. */
  flush(): void {
    for (const [key, burst] of this.bursts) {
      if (burst.count === 0) {
        this.bursts.delete(key);
        continue;
      }
      this.log.warn({ ...burst.fields, refused: burst.count, windowMs: WINDOW_MS }, "connections refused");
      burst.count = 0;
    }
    if (this.bursts.size === 0) this.stop();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
