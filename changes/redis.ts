import { Redis } from "ioredis";
import type { Logger } from "pino";
import { z } from "zod";
import type { ChangeFeed, Origin, Topic } from "./index.ts";
import { localChangeFeed } from "./local.ts";

export interface RedisFeedConfig {
  url: string;
  /** This node's id; entries it appended are already applied here and are skipped when read back. */
  node: string;
  /** The stream every node appends to and reads from. */
  stream?: string;
  /** Entries the stream keeps (approximately); a node that falls further behind resyncs from InfluxDB. */
  maxLen?: number;
  /** How long `publish` waits for the other live nodes to apply a change before it answers anyway. */
  confirmMs?: number;
}

export type FeedLink = "connected" | "disconnected";

export interface RedisChangeFeed extends ChangeFeed {
  /** Whether this node can reach Redis now (for /healthz). */
  link(): FeedLink;
  /** Changes made here that Redis has not taken yet; they are appended when it is back. */
  unsent(): number;
}

/** A node that has not beaten (every second) for this long is taken for gone. */
const ALIVE_MS = 3000;

// What crosses nodes: the topic names the schema that parses the event on arrival.
const entrySchema = z.object({ node: z.string(), topic: z.string(), event: z.string() });

const fieldsOf = (flat: string[]): Record<string, string> => {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
};

/**
 * The change feed across nodes on a Redis stream. `publish` applies the
 * change to this node's views first (so the call that made it answers from
 * them), then appends it; a reader follows the stream from the position it
 * noted when the feed opened, which is before any view rebuilds from
 * InfluxDB, so no change falls between the rebuild and the feed. Changes are
 * written to InfluxDB before they are published, so an append Redis refuses
 * is held and appended, in order, when Redis is back, and a node that finds
 * the stream trimmed past its position asks its views to resync from
 * InfluxDB.
 */
export async function redisChangeFeed(config: RedisFeedConfig, log: Logger): Promise<RedisChangeFeed> {
  const stream = config.stream ?? "refeed:changes";
  // Each node notes what it has applied and that it is alive, so a publisher can wait for the others.
  const appliedKey = `${stream}:applied`;
  const aliveKey = `${stream}:nodes`;
  const confirmMs = config.confirmMs ?? 1000;
  const maxLen = config.maxLen ?? 1_000_000;
  const flog = log.child({ part: "changes", dependency: "redis" });
  // Appends fail at once while Redis is away (the change is held), instead of waiting in ioredis' queue.
  const writer = new Redis(config.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectionName: `refeed:${config.node}:feed-writer`,
  });
  // XREAD BLOCK holds its connection, so the reader has its own; its read is sent again after a reconnect.
  const reader = new Redis(config.url, {
    lazyConnect: true,
    maxRetriesPerRequest: null,
    connectionName: `refeed:${config.node}:feed-reader`,
  });
  const local = localChangeFeed(log);
  const topics = new Map<string, Topic<unknown>>();
  const resyncs = new Set<() => unknown>();
  let link: FeedLink = "disconnected";
  let closing = false;
  const held: Array<{ topic: string; event: string }> = [];
  let flushing: Promise<void> | undefined;

  const lost = (err: Error) => {
    if (link === "connected" && !closing)
      flog.warn(
        { err: err.message, unsent: held.length },
        "redis unreachable: changes are held and views follow later",
      );
    link = "disconnected";
  };
  writer.on("error", lost);
  reader.on("error", lost);
  writer.on("ready", () => {
    if (link === "disconnected" && !closing) flog.info({ unsent: held.length }, "redis reachable: change feed resumes");
    link = "connected";
    void flush();
  });

  const append = (entry: { topic: string; event: string }) =>
    writer.xadd(
      stream,
      "MAXLEN",
      "~",
      String(maxLen),
      "*",
      "node",
      config.node,
      "topic",
      entry.topic,
      "event",
      entry.event,
    );

  let lastAppended: string | undefined;
  // Held changes go out oldest first, and a new change waits behind them, so every node sees one node's changes in order.
  const drain = async () => {
    try {
      while (held.length > 0 && !closing) {
        lastAppended = (await append(held[0]!)) ?? lastAppended;
        held.shift();
        link = "connected";
      }
    } catch (err) {
      lost(err as Error);
    }
  };
  const flush = (): Promise<void> => {
    if (!flushing) {
      const run = drain();
      flushing = run;
      void run.then(() => {
        if (flushing === run) flushing = undefined;
      });
    }
    return flushing;
  };

  try {
    await Promise.all([writer.connect(), reader.connect()]);
  } catch (err) {
    writer.disconnect();
    reader.disconnect();
    throw new Error(`cannot reach Redis (REFEED_REDIS_URL) for the change feed: ${(err as Error).message}`);
  }
  link = "connected";
  // The position before any view rebuilds: everything appended after it is read.
  const newest = (await reader.xrevrange(stream, "+", "-", "COUNT", 1))[0];
  let position = newest ? newest[0] : "0-0";

  const deliver = (id: string, flat: string[]) => {
    const entry = entrySchema.safeParse(fieldsOf(flat));
    if (!entry.success) return flog.warn({ id }, "a change feed entry is not a Refeed change; skipped");
    const { node, topic: name, event } = entry.data;
    if (node === config.node) return;
    const topic = topics.get(name);
    if (!topic) return;
    let value: unknown;
    try {
      value = JSON.parse(event);
    } catch {
      return flog.warn({ id, topic: name }, "a change feed entry is not JSON; skipped");
    }
    // The local feed parses with the topic's schema and applies to every subscriber here.
    local
      .deliver(topic, value, "elsewhere")
      .catch((err: Error) =>
        flog.warn({ id, topic: name, err: err.message }, "a change from another node was refused"),
      );
  };

  // After a reconnect the stream may have been trimmed past our position while we were away.
  let recheck = false;
  reader.on("ready", () => (recheck = true));
  const trimmedPast = async (from: string) => {
    const first = (await reader.xrange(stream, "-", "+", "COUNT", 1))[0];
    return first !== undefined && from !== "0-0" && compareIds(first[0], from) > 0;
  };

  const readLoop = async () => {
    while (!closing) {
      try {
        const from = position;
        const answer = await reader.xread("COUNT", 500, "BLOCK", 2000, "STREAMS", stream, position);
        if (recheck) {
          recheck = false;
          // Entries we never read are gone from the stream, not from InfluxDB: the views read them there.
          if (await trimmedPast(from)) {
            flog.warn({ position: from }, "change feed trimmed past this node's position: views resync from InfluxDB");
            for (const resync of resyncs)
              Promise.resolve()
                .then(resync)
                .catch((err: Error) => flog.error({ err: err.message }, "a view could not resync from InfluxDB"));
          }
        }
        for (const [, entries] of answer ?? []) {
          for (const [id, flat] of entries) {
            deliver(id, flat);
            position = id;
          }
        }
        if (answer) await reader.hset(appliedKey, config.node, position);
      } catch (err) {
        if (closing) return;
        lost(err as Error);
        await new Promise<void>((resolve) => {
          if (reader.status !== "ready") return reader.once("ready", () => resolve());
          setTimeout(resolve, 1000).unref();
        });
      }
    }
  };
  recheck = false;
  const reading = readLoop();

  const beat = async () => {
    try {
      await writer.zadd(aliveKey, Date.now(), config.node);
      // Held changes go out even when no reconnect announced Redis back (the reader's error may have been the only one).
      if (held.length > 0) await flush();
    } catch {
      // the feed's own error handler has said Redis is away
    }
  };
  await beat();
  const beating = setInterval(() => void beat(), 1000);
  beating.unref();

  // Publishers waiting for the other live nodes to apply their change; one poll serves them all.
  const waiting: Array<{ id: string; until: number; done: () => void }> = [];
  let polling = false;
  const othersApplied = async (): Promise<string | undefined> => {
    const alive = await writer.zrangebyscore(aliveKey, Date.now() - ALIVE_MS, "+inf");
    const others = alive.filter((n) => n !== config.node);
    if (others.length === 0) return undefined;
    const applied = await writer.hmget(appliedKey, ...others);
    let least: string | undefined = "~";
    for (const id of applied) {
      if (!id) return "0-0";
      if (least === "~" || compareIds(id, least) < 0) least = id;
    }
    return least;
  };
  const poll = async () => {
    if (polling) return;
    polling = true;
    try {
      while (waiting.length > 0 && !closing) {
        let least: string | undefined;
        try {
          least = await othersApplied();
        } catch {
          least = undefined;
          waiting.splice(0).forEach((w) => w.done());
        }
        const now = Date.now();
        for (let i = waiting.length - 1; i >= 0; i--) {
          const w = waiting[i]!;
          if (least === undefined || compareIds(least, w.id) >= 0 || now >= w.until) {
            waiting.splice(i, 1);
            w.done();
          }
        }
        if (waiting.length > 0) await new Promise((resolve) => setTimeout(resolve, 3));
      }
    } finally {
      polling = false;
      waiting.splice(0).forEach((w) => w.done());
    }
  };
  const confirmed = (id: string) =>
    new Promise<void>((done) => {
      waiting.push({ id, until: Date.now() + confirmMs, done });
      void poll();
    });

  return {
    async publish<E>(topic: Topic<E>, event: E) {
      topics.set(topic.name, topic);
      await local.publish(topic, event);
      held.push({ topic: topic.name, event: JSON.stringify(event) });
      // (A drain that was finishing when this change was held may have missed it: go again.)
      while (held.length > 0 && link === "connected" && !closing) await flush();
      // Read-your-writes across nodes: the answer to the call that made the change waits (up to confirmMs)
      // until every other live node has applied it, so the next call on any node sees it.
      if (held.length === 0 && lastAppended) await confirmed(lastAppended);
    },
    subscribe<E>(topic: Topic<E>, apply: (event: E, origin: Origin) => void) {
      topics.set(topic.name, topic);
      return local.subscribe(topic, apply);
    },
    onResync(resync) {
      resyncs.add(resync);
      return () => resyncs.delete(resync);
    },
    async peers() {
      const alive = await writer.zrangebyscore(aliveKey, Date.now() - ALIVE_MS, "+inf");
      return alive.filter((n) => n !== config.node);
    },
    link: () => link,
    unsent: () => held.length,
    async close() {
      await flush().catch(() => undefined);
      closing = true;
      clearInterval(beating);
      await writer.zrem(aliveKey, config.node).catch(() => undefined);
      if (held.length > 0)
        flog.warn(
          { unsent: held.length },
          "closing with changes Redis did not take; other nodes read them from InfluxDB at their next rebuild",
        );
      reader.disconnect();
      writer.disconnect();
      await reading;
      await local.close();
    },
  };
}

/** Orders two stream ids ("ms-seq"). */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split("-").map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split("-").map(BigInt) as [bigint, bigint];
  return am === bm ? (as === bs ? 0 : as < bs ? -1 : 1) : am < bm ? -1 : 1;
}
