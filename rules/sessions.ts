import { emptyStats, mergeStats, addToStats, type Scalar, type Stats } from "./window.ts";

/**
 * The last sessions of one key (a device or a customer), each with the
 * statistics of the sources that count per session. A session starts with an
 * `event:session_start` for the key; whatever arrives before the first one
 * belongs to no session. Memory: `capacity` sessions × the sources in use.
 */
export class SessionLog {
  private readonly sessions: Array<{ start: number; stats: Map<string, Stats> }> = [];

  constructor(private readonly capacity: number) {}

  start(ts: number): void {
    this.sessions.push({ start: ts, stats: new Map() });
    if (this.sessions.length > this.capacity) this.sessions.shift();
  }

  add(source: string, value: Scalar | undefined, ts: number): void {
    const current = this.sessions.at(-1);
    if (!current) return;
    let stats = current.stats.get(source);
    if (!stats) current.stats.set(source, (stats = emptyStats()));
    addToStats(stats, value, ts);
  }

  /** Merged statistics of `source` over the last `n` sessions, and in how many of them it occurred. */
  read(source: string, n: number, withValues = true): { stats: Stats; sessions: number; withSource: number } {
    const recent = this.sessions.slice(-n);
    const stats = emptyStats();
    let withSource = 0;
    for (const session of recent) {
      const s = session.stats.get(source);
      if (s && s.count > 0) {
        withSource += 1;
        mergeStats(stats, s, withValues);
      }
    }
    return { stats, sessions: recent.length, withSource };
  }

  /** Sessions that started after `ts`. */
  since(ts: number): number {
    let n = 0;
    for (let i = this.sessions.length - 1; i >= 0 && this.sessions[i]!.start > ts; i -= 1) n += 1;
    return n;
  }

  get count(): number {
    return this.sessions.length;
  }
}
