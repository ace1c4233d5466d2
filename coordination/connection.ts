import { Redis } from "ioredis";

/**
 * A Redis connection for leases: a call fails at once while Redis is away
 * (a lease this node cannot renew in time is one it must stop relying on),
 * never waiting in ioredis' queue. Its errors are not logged here: the
 * change feed's log line names Redis when it is away.
 */
export async function leaseConnection(url: string, node: string, purpose: string): Promise<Redis> {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectionName: `refeed:${node}:${purpose}`,
  });
  redis.on("error", () => undefined);
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw new Error(`cannot reach Redis (REFEED_REDIS_URL) for the ${purpose} lease: ${(err as Error).message}`);
  }
  return redis;
}
