import type { Redis } from "ioredis";

/**
 * Leases on Redis keys: a key holds the node that owns something until its
 * time runs out, so a node that dies loses what it owned within one lease
 * time. Every change is conditional on the holder, in one Lua script, so a
 * node whose lease ran out can never renew or release another node's.
 */
export interface Leases {
  /** Takes up to `limit` of the named leases that are free; answers those it took. */
  acquire(names: readonly string[], limit: number): Promise<string[]>;
  /** Extends the named leases this node holds; answers those it no longer holds. */
  renew(names: readonly string[]): Promise<string[]>;
  release(names: readonly string[]): Promise<void>;
  /** Who holds each lease now (undefined: nobody). */
  holders(names: readonly string[]): Promise<Array<string | undefined>>;
  /** Notes this node alive and answers the nodes alive now (sorted), for an even share. */
  members(): Promise<string[]>;
  /** Releases the named leases and leaves the members at once, so the others need not wait out a lease. */
  leave(names: readonly string[]): Promise<void>;
}

export interface LeaseConfig {
  /** Key prefix, e.g. `refeed:rules`. */
  prefix: string;
  node: string;
  ttlMs: number;
}

const RENEW = `local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) else table.insert(lost, key) end
end
return lost`;

const ACQUIRE = `local took = {}
for i, key in ipairs(KEYS) do
  if #took >= tonumber(ARGV[3]) then break end
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then table.insert(took, key) end
end
return took`;

const RELEASE = `for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0`;

export function redisLeases(redis: Redis, config: LeaseConfig): Leases {
  const keyOf = (name: string) => `${config.prefix}:lease:${name}`;
  const nameOf = (key: string) => key.slice(`${config.prefix}:lease:`.length);
  const membersKey = `${config.prefix}:members`;
  const ttl = String(config.ttlMs);
  const run = async (script: string, names: readonly string[], limit = names.length): Promise<string[]> => {
    if (names.length === 0 || limit <= 0) return [];
    const keys = (await redis.eval(script, names.length, ...names.map(keyOf), config.node, ttl, String(limit))) as
      string[] | number;
    return Array.isArray(keys) ? keys.map(nameOf) : [];
  };
  return {
    acquire: (names, limit) => run(ACQUIRE, names, limit),
    renew: (names) => run(RENEW, names),
    release: async (names) => {
      await run(RELEASE, names);
    },
    holders: async (names) =>
      names.length === 0 ? [] : (await redis.mget(...names.map(keyOf))).map((h) => h ?? undefined),
    async leave(names) {
      await run(RELEASE, names);
      await redis.zrem(membersKey, config.node);
    },
    async members() {
      const now = Date.now();
      const [, , alive] = (await redis
        .multi()
        .zadd(membersKey, now, config.node)
        .zremrangebyscore(membersKey, "-inf", now - config.ttlMs)
        .zrange(membersKey, 0, -1)
        .exec())!.map(([err, value]) => {
        if (err) throw err;
        return value;
      }) as [unknown, unknown, string[]];
      return alive.sort();
    },
  };
}
