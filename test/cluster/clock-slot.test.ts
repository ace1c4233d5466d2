import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLOCK_SLOTS, claimClockSlot, type ClockSlot } from "../../coordination/clock-slot.ts";
import type { ManagedRedis } from "../../cluster/redis-server.ts";
import { nextMicros, useClockSlot } from "../../store/clock.ts";
import { startTestRedis } from "../support/redis.ts";

const log = pino({ level: "silent" });

describe("cluster timestamps: each node its own microseconds", () => {
  let redis: ManagedRedis;
  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterAll(async () => {
    useClockSlot(0, 1);
    await redis?.close();
  });

  it("stamps only times of its slot, strictly increasing, so two nodes never make one time", () => {
    const stamps = (slot: number) => {
      useClockSlot(slot, CLOCK_SLOTS);
      return Array.from({ length: 500 }, () => nextMicros(1_800_000_000_000));
    };
    const a = stamps(3);
    const b = stamps(4);
    expect(a.every((t) => t % CLOCK_SLOTS === 3)).toBe(true);
    expect(b.every((t) => t % CLOCK_SLOTS === 4)).toBe(true);
    expect(a.every((t, i) => i === 0 || t > a[i - 1]!)).toBe(true);
    expect(a.filter((t) => b.includes(t))).toEqual([]);
  });

  it("gives live nodes different slots, and refuses a node beyond the last slot by name", async () => {
    const held: ClockSlot[] = [];
    for (let i = 0; i < CLOCK_SLOTS; i++) held.push(await claimClockSlot({ url: redis.url, node: `node-${i}` }, log));
    expect(new Set(held.map((c) => c.slot)).size).toBe(CLOCK_SLOTS);
    await expect(claimClockSlot({ url: redis.url, node: "one-too-many" }, log)).rejects.toThrow(
      /all 16 clock slots are held by live nodes/,
    );
    // A node that leaves frees its slot for the next one.
    const leaving = held.pop()!;
    await leaving.close();
    const next = await claimClockSlot({ url: redis.url, node: "next" }, log);
    expect(next.slot).toBe(leaving.slot);
    for (const c of [...held, next]) await c.close();
  });
});
