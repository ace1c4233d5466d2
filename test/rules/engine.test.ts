import { describe, expect, it } from "vitest";
import { evaluate } from "../../rules/engine.ts";
import { loadRule } from "../../rules/load.ts";
import type { DeviceMessage } from "../../ingest/messages.ts";

const telemetry = (metrics: Record<string, number | boolean | string>, subject?: string): DeviceMessage => ({
  kind: "telemetry",
  device: "d1",
  subject,
  ts: 1_000_000,
  tsFromDevice: false,
  metrics,
});
const never = () => undefined;

describe("rule evaluation", () => {
  const rule = loadRule(`id: hot\non: telemetry\nwhen: msg.metrics.temp > 30\nthen:\n  - set: ui.theme\n    value: cool\n  - suggest: ui.fan\n    expr: "msg.metrics.temp > 35.0 ? 'max' : 'auto'"\n    prompt: Turn the fan on?\ncooldown: 10m\n`, "hot.yaml");

  it("fires with every action and explains itself", () => {
    const outcome = evaluate(rule, telemetry({ temp: 36 }), 0, never);
    expect(outcome.fired).toBe(true);
    if (!outcome.fired) return;
    expect(outcome.actions.map((a) => [a.kind, a.key, a.value, a.prompt])).toEqual([
      ["set", "ui.theme", "cool", undefined],
      ["suggest", "ui.fan", "max", "Turn the fan on?"],
    ]);
    expect(outcome.actions[0]!.why).toBe("rule hot: msg.metrics.temp > 30 held with msg.metrics.temp = 36");
  });

  it("does not fire when the condition is false or cannot be evaluated", () => {
    expect(evaluate(rule, telemetry({ temp: 20 }), 0, never)).toEqual({ fired: false, reason: "condition_false" });
    expect(evaluate(rule, telemetry({ humidity: 50 }), 0, never)).toMatchObject({ fired: false, reason: "error", detail: expect.stringMatching(/temp/) });
  });

  it("holds back within the cooldown of the same target only", () => {
    const last = (r: string, target: string) => (r === "hot" && target === "device:d1" ? 1_000 : undefined);
    expect(evaluate(rule, telemetry({ temp: 36 }), 1_000 + 5 * 60_000, last)).toEqual({ fired: false, reason: "cooldown" });
    expect(evaluate(rule, telemetry({ temp: 36 }), 1_000 + 11 * 60_000, last).fired).toBe(true);
    expect(evaluate(rule, { ...telemetry({ temp: 36 }), device: "d2" }, 1_000 + 5 * 60_000, last).fired).toBe(true);
  });

  it("needs a subject for a subject-scoped rule", () => {
    const subjectRule = loadRule(`id: big\non: telemetry\nscope: subject\nwhen: msg.metrics.zoom >= 1.5\nthen:\n  - set: ui.font\n    value: large\n`, "big.yaml");
    expect(evaluate(subjectRule, telemetry({ zoom: 2 }), 0, never)).toEqual({ fired: false, reason: "no_subject" });
    const outcome = evaluate(subjectRule, telemetry({ zoom: 2 }, "cust-1"), 0, never);
    expect(outcome.fired && outcome.actions[0]).toMatchObject({ scope: "subject", subject: "cust-1", value: "large" });
  });
});
