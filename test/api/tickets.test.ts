import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTickets, redisTickets, type Tickets } from "../../api/tickets.ts";
import type { ManagedRedis } from "../../cluster/redis-server.ts";
import { startTestRedis } from "../support/redis.ts";

const grant = { principal: { role: "support" as const, name: "desk (key k-0123456789)" }, keyId: "k-0123456789" };

describe("live stream tickets", () => {
  it("open one stream each: a ticket is used up by its first redemption", async () => {
    const tickets = createTickets(30_000);
    const { ticket } = await tickets.issue(grant);
    expect(ticket).toMatch(/^rft_[A-Za-z0-9_-]{43}$/);
    expect(await tickets.redeem(ticket)).toEqual(grant);
    expect(await tickets.redeem(ticket)).toBeUndefined();
    expect(await tickets.redeem("rft_guessed")).toBeUndefined();
  });

  it("expire after their time to live", async () => {
    let now = 1_000;
    const tickets = createTickets(30_000, () => now);
    const { ticket, expiresAt } = await tickets.issue(grant);
    expect(expiresAt).toBe(31_000);
    now = 31_000;
    expect(await tickets.redeem(ticket)).toBeUndefined();
  });
});

describe("live stream tickets in cluster mode (Redis)", () => {
  let redis: ManagedRedis;
  let node1: Tickets;
  let node2: Tickets;
  beforeAll(async () => {
    redis = await startTestRedis();
    node1 = await redisTickets({ url: redis.url, node: "node-1", ttlMs: 30_000 });
    node2 = await redisTickets({ url: redis.url, node: "node-2", ttlMs: 30_000 });
  });
  afterAll(async () => {
    await node1?.close();
    await node2?.close();
    await redis?.close();
  });

  it("a ticket issued on one node opens one stream on another, once", async () => {
    const { ticket } = await node1.issue(grant);
    expect(await node2.redeem(ticket)).toEqual(grant);
    expect(await node1.redeem(ticket)).toBeUndefined();
    expect(await node2.redeem(ticket)).toBeUndefined();
  });

  it("run out in Redis after their time to live", async () => {
    const short = await redisTickets({ url: redis.url, node: "node-3", ttlMs: 50 });
    const { ticket } = await short.issue(grant);
    await waitGone(redis.url, ticket);
    expect(await node2.redeem(ticket)).toBeUndefined();
    await short.close();
  });
});

/** Waits until Redis itself has expired the ticket's key. */
async function waitGone(url: string, ticket: string): Promise<void> {
  const { Redis } = await import("ioredis");
  const { createHash } = await import("node:crypto");
  const r = new Redis(url);
  const key = `refeed:tickets:${createHash("sha256").update(ticket).digest("base64url")}`;
  const { waitFor } = await import("../support/wait.ts");
  await waitFor(async () => (await r.exists(key)) === 0, "the ticket's key expired by Redis");
  r.disconnect();
}
