import { open } from "node:fs/promises";

/** fsyncs a directory: a file created in it is durable only once its name is. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
