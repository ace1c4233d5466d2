import type { Redis } from "ioredis";
import { z } from "zod";
import { leaseConnection } from "../coordination/connection.ts";
import type { Measured, SharedFleet } from "./view.ts";

export interface SharedFleetConfig {
  url: string;
  node: string;
  windowMs: number;
  /** Whether this node holds the jobs lease now. */
  leads: () => boolean;
}

/** Readers that fell this far behind the log read the whole hash again. */
const LOG_LENGTH = 2000;
const PULL_COUNT = 1000;

const logEntry = z.object({
  full: z.enum(["0", "1"]),
  devices: z.string(),
  removed: z.string(),
});

type StreamEntry = [id: string, fields: string[]];

const idParts = (id: string) => id.split("-").map(Number) as [number, number];
const after = (a: string, b: string) => {
  const [am, as] = idParts(a);
  const [bm, bs] = idParts(b);
  return am > bm || (am === bm && as > bs);
};
const fieldsOf = (fields: string[]) => {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
};
const list = (s: string) => (s === "" ? [] : s.split(","));

/**
 * The fleet view's share in Redis for one window: a hash of each device's
 * latest measurement (`...:rows`), a capped stream saying which devices each
 * publish touched (`...:log`), so a reader fetches only those, and a set of
 * devices any node heard news of for the leader to measure (`refeed:health:news`).
 * Calls fail at once while Redis is away; the view then answers from what it holds.
 */
export async function redisSharedFleet<A>(config: SharedFleetConfig, value: z.ZodType<A>): Promise<SharedFleet<A>> {
  const redis: Redis = await leaseConnection(config.url, config.node, "health view");
  const rowsKey = `refeed:health:${config.windowMs}:rows`;
  const logKey = `refeed:health:${config.windowMs}:log`;
  const newsKey = "refeed:health:news";
  const measured = z.object({ value, at: z.number() });

  const parse = (raw: string | null): Measured<A> | undefined => {
    if (raw === null) return undefined;
    const parsed = measured.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  };
  const encode = (entries: Map<string, Measured<A>>) => {
    const flat: string[] = [];
    for (const [id, m] of entries) flat.push(id, JSON.stringify(m));
    return flat;
  };

  const fromScratch = async () => {
    const [[, rows], [, last]] = (await redis
      .multi()
      .hgetall(rowsKey)
      .xrevrange(logKey, "+", "-", "COUNT", 1)
      .exec()) as [[null, Record<string, string>], [null, StreamEntry[]]];
    const entries = new Map<string, Measured<A>>();
    for (const [id, raw] of Object.entries(rows)) {
      const m = parse(raw);
      if (m) entries.set(id, m);
    }
    // Undefined while nothing was ever published: the reader asks again from scratch next time.
    return { position: last[0]?.[0], full: true, entries, removed: [] };
  };

  return {
    leads: config.leads,

    async announce(devices) {
      if (devices.length > 0) await redis.sadd(newsKey, ...devices);
    },

    async takeNews() {
      const [[, devices]] = (await redis.multi().smembers(newsKey).del(newsKey).exec()) as [[null, string[]]];
      return devices;
    },

    async publish({ full, entries, removed }) {
      const tx = redis.multi();
      if (full) tx.del(rowsKey);
      if (entries.size > 0) tx.hset(rowsKey, ...encode(entries));
      if (removed.length > 0) tx.hdel(rowsKey, ...removed);
      tx.xadd(
        logKey,
        "MAXLEN",
        "~",
        LOG_LENGTH,
        "*",
        "full",
        full ? "1" : "0",
        "devices",
        full ? "" : [...entries.keys()].join(","),
        "removed",
        removed.join(","),
      );
      const results = await tx.exec();
      const failed = results?.find(([err]) => err);
      if (failed) throw failed[0]!;
    },

    async pull(position) {
      if (position === undefined) return fromScratch();
      const [[, oldest], [, news]] = (await redis
        .multi()
        .xrange(logKey, "-", "+", "COUNT", 1)
        .xrange(logKey, `(${position}`, "+", "COUNT", PULL_COUNT)
        .exec()) as [[null, StreamEntry[]], [null, StreamEntry[]]];
      // Entries after our position were trimmed away: what they said is only in the hash now.
      const first = oldest[0]?.[0];
      if (first !== undefined && after(first, position)) return fromScratch();
      const touched = new Set<string>();
      const removed = new Set<string>();
      let last = position;
      for (const [id, fields] of news) {
        const entry = logEntry.safeParse(fieldsOf(fields));
        if (!entry.success || entry.data.full === "1") return fromScratch();
        for (const d of list(entry.data.devices)) touched.add(d);
        for (const d of list(entry.data.removed)) removed.add(d);
        last = id;
      }
      const entries = new Map<string, Measured<A>>();
      const ids = [...touched].filter((d) => !removed.has(d));
      if (ids.length > 0) {
        const raws = await redis.hmget(rowsKey, ...ids);
        ids.forEach((id, i) => {
          const m = parse(raws[i] ?? null);
          if (m) entries.set(id, m);
        });
      }
      return { position: last, full: false, entries, removed: [...removed] };
    },

    async close() {
      redis.disconnect();
      return Promise.resolve();
    },
  };
}
