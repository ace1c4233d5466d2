import type { QueuedRecord, QueueStore } from "./outbox.ts";
import type { SeenStore } from "./seen.ts";

/** A store in memory: survives reconnects, not restarts (what the SDK does without a store). */
export function memoryStore<T extends string | QueuedRecord>(): { load(): T[]; save(items: readonly T[]): void } {
  let items: T[] = [];
  return {
    load: () => [...items],
    save: (next) => {
      items = [...next];
    },
  };
}

/** A store in the browser's localStorage, under `key`. */
export function localStorageStore<T extends string | QueuedRecord>(
  key: string,
): T extends string ? SeenStore : QueueStore {
  const storage = (
    globalThis as { localStorage?: { getItem(k: string): string | null; setItem(k: string, v: string): void } }
  ).localStorage;
  if (!storage) throw new Error("localStorage is not available here");
  return {
    load: () => JSON.parse(storage.getItem(key) ?? "[]") as T[],
    save: (items: readonly T[]) => storage.setItem(key, JSON.stringify(items)),
  } as unknown as T extends string ? SeenStore : QueueStore;
}
