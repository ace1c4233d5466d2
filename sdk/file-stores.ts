import { mkdir, open, readFile, rename } from "node:fs/promises";
import path from "node:path";
import type { QueuedRecord, QueueStore } from "./outbox.ts";
import type { SeenStore } from "./seen.ts";

/** Writes the whole file anew and renames it into place, fsync'd: a crash leaves the old one or the new one. */
async function replace(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  const handle = await open(tmp, "w", 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
}

async function readJson<T>(file: string): Promise<T[]> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as T[];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

/** The ids of handled actions in a JSON file, so a restarted device does not handle an action twice. */
export function fileSeenStore(file: string): SeenStore {
  return { load: () => readJson<string>(file), save: (ids) => replace(file, JSON.stringify(ids)) };
}

/** The offline queue in a JSON file, so records made offline survive a restart of the device. */
export function fileQueueStore(file: string): QueueStore {
  return {
    load: () => readJson<QueuedRecord>(file),
    save: (records) => replace(file, JSON.stringify(records)),
  };
}
