import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { rulesCommand } from "../../cli/rules.ts";

/** `refeed rules check` as a product team's CI runs it: exit code and what it prints. */
async function check(...files: Array<[string, string]>): Promise<{ code: number; out: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-check-"));
  try {
    for (const [name, text] of files) await writeFile(path.join(dir, name), text);
    let out = "";
    const code = await rulesCommand(["check", dir], { out: (t) => (out += t), err: (t) => (out += t) });
    return { code, out };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const rule = (when: string, on = "telemetry", extra = "") =>
  `id: r\non: ${on}\n${extra}when: ${JSON.stringify(when)}\nthen:\n  - set: ui.mode\n    value: night\n`;

describe("refeed rules check: types against the trigger's contract", () => {
  it("refuses the night filter on msg.ts (a double) and says how to write it", async () => {
    const { code, out } = await check(["night.yaml", rule("msg.ts % 86400000 >= 79200000")]);
    expect(code).toBe(1);
    expect(out).toMatch(/night\.yaml:3: when: CEL: msg\.ts % 86400000: msg\.ts is a double and 86400000 an int/);
    expect(out).toContain("write int(msg.ts) % 86400000");
    expect((await check(["night.yaml", rule("int(msg.ts) % 86400000 >= 79200000")])).code).toBe(0);
  });

  it("refuses a field the trigger's messages do not have, naming the ones they have", async () => {
    const { code, out } = await check(["typo.yaml", rule("msg.tss > 0.0")]);
    expect(code).toBe(1);
    expect(out).toContain(
      "when: CEL: msg.tss: telemetry messages have no field 'tss' (they have msg.device, msg.subject, msg.ts, msg.metrics)",
    );
    const feedback = await check(["f.yaml", rule("msg.score > 3", "feedback")]);
    expect(feedback.out).toContain(
      "feedback messages have no field 'score' (they have msg.device, msg.subject, msg.ts, msg.rating, msg.text, msg.sentiment)",
    );
    const event = await check(["e.yaml", rule("msg.metrics.x > 1", "event:page_view")]);
    expect(event.out).toContain("page_view event messages have no field 'metrics'");
  });

  it("types aggregates by their function and checks their expressions against the messages they count", async () => {
    const counted = "aggregates:\n  n: { fn: count, of: feedback, window: 7d }\n";
    const plus = await check(["a.yaml", rule("agg.n + 1 > 3", "telemetry", counted)]);
    expect(plus.out).toContain(
      "agg.n + 1: agg.n is a double and 1 an int; CEL does not mix int and double: write agg.n + 1.0",
    );
    const where = "aggregates:\n  n: { fn: count, of: feedback, where: 'msg.metrics.t > 1.0', window: 7d }\n";
    expect((await check(["w.yaml", rule("agg.n > 0", "telemetry", where)])).out).toContain(
      "aggregates.n.where: CEL: msg.metrics: feedback messages have no field 'metrics'",
    );
    expect((await check(["b.yaml", rule("agg.n", "telemetry", counted)])).out).toContain(
      "the condition must be a bool, but it is a double",
    );
  });

  it("warns, without failing, about what only run time can tell, and not once it is guarded", async () => {
    const unguarded = await check(["hot.yaml", rule("msg.metrics.temp > 30")]);
    expect(unguarded.code).toBe(0);
    expect(unguarded.out).toContain(
      "hot.yaml:3: when: msg.metrics.temp: whether a message has this metric is known only at run time",
    );
    const guarded = await check(["hot.yaml", rule("has(msg.metrics.temp) && msg.metrics.temp > 30")]);
    expect(guarded.out).not.toContain("warn");
    const avg =
      "aggregates:\n  a: { fn: avg, of: feedback, value: msg.rating, window: 7d }\n  n: { fn: count, of: feedback, window: 7d }\n";
    expect((await check(["avg.yaml", rule("agg.a > 3", "feedback", avg)])).out).toContain(
      "agg.a is null when its window is empty",
    );
    expect((await check(["avg.yaml", rule("agg.n > 0 && agg.a > 3", "feedback", avg)])).out).not.toContain("warn");
  });
});

describe("the example rules", () => {
  let out = "";
  let code = -1;
  beforeAll(async () => {
    code = await rulesCommand(["check", "examples/rules"], { out: (t) => (out += t), err: (t) => (out += t) });
  });
  it("all pass the type check without a warning", () => {
    expect(code).toBe(0);
    expect(out).not.toContain("warn");
    expect(out).toMatch(/7 valid, 0 invalid/);
  });
});
