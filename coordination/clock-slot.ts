import { leaseConnection } from "./connection.ts";
import type { Logger } from "pino";
import { useClockSlot } from "../store/clock.ts";
import { redisLeases } from "./leases.ts";

/** At most this many nodes stamp times at once; each has 1000 / SLOTS distinct microseconds per millisecond. */
export const CLOCK_SLOTS = 16;

export interface ClockSlot {
  readonly slot: number;
  close(): Promise<void>;
}

/**
 * Claims one of the cluster's clock slots under a lease, so this node's
 * platform timestamps (nextMicros) can never equal another live node's. A
 * node that finds its slot taken after an outage (its lease ran out) claims
 * another and says so.
 */
export async function claimClockSlot(
  config: { url: string; node: string; leaseMs?: number },
  parentLog: Logger,
): Promise<ClockSlot> {
  const log = parentLog.child({ part: "cluster", dependency: "redis" });
  const leaseMs = config.leaseMs ?? 30_000;
  const redis = await leaseConnection(config.url, config.node, "clock");
  const leases = redisLeases(redis, { prefix: "refeed:clock", node: config.node, ttlMs: leaseMs });
  const all = Array.from({ length: CLOCK_SLOTS }, (_, i) => String(i));
  const claim = async () => {
    const [took] = await leases.acquire(all, 1);
    if (took === undefined)
      throw new Error(
        `all ${CLOCK_SLOTS} clock slots are held by live nodes: a cluster has at most ${CLOCK_SLOTS} nodes`,
      );
    return Number(took);
  };
  let slot = await claim();
  useClockSlot(slot, CLOCK_SLOTS);
  log.info({ slot }, "clock slot claimed");
  const timer = setInterval(
    () => {
      leases
        .renew([String(slot)])
        .then(async (lost) => {
          if (lost.length === 0) return;
          slot = await claim();
          useClockSlot(slot, CLOCK_SLOTS);
          log.warn({ slot }, "clock slot lost while Redis was away; another claimed");
        })
        .catch(() => undefined); // Redis away: the slot is kept; its lease outlasts short outages
    },
    Math.floor(leaseMs / 3),
  ).unref();
  return {
    get slot() {
      return slot;
    },
    async close() {
      clearInterval(timer);
      await leases.release([String(slot)]).catch(() => undefined);
      redis.disconnect();
    },
  };
}
