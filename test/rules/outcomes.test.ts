import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  connectDevice,
  ingestCaughtUp,
  provision,
  startTestPlatform,
  type TestPlatform,
} from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";

/** One series of the platform's /metrics, 0 when it has no sample yet. */
async function metric(t: TestPlatform, series: string): Promise<number> {
  const text = await (await fetch(`${t.http}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/**
 * What a product team sees of its rules' outcomes through the API, /metrics
 * and the log: errors are never a silent "no match", and a set that would
 * change nothing is not sent again.
 */
describe("rule outcomes", () => {
  let t: TestPlatform;
  let device: { id: string; token: string };
  let client: MqttClient;
  beforeAll(async () => {
    t = await startTestPlatform({}, { logs: true });
    device = await provision(t, { id: "kiosk-1" });
    client = await connectDevice(t.mqttUrl, device.id, device.token, { clientId: `${device.id}:app` });
  });
  afterAll(async () => {
    await client?.endAsync();
    await t?.close();
  });
  const publish = (channel: string, body: unknown) =>
    client.publishAsync(`devices/${device.id}/${channel}`, JSON.stringify(body), { qos: 1 });
  const push = (rule: Record<string, unknown>) => api(t, "POST", "/api/rules", rule);

  it("refuses a condition that cannot typecheck, with the fix, through POST /api/rules", async () => {
    const night = await push({
      id: "night",
      on: "telemetry",
      when: "msg.ts % 86400000 >= 79200000",
      then: [{ set: "ui.mode", value: "night" }],
    });
    expect(night.status).toBe(400);
    expect(night.body).toMatchObject({ error: "invalid_rule", field: "when" });
    expect(night.body.message).toContain("write int(msg.ts) % 86400000");
    const typo = await push({ id: "typo", on: "telemetry", when: "msg.tss > 0.0", then: [{ clear: "ui.mode" }] });
    expect(typo.status).toBe(400);
    expect(typo.body.message).toContain("telemetry messages have no field 'tss'");
    expect((await api(t, "GET", "/api/rules/night")).status).toBe(404);
  });

  it("counts, logs once with a count, and backtests a run-time error with its message", async () => {
    const hot = await push({
      id: "hot",
      on: "telemetry",
      when: "msg.metrics.temp > 30.0",
      then: [{ set: "ui.theme", value: "cool" }],
    });
    expect(hot.status).toBe(201);
    expect((hot.body.warnings as Array<{ message: string }>)[0]!.message).toContain(
      "guard it with has(msg.metrics.temp)",
    );

    for (let i = 0; i < 3; i++) await publish("telemetry", { metrics: { humidity: 40 + i } });
    await waitFor(async () => (await metric(t, 'refeed_rule_errors_total{rule="hot"}')) === 3, "three errors counted");
    expect(await metric(t, 'refeed_rule_held_total{rule="hot",reason="error"}')).toBe(3);
    expect(await metric(t, 'refeed_rule_evaluations_total{rule="hot"}')).toBe(3);
    // Each evaluation's time is observed, per rule.
    expect(await metric(t, 'refeed_rule_evaluation_seconds_count{rule="hot"}')).toBe(3);
    const lines = t.logs.filter((l) => l.rule === "hot" && String(l.msg).startsWith("rule hot could not be evaluated"));
    // The first error is logged at once; the next two wait for the minute to pass (or the close) with their count.
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, errors: 1, device: device.id });
    expect(String(lines[0]!.detail)).toMatch(/temp/);

    await ingestCaughtUp(t);
    const report = await api(t, "POST", "/api/rules/hot/backtest", { since: "1h" });
    expect(report.status).toBe(200);
    expect(report.body).toMatchObject({ fired: 0, held: { error: 3 } });
    const errors = report.body.errors as Array<{ message: string; count: number; lastTarget: string }>;
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ count: 3, lastTarget: `device:${device.id}` });
    expect(errors[0]!.message).toBe(String(lines[0]!.detail));
  });

  it("does not send a set whose value already holds, records it unchanged, and resends when the rule asks", async () => {
    const pending = async () => (await api(t, "GET", `/api/devices/${device.id}`)).body.pendingActions as number;
    const mode = async () =>
      ((await api(t, "GET", `/api/devices/${device.id}`)).body.profile as Record<string, unknown>)["ui.mode"];
    const before = await pending();
    expect(
      (
        await push({
          id: "dark-mode",
          on: "event:session_start",
          when: "has(msg.props.mode)",
          then: [{ set: "ui.mode", expr: "msg.props.mode" }],
        })
      ).status,
    ).toBe(201);
    const session = async (props: Record<string, unknown>) => {
      const held = await metric(t, 'refeed_rule_evaluations_total{rule="dark-mode"}');
      await publish("events", { name: "session_start", props });
      await waitFor(
        async () => (await metric(t, 'refeed_rule_evaluations_total{rule="dark-mode"}')) === held + 1,
        "the evaluation",
      );
    };

    const proposed = await metric(t, 'refeed_actions_total{kind="set",status="proposed"}');
    await session({ mode: "dark" });
    await waitFor(async () => (await mode()) === "dark", "ui.mode set to dark");
    expect(await pending()).toBe(before + 1);
    // Actions are counted by kind and status where they are recorded.
    expect(await metric(t, 'refeed_actions_total{kind="set",status="proposed"}')).toBe(proposed + 1);
    await session({ mode: "dark" });
    expect(await metric(t, 'refeed_rule_held_total{rule="dark-mode",reason="unchanged"}')).toBe(1);
    expect(await metric(t, 'refeed_rule_fired_total{rule="dark-mode"}')).toBe(1);
    expect(await pending()).toBe(before + 1);
    // A different value is a change: it is sent.
    await session({ mode: "light" });
    await waitFor(async () => (await mode()) === "light", "ui.mode set to light");
    expect(await pending()).toBe(before + 2);

    // The backtest replays the same history to the same verdicts.
    await ingestCaughtUp(t);
    const report = await api(t, "POST", "/api/rules/dark-mode/backtest", { since: "1h" });
    expect(report.body).toMatchObject({ fired: 2, held: { unchanged: 1 } });

    expect(
      (
        await push({
          id: "dark-mode",
          on: "event:session_start",
          when: "has(msg.props.mode)",
          then: [{ set: "ui.mode", expr: "msg.props.mode" }],
          resend: true,
        })
      ).status,
    ).toBe(201);
    await session({ mode: "light" });
    await waitFor(async () => (await pending()) === before + 3, "the resent set");
    expect(await metric(t, 'refeed_rule_held_total{rule="dark-mode",reason="unchanged"}')).toBe(1);
  });

  it("does not send a clear of a key that is not set", async () => {
    expect((await push({ id: "forget-zoom", on: "event:zoom_reset", then: [{ clear: "ui.zoom" }] })).status).toBe(201);
    const before = (await api(t, "GET", `/api/devices/${device.id}`)).body.pendingActions as number;
    await publish("events", { name: "zoom_reset", props: {} });
    await waitFor(
      async () => (await metric(t, 'refeed_rule_held_total{rule="forget-zoom",reason="unchanged"}')) === 1,
      "the clear held as unchanged",
    );
    expect((await api(t, "GET", `/api/devices/${device.id}`)).body.pendingActions).toBe(before);
  });
});
