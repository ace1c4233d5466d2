/**
 * Windowed statistics with bounded memory. A time window keeps at most
 * BUCKETS_PER_WINDOW + 1 buckets per key, each a fixed-size summary plus at
 * most MAX_DISTINCT value counts, whatever the event rate: a key with a 90-day
 * window costs the same memory whether it sent ten events or ten million.
 * The price is granularity: a bucket ages out whole, so the window's start is
 * accurate to 1/BUCKETS_PER_WINDOW of its length.
 */
export const BUCKETS_PER_WINDOW = 60;
export const MAX_DISTINCT = 100;
const MIN_BUCKET_MS = 1_000;

export type Scalar = number | boolean | string;

export interface Stats {
  count: number;
  /** Values of the aggregated field that were numbers. */
  numeric: number;
  sum: number;
  min: number;
  max: number;
  last: Scalar | undefined;
  lastTs: number;
  /** Value (as JSON) -> occurrences; bounded, see `overflow`. */
  values: Map<string, number>;
  /** Occurrences of values that did not fit into `values`; distinct is then a lower bound. */
  overflow: number;
}

export function emptyStats(): Stats {
  return {
    count: 0,
    numeric: 0,
    sum: 0,
    min: Infinity,
    max: -Infinity,
    last: undefined,
    lastTs: -Infinity,
    values: new Map(),
    overflow: 0,
  };
}

export function addToStats(stats: Stats, value: Scalar | undefined, ts: number): void {
  stats.count += 1;
  if (value === undefined) return;
  if (typeof value === "number") {
    stats.numeric += 1;
    stats.sum += value;
    if (value < stats.min) stats.min = value;
    if (value > stats.max) stats.max = value;
  }
  if (ts >= stats.lastTs) {
    stats.last = value;
    stats.lastTs = ts;
  }
  const key = JSON.stringify(value);
  const seen = stats.values.get(key);
  if (seen !== undefined) stats.values.set(key, seen + 1);
  else if (stats.values.size < MAX_DISTINCT) stats.values.set(key, 1);
  else stats.overflow += 1;
}

/** `withValues` false skips the value counts, which only mode, mode_share and distinct read. */
export function mergeStats(into: Stats, from: Stats, withValues = true): void {
  into.count += from.count;
  into.numeric += from.numeric;
  into.sum += from.sum;
  if (from.min < into.min) into.min = from.min;
  if (from.max > into.max) into.max = from.max;
  if (from.lastTs >= into.lastTs) {
    into.last = from.last;
    into.lastTs = from.lastTs;
  }
  into.overflow += from.overflow;
  if (!withValues) return;
  for (const [k, n] of from.values) {
    const seen = into.values.get(k);
    if (seen !== undefined) into.values.set(k, seen + n);
    else if (into.values.size < MAX_DISTINCT) into.values.set(k, n);
    else into.overflow += n;
  }
}

interface Bucket {
  start: number;
  stats: Stats;
}

/** One key's statistics over the last `durationMs`, in buckets. */
export class TimeWindow {
  private readonly buckets: Bucket[] = [];
  readonly bucketMs: number;

  constructor(readonly durationMs: number) {
    this.bucketMs = Math.max(MIN_BUCKET_MS, Math.ceil(durationMs / BUCKETS_PER_WINDOW));
  }

  add(value: Scalar | undefined, ts: number): void {
    const start = ts - (ts % this.bucketMs);
    // Events mostly arrive in time order; search from the end.
    let i = this.buckets.length - 1;
    while (i >= 0 && this.buckets[i]!.start > start) i -= 1;
    let bucket = this.buckets[i];
    if (!bucket || bucket.start !== start) {
      bucket = { start, stats: emptyStats() };
      this.buckets.splice(i + 1, 0, bucket);
    }
    addToStats(bucket.stats, value, ts);
    this.expire(Math.max(ts, this.buckets.at(-1)!.start));
  }

  /** Statistics of the window ending at `now`. */
  read(now: number, withValues = true): Stats {
    this.expire(now);
    const total = emptyStats();
    const from = now - this.durationMs;
    for (const bucket of this.buckets)
      if (bucket.start + this.bucketMs > from && bucket.start <= now) mergeStats(total, bucket.stats, withValues);
    return total;
  }

  get size(): number {
    return this.buckets.length;
  }

  private expire(now: number): void {
    const from = now - this.durationMs;
    let drop = 0;
    while (drop < this.buckets.length && this.buckets[drop]!.start + this.bucketMs <= from) drop += 1;
    if (drop > 0) this.buckets.splice(0, drop);
  }
}

/** One key's last N values. */
export class CountWindow {
  private readonly ring: Array<{ value: Scalar | undefined; ts: number }> = [];

  constructor(readonly size: number) {}

  add(value: Scalar | undefined, ts: number): void {
    this.ring.push({ value, ts });
    if (this.ring.length > this.size) this.ring.shift();
  }

  read(): Stats {
    const total = emptyStats();
    for (const entry of this.ring) addToStats(total, entry.value, entry.ts);
    return total;
  }
}
