import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Logger } from "pino";
import { openStore, type Store } from "../../store/index.ts";
import { freshDb, influxUrl } from "./influx.ts";

/** A store on the suite's influxd, in a fresh database, with a data dir of its own that `close()` removes. */
export async function openTestStore(prefix: string, log: Logger): Promise<{ store: Store; close(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `refeed-${prefix}-`));
  const store = await openStore({
    url: influxUrl(),
    db: freshDb(prefix),
    influxdPath: "influxd",
    connectTimeoutMs: 5000,
    dataDir: dir,
    log,
  });
  return {
    store,
    async close() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
