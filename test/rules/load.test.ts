import { describe, expect, it } from "vitest";
import { loadRule, RuleError } from "../../rules/load.ts";
import { parseDuration } from "../../config/duration.ts";

const valid = `id: cool-theme
description: Switch to the cool theme when the room is hot
on: telemetry
scope: device
when: msg.metrics.temp > 30
then:
  - set: ui.theme
    value: cool
cooldown: 1h
`;

function refusal(text: string): RuleError {
  try {
    loadRule(text, "rules/x.yaml");
  } catch (err) {
    if (err instanceof RuleError) return err;
    throw err;
  }
  throw new Error("expected a RuleError");
}

describe("rule files", () => {
  it("loads the DESIGN.md example", () => {
    const rule = loadRule(valid, "rules/cool.yaml");
    expect(rule.spec).toMatchObject({
      id: "cool-theme",
      on: "telemetry",
      scope: "device",
      cooldown: 3_600_000,
      enabled: true,
    });
    expect(rule.actions).toEqual([expect.objectContaining({ kind: "set", key: "ui.theme" })]);
  });

  it("names file, line and field for a bad value", () => {
    const err = refusal(valid.replace("scope: device", "scope: planet"));
    expect(err).toMatchObject({ line: 4, field: "scope" });
    expect(err.message).toMatch(/^rules\/x\.yaml:4: scope: /);
  });

  it("names an unknown field and its line", () => {
    const err = refusal(valid.replace("cooldown: 1h", "cooldown: 1h\ncolour: red"));
    expect(err).toMatchObject({ line: 10, field: "colour", reason: "unknown field colour" });
  });

  it("refuses a CEL expression that does not parse, at its line", () => {
    const err = refusal(valid.replace("msg.metrics.temp > 30", "msg.metrics.temp >"));
    expect(err).toMatchObject({ line: 5, field: "when" });
    expect(err.reason).toMatch(/^CEL: /);
  });

  it("refuses an action with both value and expr, or a bad key, or a bad cooldown", () => {
    expect(refusal(valid.replace("value: cool", "value: cool\n    expr: \"'x'\"")).field).toBe("then.0");
    expect(refusal(valid.replace("set: ui.theme", "set: UI Theme")).field).toBe("then.0.set");
    expect(refusal(valid.replace("cooldown: 1h", "cooldown: soon"))).toMatchObject({ field: "cooldown", line: 9 });
    expect(refusal(valid.replace("on: telemetry", "on: whenever"))).toMatchObject({ field: "on", line: 3 });
  });

  it("reports YAML syntax errors with their line", () => {
    const err = refusal("id: x\non: telemetry\nthen: [\n");
    expect(err.line).toBe(4);
    expect(err.message).toMatch(/^rules\/x\.yaml:4: /);
  });

  it("parses durations", () => {
    expect(parseDuration("90s")).toBe(90_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("30d")).toBe(30 * 86_400_000);
    expect(parseDuration("1 h")).toBeUndefined();
    expect(parseDuration("h")).toBeUndefined();
  });
});

describe("rule files with aggregates", () => {
  const base = `id: agg\non: event:session_start\nscope: subject\naggregates:\n  n: { fn: count, of: "event:withdrawal", window: 90d }\nwhen: agg.n > 3\nthen:\n  - set: a\n    value: 1\n`;

  it("loads aggregates and their windows", () => {
    const rule = loadRule(base, "agg.yaml");
    expect(rule.aggregates[0]!.spec).toMatchObject({
      fn: "count",
      of: "event:withdrawal",
      window: { kind: "time", ms: 90 * 86_400_000 },
    });
    expect(rule.purpose).toBe("personalization");
    expect(loadRule(base.replace("90d", "last 20 sessions"), "a.yaml").aggregates[0]!.spec.window).toEqual({
      kind: "sessions",
      n: 20,
    });
  });

  it("refuses an undeclared aggregate, an unknown variable, and a bad window at their lines", () => {
    expect(() => loadRule(base.replace("agg.n > 3", "agg.m > 3"), "a.yaml")).toThrow(
      /a\.yaml:6: when: CEL: agg\.m is not declared/,
    );
    expect(() => loadRule(base.replace("agg.n > 3", "mgs.n > 3"), "a.yaml")).toThrow(
      /a\.yaml:6: when: CEL: unknown variable mgs/,
    );
    expect(() => loadRule(base.replace("90d", "forever"), "a.yaml")).toThrow(
      /a\.yaml:5: aggregates\.n\.window: a duration up to 400d/,
    );
    expect(() => loadRule(base.replace("fn: count", "fn: avg"), "a.yaml")).toThrow(
      /aggregates\.n\.value: this function needs `value`/,
    );
    expect(() => loadRule(base.replace('fn: count, of: "event:withdrawal"', "fn: sessions"), "a.yaml")).toThrow(
      /aggregates\.n\.window: `sessions` counts within/,
    );
  });

  it("refuses an expression above the cost limit", () => {
    const costly = base.replace("agg.n > 3", "msg.props.all(a, msg.props.all(b, msg.props.all(c, a != b)))");
    expect(() => loadRule(costly, "a.yaml")).toThrow(/when: CEL: estimated cost \d+ exceeds the limit of 5000/);
    expect(() => loadRule(costly, "a.yaml", { maxCost: 2_000_000 })).not.toThrow();
  });

  it("loads a notify action with a webhook URL", () => {
    const rule = loadRule(
      base.replace(
        "  - set: a\n    value: 1\n",
        "  - notify: http://127.0.0.1:9/hook\n    message: customer unhappy\n",
      ),
      "n.yaml",
    );
    expect(rule.actions[0]).toMatchObject({ kind: "notify", key: "http://127.0.0.1:9/hook" });
    expect(() =>
      loadRule(base.replace("  - set: a\n    value: 1\n", "  - notify: not-a-url\n    message: x\n"), "n.yaml"),
    ).toThrow(/then\.0/);
  });
});
