import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxQuery } from "../support/influx.ts";
import { api, collect, connectDevice, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

const rule = "id: hot\non: telemetry\nwhen: msg.metrics.temp > 30\nthen:\n  - set: ui.theme\n    value: cool\n";

interface Action {
  id: string;
  rule: string;
  value: unknown;
}

/**
 * Reliable delivery as a device sees it: actions produced while it is
 * offline arrive when it subscribes again, also after a platform restart,
 * and after de-duplication by action id each arrives exactly once.
 */
describe("reliable action delivery", () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
    await writeFile(path.join(t.rulesDir, "hot.yaml"), rule);
    await t.restart();
  });
  afterAll(() => t?.close());

  /** The device's sensor process publishes a hot reading; the rule proposes an action for the device. */
  const heatUp = async (device: { id: string; token: string }) => {
    const sensor = await connectDevice(t.mqttUrl, device.id, device.token, { clientId: `${device.id}:sensor` });
    await sensor.publishAsync(`devices/${device.id}/telemetry`, JSON.stringify({ metrics: { temp: 35 } }), { qos: 1 });
    await sensor.endAsync();
  };
  const pending = async (id: string) => (await api(t, "GET", `/api/devices/${id}`)).body.pendingActions as number;
  const log = (id: string) =>
    influxQuery(
      t.db,
      influxql`SELECT action, status FROM action_log WHERE device = ${id}`,
    ) as Promise<unknown> as Promise<Array<{ action: string; status: string }>>;

  /** Subscribes to actions and state; the retained state arrives after any resent action, so it is the barrier. */
  const subscribeAndSettle = async (client: MqttClient, device: string) => {
    const seen = collect(client);
    await client.subscribeAsync([`devices/${device}/actions`, `devices/${device}/state`], { qos: 1 });
    await waitFor(() => seen.get(`devices/${device}/state`), "the retained state");
    return (seen.get(`devices/${device}/actions`) ?? []).map((p) => JSON.parse(p) as Action);
  };

  it("delivers an action produced while the device was offline when it subscribes, and records the PUBACK", async () => {
    const thermo = await provision(t, { id: "thermo" });
    await heatUp(thermo);
    const proposed = await waitFor(
      async () => (await log("thermo")).find((r) => r.status === "proposed" && r.action),
      "the proposed action",
    );
    await waitFor(async () => (await pending("thermo")) === 1, "one pending action");

    const client = await connectDevice(t.mqttUrl, thermo.id, thermo.token);
    const seen = collect(client);
    await client.subscribeAsync(`devices/${thermo.id}/actions`, { qos: 1 });
    const received = await waitFor(() => seen.get(`devices/${thermo.id}/actions`), "the action");
    expect(received.map((p) => (JSON.parse(p) as Action).id)).toEqual([proposed.action]);
    await waitFor(
      async () => (await log("thermo")).some((r) => r.action === proposed.action && r.status === "delivered"),
      "the delivered record",
    );
    expect(await pending("thermo")).toBe(0);
    await client.endAsync();

    // Delivered means not sent again.
    const again = await connectDevice(t.mqttUrl, thermo.id, thermo.token);
    expect(await subscribeAndSettle(again, thermo.id)).toEqual([]);
    await again.endAsync();
  });

  it("resends an action whose PUBACK was lost; the device sees it once after de-duplication by id", async () => {
    const app = await provision(t, { id: "app" });
    const ids: string[] = [];
    const first = await connectDevice(t.mqttUrl, app.id, app.token);
    // This session takes the message but never acknowledges it (the link dies first).
    first.handleMessage = (packet) => void ids.push((JSON.parse(packet.payload.toString()) as Action).id);
    await first.subscribeAsync(`devices/${app.id}/actions`, { qos: 1 });
    await heatUp(app);
    await waitFor(() => ids.length === 1, "the action at the first session");
    first.end(true);
    expect(await pending("app")).toBe(1);

    const second = await connectDevice(t.mqttUrl, app.id, app.token);
    const resent = await subscribeAndSettle(second, app.id);
    ids.push(...resent.map((a) => a.id));
    expect(ids).toHaveLength(2); // at least once...
    expect(new Set(ids).size).toBe(1); // ...and exactly once by id
    await waitFor(async () => (await pending("app")) === 0, "delivered");
    await second.endAsync();
  });

  it("delivers to every live session of the device and records one delivery", async () => {
    const kiosk = await provision(t, { id: "kiosk" });
    const a = await connectDevice(t.mqttUrl, kiosk.id, kiosk.token);
    const b = await connectDevice(t.mqttUrl, kiosk.id, kiosk.token, { clientId: `${kiosk.id}:ui` });
    const seenA = collect(a);
    const seenB = collect(b);
    await a.subscribeAsync(`devices/${kiosk.id}/actions`, { qos: 1 });
    await b.subscribeAsync(`devices/${kiosk.id}/actions`, { qos: 1 });
    await heatUp(kiosk);
    const gotA = await waitFor(() => seenA.get(`devices/${kiosk.id}/actions`), "session a");
    const gotB = await waitFor(() => seenB.get(`devices/${kiosk.id}/actions`), "session b");
    expect(new Set([...gotA, ...gotB].map((p) => (JSON.parse(p) as Action).id)).size).toBe(1);
    // A later acknowledged publish on each connection means the broker has read both PUBACKs.
    await a.publishAsync(`devices/${kiosk.id}/telemetry`, JSON.stringify({ metrics: { temp: 20 } }), { qos: 1 });
    await b.publishAsync(`devices/${kiosk.id}/telemetry`, JSON.stringify({ metrics: { temp: 20 } }), { qos: 1 });
    const delivered = await waitFor(async () => {
      const rows = (await log("kiosk")).filter((r) => r.status === "delivered");
      return rows.length > 0 && rows;
    }, "the delivered record");
    expect(delivered).toHaveLength(1);
    await a.endAsync();
    await b.endAsync();
  });

  it("re-derives pending actions from the action log after a restart; mosquitto_sub receives each once", async () => {
    const tv = await provision(t, { id: "tv" });
    const other = await provision(t, { id: "radio" });
    await heatUp(tv);
    await heatUp(other);
    const proposed = await waitFor(
      async () => (await log("tv")).find((r) => r.status === "proposed" && r.action),
      "the proposed action",
    );
    await t.restart();
    expect(await pending("tv")).toBe(1);

    const port = new URL(t.mqttUrl).port;
    const sub = spawn("mosquitto_sub", [
      "-p",
      port,
      "-i",
      "tv",
      "-u",
      "tv",
      "-P",
      tv.token,
      "-q",
      "1",
      "-t",
      "devices/tv/actions",
      "-C",
      "1",
      "-W",
      "20",
    ]);
    let out = "";
    sub.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    expect(await new Promise((resolve) => sub.once("exit", resolve))).toBe(0);
    expect(JSON.parse(out) as Action).toMatchObject({ id: proposed.action, rule: "hot", value: "cool" });
    await waitFor(async () => (await log("tv")).some((r) => r.status === "delivered"), "the delivered record");

    // Delivered survives the next restart too; the other device still waits for its own.
    await t.restart();
    expect(await pending("tv")).toBe(0);
    expect(await pending("radio")).toBe(1);
    const client = await connectDevice(t.mqttUrl, tv.id, tv.token);
    expect(await subscribeAndSettle(client, tv.id)).toEqual([]);
    await client.endAsync();
    const radio = await connectDevice(t.mqttUrl, other.id, other.token);
    expect((await subscribeAndSettle(radio, other.id)).map((a) => a.rule)).toEqual(["hot"]);
    await radio.endAsync();
  });

  it("rebuilds the retained state at start: the current profile, also when it became empty", async () => {
    const lamp = await provision(t, { id: "lamp" });
    const bulb = await provision(t, { id: "bulb" });
    await heatUp(lamp);
    await heatUp(bulb);
    // The bulb's customer undoes the change, so its profile is empty again.
    const action = await waitFor(
      async () => (await log("bulb")).find((r) => r.status === "proposed" && r.action),
      "the bulb's action",
    );
    const acker = await connectDevice(t.mqttUrl, bulb.id, bulb.token, { clientId: "bulb:ack" });
    await acker.publishAsync("devices/bulb/acks", JSON.stringify({ action: action.action, status: "undone" }), {
      qos: 1,
    });
    await acker.endAsync();
    await waitFor(
      async () => JSON.stringify((await api(t, "GET", "/api/devices/bulb")).body.profile) === "{}",
      "the undo",
    );
    await t.restart();

    const state = async (device: { id: string; token: string }) => {
      const client = await connectDevice(t.mqttUrl, device.id, device.token);
      const seen = collect(client);
      await client.subscribeAsync(`devices/${device.id}/state`, { qos: 1 });
      const retained = await waitFor(() => seen.get(`devices/${device.id}/state`), `${device.id}'s retained state`);
      await client.endAsync();
      return JSON.parse(retained[0]!) as { profile: Record<string, unknown> };
    };
    expect((await state(lamp)).profile).toEqual({ "ui.theme": "cool" });
    expect((await state(bulb)).profile).toEqual({});
  });
});
