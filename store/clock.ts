/**
 * InfluxDB identifies a point by series + timestamp, so two change events of
 * the same series in the same millisecond would overwrite each other. Platform
 * events therefore get strictly increasing microsecond timestamps.
 */
let last = 0;

export function nextMicros(now: number = Date.now()): number {
  const candidate = now * 1000;
  last = candidate > last ? candidate : last + 1;
  return last;
}

export function microsToMs(micros: number): number {
  return Math.floor(micros / 1000);
}

/**
 * The microsecond time of a row read back from InfluxDB. The client hands back
 * nanosecond precision beside the Date; a change event's identity is built
 * from this, so the time read back at a rebuild must equal the one written.
 */
export function microsOfRow(time: Date): number {
  const nanos = (time as Date & { getNanoTime?(): string }).getNanoTime?.();
  return nanos ? Number(BigInt(nanos) / 1000n) : time.getTime() * 1000;
}
