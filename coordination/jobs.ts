import { leaseConnection } from "./connection.ts";
import type { Logger } from "pino";
import { redisLeases } from "./leases.ts";

/**
 * Who runs the jobs that must run once for the whole cluster (suggestion
 * expiry, the sweep of shared-device sessions that ran out, the rules
 * directory's sync into the catalog, the republish of retained state at
 * start): the node holding the `jobs` lease. A single node always does.
 */
export interface ClusterJobs {
  leads(): boolean;
  /** Called when this node takes the jobs over (a leader died or left); returns a function that stops it. */
  onLead(run: () => void): () => void;
  close(): Promise<void>;
}

export const singleNodeJobs: ClusterJobs = {
  leads: () => true,
  onLead: () => () => undefined,
  close: () => Promise.resolve(),
};

export interface JobsConfig {
  url: string;
  node: string;
  leaseMs?: number;
}

/** The `jobs` lease, taken when free and renewed while held; lost (for others to take) when Redis cannot renew it in time. */
export async function clusterJobs(config: JobsConfig, parentLog: Logger): Promise<ClusterJobs> {
  const log = parentLog.child({ part: "cluster", dependency: "redis" });
  const leaseMs = config.leaseMs ?? 6000;
  const redis = await leaseConnection(config.url, config.node, "jobs");
  const leases = redisLeases(redis, { prefix: "refeed:cluster", node: config.node, ttlMs: leaseMs });
  let leading = false;
  let renewedAt = 0;
  const round = async () => {
    try {
      if (leading) leading = (await leases.renew(["jobs"])).length === 0;
      else leading = (await leases.acquire(["jobs"], 1)).length === 1;
      if (leading) renewedAt = Date.now();
    } catch {
      // Unrenewed for a lease time, another node may have the jobs now.
      if (leading && Date.now() - renewedAt > leaseMs) leading = false;
    }
  };
  const onLead = new Set<() => void>();
  let was = false;
  const tick = () =>
    round().then(() => {
      if (leading !== was) {
        log.info({ node: config.node }, leading ? "this node runs the cluster's jobs" : "cluster jobs handed on");
        if (leading && was === false && started) for (const run of onLead) run();
      }
      was = leading;
    });
  let started = false;
  await tick();
  started = true;
  const timer = setInterval(() => void tick(), Math.floor(leaseMs / 3)).unref();
  return {
    leads: () => leading,
    onLead(run) {
      onLead.add(run);
      return () => onLead.delete(run);
    },
    async close() {
      clearInterval(timer);
      if (leading) await leases.release(["jobs"]).catch(() => undefined);
      leading = false;
      redis.disconnect();
    },
  };
}
