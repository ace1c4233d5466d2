import { describe, expect, it } from "vitest";
import { compare, experimentSchema, groupOf, MIN_GROUP, unitOf } from "../../rules/experiment.ts";
import { loadRule, RuleError } from "../../rules/load.ts";

/** A deterministic generator, so the statistics tests say the same thing on every run. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}
const normal = (r: () => number) => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());

describe("experiment assignment", () => {
  it("is stable: the same rule and owner always land in the same group", () => {
    for (let i = 0; i < 100; i++) {
      const owner = `subject:s-${i}`;
      expect(unitOf("r", owner)).toBe(unitOf("r", owner));
      expect(groupOf("r", owner, 0.1)).toBe(groupOf("r", owner, 0.1));
    }
  });

  it("is uniform over 10,000 owners (chi-square over 20 bins) and holds out about the fraction asked", () => {
    const bins = new Array<number>(20).fill(0);
    let held = 0;
    for (let i = 0; i < 10_000; i++) {
      const u = unitOf("night-mode", `subject:customer-${i}`);
      expect(u).toBeGreaterThanOrEqual(0);
      expect(u).toBeLessThan(1);
      bins[Math.floor(u * 20)]!++;
      if (groupOf("night-mode", `subject:customer-${i}`, 0.1) === "held_out") held++;
    }
    const chi = bins.reduce((a, o) => a + (o - 500) ** 2 / 500, 0);
    // 19 degrees of freedom: the 99.9% quantile is 43.8.
    expect(chi).toBeLessThan(43.8);
    expect(held).toBeGreaterThan(900);
    expect(held).toBeLessThan(1100);
  });

  it("draws independently per rule, so one rule's held-out owners are not another's", () => {
    let both = 0;
    for (let i = 0; i < 10_000; i++)
      if (groupOf("a", `device:d-${i}`, 0.5) === "held_out" && groupOf("b", `device:d-${i}`, 0.5) === "held_out")
        both++;
    expect(both).toBeGreaterThan(2300);
    expect(both).toBeLessThan(2700);
  });
});

describe("experiment statistics", () => {
  it("finds a true difference: the interval excludes 0 and covers the truth", () => {
    const r = rng(1);
    const treated = Array.from({ length: 200 }, () => 1.5 + normal(r));
    const held = Array.from({ length: 200 }, () => 1 + normal(r));
    const c = compare(treated, held);
    expect(c.verdict).toBe("helps");
    expect(c.difference!.low).toBeGreaterThan(0);
    expect(c.difference!.low).toBeLessThan(0.5);
    expect(c.difference!.high).toBeGreaterThan(0.5);
  });

  it("covers 0 about 95% of the time when there is no difference", () => {
    const r = rng(7);
    let covered = 0;
    for (let k = 0; k < 400; k++) {
      const c = compare(
        Array.from({ length: 60 }, () => normal(r)),
        Array.from({ length: 40 }, () => 3 * normal(r)),
      );
      if (c.difference!.low <= 0 && c.difference!.high >= 0) covered++;
    }
    expect(covered / 400).toBeGreaterThan(0.92);
    expect(covered / 400).toBeLessThan(0.98);
  });

  it("says too_small below the minimum group size instead of guessing", () => {
    const c = compare([1, 2, 3], new Array<number>(MIN_GROUP).fill(1));
    expect(c.verdict).toBe("too_small");
    expect(c.difference).toBeNull();
    expect(c.note).toContain(`at least ${MIN_GROUP}`);
  });
});

describe("experiment in a rule", () => {
  const rule = (experiment: unknown) =>
    JSON.stringify({ id: "x", on: "event:open", then: [{ set: "ui.a", value: 1 }], experiment });

  it("accepts 10% or 0.1 and each documented outcome", () => {
    expect(experimentSchema.parse({ holdout: "10%", outcome: "participation" }).holdout).toBeCloseTo(0.1);
    expect(
      loadRule(rule({ holdout: 0.2, outcome: { kind: "event_count", event: "tap" } }), "t").spec.experiment,
    ).toMatchObject({ holdout: 0.2, outcome: { kind: "event_count", event: "tap" } });
    expect(
      loadRule(rule({ holdout: "5%", outcome: { kind: "metric_mean", metric: "temp" } }), "t").spec.experiment?.outcome,
    ).toEqual({ kind: "metric_mean", metric: "temp", days: 7 });
  });

  it("refuses a bad holdout or outcome with a message naming the field", () => {
    const bad = (experiment: unknown) => {
      try {
        loadRule(rule(experiment), "t");
      } catch (err) {
        expect(err).toBeInstanceOf(RuleError);
        return (err as Error).message;
      }
      throw new Error("accepted");
    };
    expect(bad({ holdout: "150%", outcome: "participation" })).toMatch(/experiment\.holdout.*fraction between 0 and 1/);
    expect(bad({ holdout: 0.1, outcome: { kind: "clicks" } })).toMatch(/experiment\.outcome.*event_count/);
  });
});
