import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { FleetRow } from "../../health/fleet.ts";
import { redisSharedFleet } from "../../health/shared.ts";
import { createFleetView, type MeasureDevices, type RenderRows } from "../../health/view.ts";
import type { ManagedRedis } from "../../cluster/redis-server.ts";
import { startTestRedis } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";

/** What the fake fleet "measures" per device: a score, and whether it is online (read at render time). */
const row = (device: string, score: number, online: boolean): FleetRow => ({
  device,
  kind: null,
  subject: null,
  revoked: false,
  online,
  lastSeen: null,
  score,
  status: score >= 80 ? "good" : score >= 50 ? "fair" : "poor",
  components: { reliability: score, performance: null, sentiment: null, participation: null, connectivity: null },
  feedback: { negative: 0, latestNegative: null },
});

/** A fleet whose scores the test sets, and a record of what each view asked to measure. */
function fakeFleet(initial: Record<string, number>) {
  const scores = new Map(Object.entries(initial));
  const online = new Set<string>();
  const calls: Array<string[] | "all"> = [];
  const measure: MeasureDevices<number> = (_windowMs, devices) => {
    calls.push(devices ? [...devices].sort() : "all");
    const ids = devices ?? [...scores.keys()];
    return Promise.resolve({
      from: 0,
      to: 1,
      values: new Map(ids.filter((id) => scores.has(id)).map((id) => [id, scores.get(id)!])),
    });
  };
  const render: RenderRows<number> = (values) => ({
    from: 0,
    to: 1,
    values: new Map([...values].map(([id, s]) => [id, row(id, s, online.has(id))])),
  });
  return { scores, online, calls, measure, render, registry: () => [...scores.keys()] };
}

const options = {
  windowMs: 86_400_000,
  refreshMs: 10,
  fullRefreshMs: 60_000,
  idleMs: 60_000,
  settleMs: 0,
  log: pino({ level: "silent" }),
};
const order = async (view: { snapshot(): Promise<{ rows: FleetRow[] }> }) =>
  (await view.snapshot()).rows.map((r) => `${r.device}:${r.score}`).join();

describe("the fleet health view", () => {
  it("measures the whole fleet once, then only the devices with news", async () => {
    const fleet = fakeFleet({ a: 90, b: 70, c: 40 });
    const view = createFleetView(fleet.measure, fleet.render, fleet.registry, options);
    try {
      const first = await view.snapshot();
      expect(first.rows.map((r) => r.device)).toEqual(["c", "b", "a"]);
      expect(fleet.calls).toEqual(["all"]);

      fleet.scores.set("a", 10);
      view.touch("a");
      const updated = await view.snapshot();
      expect(updated.rows[0]!.device).toBe("a");
      expect(updated.digest).not.toBe(first.digest);
      expect(fleet.calls).toContainEqual(["a"]);
      expect(fleet.calls.filter((c) => c === "all")).toHaveLength(1);

      // A device provisioned since is in the very next answer; one gone from the registry leaves it.
      fleet.scores.set("d", 55);
      fleet.scores.delete("b");
      expect(await order(view)).toBe("a:10,c:40,d:55");
    } finally {
      view.close();
    }
  });

  it("renders every answer now: what a row reads at render time (presence) is never stale", async () => {
    const fleet = fakeFleet({ a: 90 });
    const view = createFleetView(fleet.measure, fleet.render, fleet.registry, { ...options, refreshMs: 60_000 });
    try {
      expect((await view.snapshot()).rows[0]!.online).toBe(false);
      fleet.online.add("a");
      view.touch("a");
      expect((await view.snapshot()).rows[0]!.online).toBe(true);
    } finally {
      view.close();
    }
  });

  it("measures news again once it has settled, after answering a request with it at once", async () => {
    const fleet = fakeFleet({ a: 90 });
    const view = createFleetView(fleet.measure, fleet.render, fleet.registry, { ...options, settleMs: 300 });
    try {
      await view.snapshot();
      const touched = Date.now();
      view.touch("a");
      await view.snapshot();
      expect(
        fleet.calls.filter((c) => c !== "all"),
        JSON.stringify(fleet.calls),
      ).toHaveLength(1);
      // The request measured `a` before its news may have reached InfluxDB: the refresh measures it again.
      await waitFor(() => fleet.calls.filter((c) => c !== "all").length >= 2, "a measured again");
      expect(Date.now() - touched).toBeGreaterThanOrEqual(300);
    } finally {
      view.close();
    }
  });

  it("measures the whole fleet again when a full refresh is due", async () => {
    const fleet = fakeFleet({ a: 90 });
    const view = createFleetView(fleet.measure, fleet.render, fleet.registry, { ...options, fullRefreshMs: 50 });
    try {
      await view.snapshot();
      await waitFor(() => fleet.calls.filter((c) => c === "all").length >= 2, "a second full measurement");
    } finally {
      view.close();
    }
  });

  it("leaves news beyond the inline budget to the refresh instead of making the request wait", async () => {
    const fleet = fakeFleet({ a: 90, b: 80, c: 70 });
    const view = createFleetView(fleet.measure, fleet.render, fleet.registry, {
      ...options,
      refreshMs: 60_000,
      inlineMax: 2,
    });
    try {
      await view.snapshot();
      for (const id of ["a", "b", "c"]) view.touch(id);
      await view.snapshot();
      expect(fleet.calls).toEqual(["all"]);
    } finally {
      view.close();
    }
  });
});

describe("the fleet health view shared through Redis", () => {
  let redis: ManagedRedis;
  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterAll(async () => {
    await redis.close();
  });

  it("is measured by the leader only; a follower answers with it and hands it its news", async () => {
    const fleet = fakeFleet({ a: 90, b: 70 });
    const leaderCalls = fleet.calls;
    const follower = fakeFleet({ a: 90, b: 70 });
    let leaderLeads = true;
    const windowMs = 1000 + Math.floor(Math.random() * 1e6);
    const shared = await redisSharedFleet(
      { url: redis.url, node: "n1", windowMs, leads: () => leaderLeads },
      z.number(),
    );
    const sharedF = await redisSharedFleet(
      { url: redis.url, node: "n2", windowMs, leads: () => !leaderLeads },
      z.number(),
    );
    const leader = createFleetView(fleet.measure, fleet.render, fleet.registry, options, shared);
    // The follower's own measure is the same fleet; counting its calls shows it did not refresh.
    const view2 = createFleetView(
      follower.measure,
      fleet.render,
      fleet.registry,
      { ...options, refreshMs: 20 },
      sharedF,
    );
    try {
      expect(await order(leader)).toBe("b:70,a:90");
      expect(await order(view2)).toBe("b:70,a:90");
      expect(follower.calls).toEqual([]);

      // News heard on the leader's node: the leader measures it, the follower reads the result.
      fleet.scores.set("b", 20);
      follower.scores.set("b", 20);
      leader.touch("b");
      await waitFor(() => leaderCalls.some((c) => c !== "all" && c.includes("b")), "the leader measured b");
      await waitFor(async () => (await order(view2)) === "b:20,a:90", "the follower sees b's new score");
      expect(follower.calls).toEqual([]);

      // The follower's news, heard only there, reaches the leader.
      fleet.scores.set("a", 5);
      follower.scores.set("a", 5);
      view2.touch("a");
      await waitFor(
        async () => (await order(leader)) === "a:5,b:20",
        "the leader measured a after the follower's news",
      );

      // The lease moves: the follower now measures for both.
      leaderLeads = false;
      fleet.scores.set("c", 60);
      follower.scores.set("c", 60);
      await waitFor(() => follower.calls.includes("all"), "the new leader measures the whole fleet");
      await waitFor(async () => (await order(leader)) === "a:5,b:20,c:60", "the old leader follows");
    } finally {
      leader.close();
      view2.close();
      await shared.close();
      await sharedF.close();
    }
  });
});
