import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { startRedisServer, type ManagedRedis } from "../../cluster/redis-server.ts";

/** A throwaway redis-server on a free loopback port with its own directory; close() removes both. */
export async function startTestRedis(): Promise<ManagedRedis> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-test-redis-"));
  const redis = await startRedisServer({ dataDir: dir, log: pino({ level: "silent" }) });
  return {
    ...redis,
    async close() {
      await redis.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
