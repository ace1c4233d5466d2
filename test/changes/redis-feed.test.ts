import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ManagedRedis } from "../../cluster/redis-server.ts";
import { redisChangeFeed, type RedisChangeFeed } from "../../changes/redis.ts";
import { registryChanges, type RegistryEvent } from "../../registry/view.ts";
import { startTestRedis } from "../support/redis.ts";
import { polling, waitFor } from "../support/wait.ts";

const log = pino({ level: "silent" });
const T = 1_700_000_000_000_000;
const revoked = (device: string, micros = T): RegistryEvent => ({ op: "revoked", device, micros });

describe("the change feed on a Redis stream (a real redis-server)", () => {
  let redis: ManagedRedis;
  let stream = "";
  let n = 0;
  const open: RedisChangeFeed[] = [];
  const feed = async (node: string) => {
    const f = await redisChangeFeed({ url: redis.url, node, stream }, log);
    open.push(f);
    return f;
  };
  const devicesSeenBy = (f: RedisChangeFeed) => {
    const seen: string[] = [];
    f.subscribe(registryChanges, (e) => seen.push(e.device));
    return seen;
  };
  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterEach(async () => {
    for (const f of open.splice(0)) await f.close();
    stream = `test:changes:${++n}`;
  });
  afterAll(async () => redis?.close());
  stream = "test:changes:0";

  it("delivers a change to every node, and publish answers once the other live nodes have applied it", async () => {
    const [a, b, c] = [await feed("a"), await feed("b"), await feed("c")];
    const [seenA, seenB, seenC] = [devicesSeenBy(a), devicesSeenBy(b), devicesSeenBy(c)];
    await a.publish(registryChanges, revoked("tv-1"));
    // Read-your-writes across nodes: no wait here; the answer came after b and c applied it.
    expect([seenA, seenB, seenC]).toEqual([["tv-1"], ["tv-1"], ["tv-1"]]);
    await c.publish(registryChanges, revoked("tv-2"));
    expect([seenA, seenB, seenC]).toEqual([
      ["tv-1", "tv-2"],
      ["tv-1", "tv-2"],
      ["tv-1", "tv-2"],
    ]);
  });

  it("reads everything appended after the feed opened, even before a view subscribed (the rebuild gap)", async () => {
    const a = await feed("a");
    const b = await feed("b");
    // b has noted its position but no view follows it yet (as while views rebuild from InfluxDB).
    await a.publish(registryChanges, revoked("during-rebuild"));
    const seenB = devicesSeenBy(b);
    await a.publish(registryChanges, revoked("after"));
    await expect.poll(() => seenB, polling).toContain("after");
    // The entry from the gap was read before a subscriber existed; the view rebuilds it from InfluxDB.
    // What matters is that nothing appended after subscribe is missed, in order:
    expect(seenB.at(-1)).toBe("after");
  });

  it("holds changes while Redis is down, answers the call anyway, says so, and appends them in order when it is back", async () => {
    const a = await feed("a");
    const b = await feed("b");
    const seenB = devicesSeenBy(b);
    const seenA = devicesSeenBy(a);
    await redis.stop();
    await waitFor(() => a.link() === "disconnected", "node a to notice Redis is gone");
    await a.publish(registryChanges, revoked("held-1"));
    await a.publish(registryChanges, revoked("held-2"));
    expect(seenA).toEqual(["held-1", "held-2"]);
    expect(a.unsent()).toBe(2);
    await redis.start();
    await expect.poll(() => seenB, { ...polling, timeout: 20_000 }).toEqual(["held-1", "held-2"]);
    expect(a.unsent()).toBe(0);
    expect(a.link()).toBe("connected");
  });

  it("skips an entry that is not a Refeed change and one its topic's schema refuses, and goes on", async () => {
    const b = await feed("b");
    const seenB = devicesSeenBy(b);
    const raw = new Redis(redis.url);
    await raw.xadd(stream, "*", "garbage", "1");
    await raw.xadd(stream, "*", "node", "x", "topic", "registry", "event", "{not json");
    await raw.xadd(stream, "*", "node", "x", "topic", "registry", "event", JSON.stringify({ op: "revoked" }));
    await raw.xadd(stream, "*", "node", "x", "topic", "registry", "event", JSON.stringify(revoked("good")));
    raw.disconnect();
    await expect.poll(() => seenB, polling).toEqual(["good"]);
  });

  it("asks views to resync from InfluxDB when the stream was trimmed past the node's position while it was away", async () => {
    const a = await feed("a");
    const b = await feed("b");
    const seenB = devicesSeenBy(b);
    let resyncs = 0;
    b.onResync?.(() => resyncs++);
    await a.publish(registryChanges, revoked("before"));
    expect(seenB).toEqual(["before"]);
    const raw = new Redis(redis.url);
    const clients = (await raw.client("LIST")) as string;
    const readerId = /id=(\d+) .*name=refeed:b:feed-reader/.exec(clients)?.[1];
    expect(readerId).toBeDefined();
    // In one transaction: entries b never reads, a trim that removes them, and b's reader cut off.
    const multi = raw.multi();
    for (let i = 0; i < 5; i++)
      multi.xadd(stream, "*", "node", "x", "topic", "registry", "event", JSON.stringify(revoked(`lost-${i}`)));
    multi.xtrim(stream, "MAXLEN", 1);
    multi.client("KILL", "ID", readerId!);
    await multi.exec();
    raw.disconnect();
    await expect.poll(() => resyncs, { ...polling, timeout: 20_000 }).toBe(1);
    // What the stream still holds is delivered as well.
    await expect.poll(() => seenB, polling).toContain("lost-4");
    expect(seenB).not.toContain("lost-0");
  });
});
