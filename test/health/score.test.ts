import { describe, expect, it } from "vitest";
import { configSchema } from "../../config/schema.ts";
import { filterRows, sortRows, type FleetRow } from "../../health/fleet.ts";
import {
  emptyAggregates,
  score,
  statusOf,
  weightsFor,
  type Aggregates,
  type DeviceContext,
} from "../../health/score.ts";
import { decodeCursor, encodeCursor } from "../../health/timeline.ts";

const DAY = 86_400_000;
const config = configSchema.parse({}).health;
const now = Date.UTC(2026, 4, 8, 12);
const range = { from: now - 7 * DAY, to: now };
const ctx: DeviceContext = {
  kind: "kiosk",
  createdAt: now - 30 * DAY,
  online: false,
  changedAt: undefined,
  firstSeen: now - 30 * DAY,
};
const agg = (over: Partial<Aggregates>): Aggregates => ({ ...emptyAggregates(), ...over });

describe("the experience-health model (docs/health.md)", () => {
  it("reliability: errors and crashes per session against their budgets", () => {
    const r = score(agg({ sessions: 10, errorEvents: 2, errorSum: 1, crashEvents: 1 }), ctx, range, config).components
      .reliability;
    // 3 errors / 10 sessions = 0.3 of a budget of 1; 1 crash / 10 = 0.1 of 0.25 = 0.4: 100 x (1 - 0.3 - 0.4).
    expect(r.score).toBe(30);
    expect(r.inputs).toMatchObject({ errors: 3, crashes: 1, sessions: 10, per: "session" });
    // Without sessions, per day of the window.
    const perDay = score(agg({ errorSum: 7, errorSamples: 100 }), ctx, range, config).components.reliability;
    expect(perDay).toMatchObject({ score: 0, inputs: { per: "day", errorRate: 1 } });
    expect(score(agg({ errorSamples: 50 }), ctx, range, config).components.reliability.score).toBe(100);
    expect(score(agg({}), ctx, range, config).components.reliability.score).toBeNull();
  });

  it("performance: Apdex with target T", () => {
    // 60 satisfied, 30 tolerating, 10 frustrated: (60 + 15) / 100.
    const p = score(
      agg({ latencySamples: 100, latencyWithinT: 60, latencyWithin4T: 90, latencyMean: 700 }),
      ctx,
      range,
      config,
    ).components.performance;
    expect(p).toMatchObject({ score: 75, inputs: { satisfied: 60, tolerating: 30, frustrated: 10, apdex: 0.75 } });
    expect(p.explanation).toBe(
      "Apdex 0.75 over 100 samples of latency_ms (target 500 ms): 60 satisfied, 30 tolerating (up to 2000 ms), 10 frustrated; mean 700 ms",
    );
  });

  it("sentiment: ratings and text sentiment, weighed by their counts", () => {
    // Ratings averaging 2 -> 25; texts averaging -0.5 with span 1 -> 25; 4 ratings and 4 texts -> 25.
    expect(
      score(agg({ ratings: 4, ratingMean: 2, texts: 4, sentimentMean: -0.5 }), ctx, range, config).components.sentiment
        .score,
    ).toBe(25);
    // 1 rating of 5 (100) and 3 texts at -1 or below (0): 25.
    expect(
      score(agg({ ratings: 1, ratingMean: 5, texts: 3, sentimentMean: -2 }), ctx, range, config).components.sentiment
        .score,
    ).toBe(25);
    expect(score(agg({}), ctx, range, config).components.sentiment.score).toBeNull();
  });

  it("participation: answers and acceptances out of the prompts offered", () => {
    expect(
      score(agg({ asks: 4, accepted: 1, declined: 1 }), ctx, range, config).components.participation,
    ).toMatchObject({ score: 37.5, inputs: { answered: 2 } });
    expect(score(agg({ asks: 2, accepted: 2 }), ctx, range, config).components.participation.score).toBe(100);
  });

  it("connectivity: online share of the window against the target, less the drops", () => {
    // Online for 3.5 of the 7 days, 7 drops (1 a day of a budget of 10): 100 x (0.5 / 0.95) x 0.9.
    const c = score(agg({ onlineMsSum: 3.5 * DAY, drops: 7 }), ctx, range, config).components.connectivity;
    expect(c.score).toBeCloseTo(100 * (0.5 / 0.95) * 0.9, 1);
    expect(c.inputs).toMatchObject({ onlineShare: 0.5, dropsPerDay: 1 });
    // The first event's interval reaches back before the window: only its part inside counts;
    // online now: the time since the last event counts too.
    const spanning = score(
      agg({ onlineMsSum: 2 * DAY, firstPresence: { at: range.from + DAY, onlineMs: 2 * DAY } }),
      { ...ctx, online: true, changedAt: now - DAY },
      range,
      config,
    );
    expect(spanning.components.connectivity.inputs.onlineMs).toBe(DAY + DAY);
    // A device in service for less than the window is judged from its first connection, not its provisioning.
    const young = score(
      agg({}),
      { ...ctx, createdAt: now - 2 * DAY, firstSeen: now - DAY, online: true, changedAt: now - DAY },
      range,
      config,
    );
    expect(young.components.connectivity.score).toBe(100);
    expect(score(agg({}), { ...ctx, firstSeen: undefined }, range, config).components.connectivity.score).toBeNull();
  });

  it("the score is the weighted mean of the components that have data", () => {
    const s = score(
      agg({ ratings: 2, ratingMean: 1, latencySamples: 10, latencyWithinT: 10, latencyWithin4T: 10 }),
      { ...ctx, firstSeen: undefined },
      range,
      config,
    );
    // sentiment 0 (weight 2), performance 100 (weight 1).
    expect(s.score).toBeCloseTo(100 / 3, 1);
    expect(s.status).toBe("poor");
    expect(score(agg({}), { ...ctx, firstSeen: undefined }, range, config)).toMatchObject({
      score: null,
      status: "unknown",
    });
  });

  it("weights per kind of device override the defaults", () => {
    const custom = configSchema.parse({
      health: { weights: { sentiment: 3 }, kinds: { "phone-app": { connectivity: 0 } } },
    }).health;
    // Only what the kind names changes; the other weights stay the configured ones.
    expect(weightsFor(custom, "phone-app")).toEqual({
      reliability: 1,
      performance: 1,
      sentiment: 3,
      participation: 0.5,
      connectivity: 0,
    });
    expect(weightsFor(custom, "tv")).toEqual(custom.weights);
    const offline = score(agg({ ratings: 1, ratingMean: 5 }), { ...ctx, kind: "phone-app" }, range, custom);
    expect(offline.components.connectivity.score).toBe(0);
    expect(offline.score).toBe(100);
  });

  it("bands: good from 80, fair from 50", () => {
    expect([statusOf(80), statusOf(79.9), statusOf(50), statusOf(49.9), statusOf(null)]).toEqual([
      "good",
      "fair",
      "fair",
      "poor",
      "unknown",
    ]);
  });
});

describe("fleet order and filters", () => {
  const row = (device: string, s: number | null, over: Partial<FleetRow> = {}): FleetRow => ({
    device,
    kind: "tv",
    subject: null,
    revoked: false,
    online: true,
    lastSeen: null,
    score: s,
    status: statusOf(s),
    components: {
      reliability: s,
      performance: null,
      sentiment: s === null ? null : 100 - s,
      participation: null,
      connectivity: null,
    },
    feedback: { negative: 0, latestNegative: null },
    ...over,
  });
  const rows = [
    row("b", 90),
    row("a", 20),
    row("c", null),
    row("d", 20),
    row("e", 55, { revoked: true, kind: "atm", subject: "cust-7" }),
  ];

  it("sorts worst first, devices without data last, ties by id", () => {
    expect(sortRows([...rows], "score").map((r) => r.device)).toEqual(["a", "d", "e", "b", "c"]);
    expect(sortRows([...rows], "-score").map((r) => r.device)).toEqual(["b", "e", "a", "d", "c"]);
    expect(sortRows([...rows], "sentiment").map((r) => r.device)).toEqual(["b", "e", "a", "d", "c"]);
  });

  it("filters by text, kind, band and revocation", () => {
    expect(filterRows(rows, { revoked: false }).map((r) => r.device)).toEqual(["b", "a", "c", "d"]);
    expect(filterRows(rows, { revoked: true, q: "CUST-7" }).map((r) => r.device)).toEqual(["e"]);
    expect(filterRows(rows, { revoked: true, kind: "atm" }).map((r) => r.device)).toEqual(["e"]);
    expect(filterRows(rows, { revoked: false, status: "poor" }).map((r) => r.device)).toEqual(["a", "d"]);
    expect(
      filterRows(rows, { revoked: false, q: "cust-9", subjectDevices: new Set(["c"]) }).map((r) => r.device),
    ).toEqual(["c"]);
  });
});

describe("timeline cursors", () => {
  it("round-trip, and anything else is refused", () => {
    expect(decodeCursor(encodeCursor(1_778_241_600_123_456, 3))).toEqual({
      untilMicros: 1_778_241_600_123_456,
      skip: 3,
    });
    expect(decodeCursor("nonsense")).toBeUndefined();
    expect(decodeCursor(Buffer.from("1.2.3").toString("base64url"))).toBeUndefined();
  });
});
