import { StoreWriteError } from "../store/index.ts";

/** InfluxDB answers these for the content of a write; anything else is an outage. */
export const refusesContent = (status: number | undefined) => status === 400 || status === 413;

/**
 * Writes items, and when InfluxDB refuses the content (400: 1.x stores the good
 * points of a partial write and names no point), writes the halves again until
 * each refused item stands alone. Never a blind retry of the whole batch; the
 * rewrites are harmless because a point is identified by series and timestamp.
 * Outages (no answer, 5xx) are thrown to the caller.
 */
export async function writeIsolating<T>(
  items: readonly T[],
  write: (items: readonly T[]) => Promise<void>,
  onRejected: (item: T, message: string) => void,
): Promise<void> {
  try {
    await write(items);
  } catch (err) {
    if (!(err instanceof StoreWriteError) || !refusesContent(err.status)) throw err;
    if (items.length === 1) {
      onRejected(items[0]!, err.message);
      return;
    }
    const mid = Math.ceil(items.length / 2);
    await writeIsolating(items.slice(0, mid), write, onRejected);
    await writeIsolating(items.slice(mid), write, onRejected);
  }
}
