import { randomBytes } from "node:crypto";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { ManagedRedis } from "../../cluster/redis-server.ts";
import { freshDb, influxUrl } from "./influx.ts";
import { runCli, type Running } from "./process.ts";
import { startTestRedis } from "./redis.ts";

export interface CliNode {
  id: string;
  run: Running;
  http: string;
  mqttUrl: string;
}

export interface CliCluster {
  redis: ManagedRedis;
  db: string;
  adminToken: string;
  nodes: CliNode[];
  close(): Promise<void>;
}

/**
 * Cluster nodes as operators run them: `refeed start` processes (so one can be
 * killed with SIGKILL), on one InfluxDB database and a throwaway Redis, with
 * the given rule files in a rules directory they share.
 */
export async function startCliCluster(
  n: number,
  rules: Record<string, string>,
  env: Record<string, string> = {},
): Promise<CliCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-cluster-"));
  const rulesDir = path.join(dir, "rules");
  await mkdir(rulesDir);
  for (const [name, text] of Object.entries(rules)) await writeFile(path.join(rulesDir, name), text);
  const redis = await startTestRedis();
  const db = freshDb("cluster");
  const adminToken = `rfa_${randomBytes(24).toString("base64url")}`;
  const runs = Array.from({ length: n }, (_, i) =>
    runCli(["start"], {
      REFEED_NODE_ID: `node-${i + 1}`,
      REFEED_REDIS_URL: redis.url,
      REFEED_ADMIN_TOKEN: adminToken,
      REFEED_INFLUX_URL: influxUrl(),
      REFEED_INFLUX_DB: db,
      REFEED_DATA_DIR: path.join(dir, `node-${i + 1}`),
      REFEED_RULES_DIR: rulesDir,
      REFEED_MQTT_HOST: "127.0.0.1",
      REFEED_HTTP_HOST: "127.0.0.1",
      REFEED_MQTT_PORT: "0",
      REFEED_HTTP_PORT: "0",
      ...env,
    }),
  );
  const close = async () => {
    for (const run of runs) if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGTERM");
    await Promise.all(runs.map((r) => r.exited));
    await redis.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const nodes = await Promise.all(
      runs.map(async (run, i) => {
        const line = await run.logLine((l) => l.msg === "refeed listening", `node-${i + 1} listening`, 60_000);
        return { id: `node-${i + 1}`, run, http: String(line.http), mqttUrl: String(line.mqtt) };
      }),
    );
    return { redis, db, adminToken, nodes, close };
  } catch (err) {
    await close();
    throw err;
  }
}
