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

/**
 * A rule pushed through the API with a new aggregate (and a `where`) must see
 * the history a start would warm it with: what fires live, in a backtest and
 * after a restart is one verdict.
 */
describe("a rule pushed with a new aggregate reads the history, live as after a restart", () => {
  let t: TestPlatform;
  let device: { id: string; token: string };
  let client: MqttClient;
  beforeAll(async () => {
    t = await startTestPlatform();
    device = await provision(t, { id: "atm-7", kind: "atm" });
  });
  afterAll(async () => {
    await client?.endAsync();
    await t?.close();
  });
  const connect = async () => (client = await connectDevice(t.mqttUrl, device.id, device.token));
  const withdraw = (amount: number) =>
    client.publishAsync(`devices/${device.id}/events`, JSON.stringify({ name: "withdrawal", props: { amount } }), {
      qos: 1,
    });
  const big = async () =>
    ((await api(t, "GET", `/api/devices/${device.id}`)).body.profile as Record<string, unknown>)["atm.big_count"];

  it("a new version with a new aggregate counts the five big withdrawals made before it, the sixth live, the seventh after a restart", async () => {
    await connect();
    // Version 1 of the rule reads no history.
    const v1 = await api(t, "POST", "/api/rules", {
      id: "big-withdrawals",
      on: "event:withdrawal",
      when: "has(msg.props.amount) && msg.props.amount > 1000.0",
      then: [{ set: "atm.huge", value: true }],
    });
    expect(v1.status, JSON.stringify(v1.body)).toBe(201);
    // History: five big withdrawals and three small ones, before version 2 and its aggregate.
    for (const amount of [200, 50, 300, 40, 250, 500, 30, 150]) await withdraw(amount);
    await ingestCaughtUp(t);

    const rule = {
      id: "big-withdrawals",
      on: "event:withdrawal",
      aggregates: {
        big: {
          fn: "count",
          of: "event:withdrawal",
          where: "has(msg.props.amount) && msg.props.amount > 100.0",
          window: "1d",
        },
      },
      when: "agg.big >= 5.0",
      then: [{ set: "atm.big_count", expr: "agg.big" }],
    };
    const pushed = await api(t, "POST", "/api/rules", rule);
    expect(pushed.status, JSON.stringify(pushed.body)).toBe(201);
    // The backtest over the same history: it would have fired at the fifth big one.
    const report = await api(t, "POST", "/api/rules/big-withdrawals/backtest", { since: "1h" });
    expect(report.body).toMatchObject({ fired: 1 });

    // Live: the sixth big withdrawal sees the five before it.
    await withdraw(120);
    await waitFor(async () => (await big()) === 6, "the sixth big withdrawal counted with the history");

    // After a restart the windows are warmed the same way: the seventh is seven.
    await client.endAsync();
    await t.restart();
    await connect();
    await withdraw(400);
    await waitFor(async () => (await big()) === 7, "the seventh after a restart");
  });
});
