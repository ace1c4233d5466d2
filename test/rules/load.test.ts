import { describe, expect, it } from "vitest";
import { loadRule, RuleError } from "../../rules/load.ts";
import { parseDuration } from "../../rules/duration.ts";

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
    expect(rule.spec).toMatchObject({ id: "cool-theme", on: "telemetry", scope: "device", cooldown: 3_600_000, enabled: true });
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
