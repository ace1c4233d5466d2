/**
 * InfluxDB identifies a point by series + timestamp, so two change events of
 * the same series in the same millisecond would overwrite each other. Platform
 * events therefore get strictly increasing microsecond timestamps, and in a
 * cluster each node its own residue of them, so that two nodes stamping the
 * same series in the same millisecond still make two points.
 */
let last = 0;
// In a cluster each node stamps only times ≡ slot (mod slots), so two nodes never make one time.
let slot = 0;
let slots = 1;

/** This process's share of the microseconds (coordination/clock-slot.ts claims it); every node of a cluster must use the same `of`. */
export function useClockSlot(mine: number, of: number): void {
  slot = mine;
  slots = of;
}

export function nextMicros(now: number = Date.now()): number {
  const candidate = Math.max(now * 1000, last + 1);
  last = candidate + ((slot - (candidate % slots) + slots) % slots);
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
