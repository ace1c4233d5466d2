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
