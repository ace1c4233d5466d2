import type { Config } from "../../config/schema.ts";
import type { ManagedRedis } from "../../cluster/redis-server.ts";
import { freshDb, influxUrl } from "./influx.ts";
import { api, startTestPlatform, type TestPlatform, type TestPlatformOptions } from "./platform.ts";
import { startTestRedis } from "./redis.ts";
import { waitFor } from "./wait.ts";

export interface TestCluster {
  redis: ManagedRedis;
  nodes: TestPlatform[];
  node(n: number): TestPlatform;
  /** Waits until every rule partition has an owner and nothing routed waits to be evaluated. */
  rulesCaughtUp(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface PartitionView {
  partition: number;
  owner: string | null;
  pending: number;
  lag: number;
}

/** `n` in-process nodes (node-1..) on one InfluxDB database and a throwaway Redis, each with its own data dir and ports. */
export async function startTestCluster(
  n: number,
  overrides: Partial<Config> = {},
  options: TestPlatformOptions = {},
): Promise<TestCluster> {
  const redis = await startTestRedis();
  const db = freshDb("cluster");
  const nodes: TestPlatform[] = [];
  try {
    for (let i = 1; i <= n; i++)
      nodes.push(
        await startTestPlatform(
          {
            influx: { url: influxUrl(), db, influxdPath: "influxd", connectTimeoutMs: 30_000 },
            redis: { url: redis.url },
            nodeId: `node-${i}`,
            ...overrides,
          },
          options,
        ),
      );
  } catch (err) {
    for (const t of nodes) await t.close();
    await redis.close();
    throw err;
  }
  return {
    redis,
    nodes,
    node: (i) => nodes[i - 1]!,
    rulesCaughtUp: (timeoutMs = 15_000) => partitionsCaughtUp(nodes[0]!, timeoutMs),
    async close() {
      for (const t of nodes) await t.close();
      await redis.close();
    },
  };
}

export async function partitions(t: TestPlatform): Promise<PartitionView[]> {
  const res = await api(t, "GET", "/api/rules/partitions");
  if (res.status !== 200) throw new Error(`GET /api/rules/partitions: ${res.status}`);
  return res.body as unknown as PartitionView[];
}

/** Every partition owned, none with entries to read or actions to store. */
export async function partitionsCaughtUp(t: TestPlatform, timeoutMs = 15_000): Promise<void> {
  await waitFor(
    async () => (await partitions(t)).every((p) => p.owner !== null && p.pending === 0 && p.lag === 0),
    "every rule partition owned and caught up",
    timeoutMs,
  );
}
