import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { FleetRow } from "../../health/fleet.ts";
import { createFleetView, type ScoreDevices } from "../../health/view.ts";
import { waitFor } from "../support/wait.ts";

const row = (device: string, score: number): FleetRow => ({
  device,
  kind: null,
  subject: null,
  revoked: false,
  online: false,
  lastSeen: null,
  score,
  status: score >= 80 ? "good" : score >= 50 ? "fair" : "poor",
  components: { reliability: score, performance: null, sentiment: null, participation: null, connectivity: null },
  feedback: { negative: 0, latestNegative: null },
});

/** A fleet whose scores the test sets, and a record of what the view asked to score. */
function fakeFleet(initial: Record<string, number>) {
  const scores = new Map(Object.entries(initial));
  const calls: Array<string[] | "all"> = [];
  const scoreDevices: ScoreDevices = (_windowMs, devices) => {
    calls.push(devices ? [...devices].sort() : "all");
    const ids = devices ?? [...scores.keys()];
    return Promise.resolve({
      from: 0,
      to: 1,
      rows: ids.filter((id) => scores.has(id)).map((id) => row(id, scores.get(id)!)),
    });
  };
  return { scores, calls, scoreDevices, registry: () => [...scores.keys()] };
}

const options = {
  windowMs: 86_400_000,
  refreshMs: 10,
  fullRefreshMs: 60_000,
  idleMs: 60_000,
  settleMs: 0,
  log: pino({ level: "silent" }),
};

describe("the fleet health view", () => {
  it("scores the whole fleet once, then only the devices with news", async () => {
    const fleet = fakeFleet({ a: 90, b: 70, c: 40 });
    const view = createFleetView(fleet.scoreDevices, fleet.registry, options);
    try {
      const first = await view.snapshot();
      expect(first.rows.map((r) => r.device)).toEqual(["c", "b", "a"]);
      expect(fleet.calls).toEqual(["all"]);

      fleet.scores.set("a", 10);
      view.touch("a");
      const updated = await waitFor(async () => {
        const s = await view.snapshot();
        return s.rows[0]!.device === "a" && s;
      }, "device a re-scored");
      expect(updated.digest).not.toBe(first.digest);
      expect(fleet.calls).toContainEqual(["a"]);
      expect(fleet.calls.filter((c) => c === "all")).toHaveLength(1);

      // A device provisioned since is scored without news; one gone from the registry leaves.
      fleet.scores.set("d", 55);
      fleet.scores.delete("b");
      await waitFor(
        async () => (await view.snapshot()).rows.map((r) => r.device).join() === "a,c,d",
        "the registry reconciled",
      );
    } finally {
      view.close();
    }
  });

  it("waits for news to settle before scoring it", async () => {
    const fleet = fakeFleet({ a: 90 });
    const view = createFleetView(fleet.scoreDevices, fleet.registry, { ...options, settleMs: 300 });
    try {
      await view.snapshot();
      const touched = Date.now();
      view.touch("a");
      await waitFor(() => fleet.calls.some((c) => c !== "all"), "a re-scored");
      expect(Date.now() - touched).toBeGreaterThanOrEqual(300);
    } finally {
      view.close();
    }
  });

  it("scores the whole fleet again when a full refresh is due", async () => {
    const fleet = fakeFleet({ a: 90 });
    const view = createFleetView(fleet.scoreDevices, fleet.registry, { ...options, fullRefreshMs: 50 });
    try {
      await view.snapshot();
      await waitFor(() => fleet.calls.filter((c) => c === "all").length >= 2, "a second full scoring");
    } finally {
      view.close();
    }
  });
});
