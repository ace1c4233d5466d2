import { describe, expect, it } from "vitest";
import { BUCKETS_PER_WINDOW, CountWindow, MAX_DISTINCT, TimeWindow } from "../../rules/window.ts";
import { aggregateValue } from "../../rules/aggregates.ts";

const HOUR = 3_600_000;

describe("time windows", () => {
  it("keep a bounded number of buckets however many events arrive", () => {
    const w = new TimeWindow(24 * HOUR);
    for (let i = 0; i < 100_000; i += 1) w.add(i % 7, i * 10_000);
    expect(w.size).toBeLessThanOrEqual(BUCKETS_PER_WINDOW + 1);
    const stats = w.read(100_000 * 10_000);
    expect(stats.count).toBeGreaterThan(8_500);
    expect(stats.count).toBeLessThanOrEqual(8_640 + 8_640 / BUCKETS_PER_WINDOW);
  });

  it("accept late events in the right bucket", () => {
    const w = new TimeWindow(HOUR);
    w.add(1, 10 * 60_000);
    w.add(2, 5 * 60_000);
    w.add(3, 20 * 60_000);
    expect(w.read(30 * 60_000)).toMatchObject({ count: 3, sum: 6, last: 3 });
  });

  it("bound the values kept for mode and distinct", () => {
    const w = new TimeWindow(HOUR);
    for (let i = 0; i < MAX_DISTINCT + 50; i += 1) w.add(`v${i}`, 1000);
    w.add("v0", 1001);
    const stats = w.read(2000);
    expect(stats.values.size).toBe(MAX_DISTINCT);
    expect(stats.overflow).toBe(50);
    expect(aggregateValue("mode", { stats, sessions: 0, withSource: 0 }, true)).toBe("v0");
    expect(aggregateValue("mode_share", { stats, sessions: 0, withSource: 0 }, true)).toBeCloseTo(2 / 151);
  });
});

describe("count windows", () => {
  it("hold the last N values", () => {
    const w = new CountWindow(3);
    [1, 2, 3, 4, 5].forEach((v, i) => w.add(v, i));
    expect(w.read()).toMatchObject({ count: 3, sum: 12, min: 3, max: 5, last: 5 });
  });
});

describe("aggregate values with nothing in the window", () => {
  const empty = { stats: undefined, sessions: 0, withSource: 0 };
  it.each([
    ["count", 0],
    ["sum", 0],
    ["avg", null],
    ["min", null],
    ["max", null],
    ["last", null],
    ["distinct", 0],
    ["mode", null],
    ["mode_share", null],
    ["absent", true],
    ["sessions", 0],
  ] as const)("%s is %s", (fn, value) => {
    expect(aggregateValue(fn, empty, true)).toBe(value);
  });
});
