import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxQuery, rowsOnce } from "../support/influx.ts";
import { api, collect, connectDevice, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";
import { parseAction, parseState } from "../support/messages.ts";

const coolTheme = `
id: cool-theme
description: Switch to the cool theme when the room is hot
on: telemetry
scope: device
when: msg.metrics.temp > 30
then:
  - set: ui.theme
    value: cool
cooldown: 1h
`;

describe("foundation: provision -> MQTT telemetry -> InfluxDB -> rule -> action and state", () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
    await writeFile(path.join(t.rulesDir, "cool-theme.yaml"), coolTheme);
    // Start again so the rule file is read at start, as an operator would have it.
    await t.restart();
  });
  afterAll(() => t?.close());

  it("stores telemetry and delivers the rule's action and retained state over TCP", async () => {
    const device = await provision(t, { id: "thermo-1", kind: "thermostat" });
    expect(device.token).toMatch(/^rfd\.dGhlcm1vLTE\.[A-Za-z0-9_-]{43}$/); // names thermo-1, then 256 random bits
    const client = await connectDevice(t.mqttUrl, device.id, device.token);
    const seen = collect(client);
    await client.subscribeAsync([`devices/${device.id}/actions`, `devices/${device.id}/state`], { qos: 1 });

    await client.publishAsync(
      `devices/${device.id}/telemetry`,
      JSON.stringify({ metrics: { temp: 31.5, door: false } }),
      { qos: 1 },
    );

    // The PUBACK came back, so the point is durable on disk; InfluxDB has it moments later.
    const rows = await rowsOnce(t.db, influxql`SELECT temp, door FROM telemetry WHERE device = ${device.id}`);
    expect(rows).toEqual([expect.objectContaining({ temp: 31.5, door: false })]);

    const actions = await waitFor(() => seen.get(`devices/${device.id}/actions`), "an action");
    const action = parseAction(actions[0]!);
    expect(action).toMatchObject({ rule: "cool-theme", kind: "set", key: "ui.theme", value: "cool" });
    expect(action.id).toMatch(/^act_/);
    expect(action.why).toContain("msg.metrics.temp = 31.5");

    const states = await waitFor(() => seen.get(`devices/${device.id}/state`), "the state");
    expect(JSON.parse(states.at(-1)!)).toMatchObject({ device: device.id, profile: { "ui.theme": "cool" } });
    await client.endAsync();

    // A later subscriber gets the profile as a retained message.
    const late = await connectDevice(t.mqttUrl, `${device.id}`, device.token);
    const lateSeen = collect(late);
    await late.subscribeAsync(`devices/${device.id}/state`, { qos: 1 });
    const retained = await waitFor(() => lateSeen.get(`devices/${device.id}/state`), "retained state");
    expect(parseState(retained[0]!).profile).toEqual({ "ui.theme": "cool" });
    await late.endAsync();
  });

  it("does not fire when the condition is false", async () => {
    const device = await provision(t, { id: "thermo-cold" });
    const client = await connectDevice(t.mqttUrl, device.id, device.token);
    await client.publishAsync(`devices/${device.id}/telemetry`, JSON.stringify({ metrics: { temp: 12 } }), { qos: 1 });
    // The reading in InfluxDB first, as the evidence that ingest has processed it; then no action.
    expect((await rowsOnce(t.db, influxql`SELECT temp FROM telemetry WHERE device = ${device.id}`)).length).toBe(1);
    const rows = await influxQuery(t.db, influxql`SELECT * FROM action_log WHERE device = ${device.id}`);
    expect(rows).toEqual([]);
    await client.endAsync();
  });

  it("serves MQTT over WebSocket at /mqtt with the same identity", async () => {
    const device = await provision(t, { id: "app-1", kind: "app" });
    const client = await connectDevice(t.wsUrl, device.id, device.token);
    const seen = collect(client);
    await client.subscribeAsync(`devices/${device.id}/actions`, { qos: 1 });
    await client.publishAsync(`devices/${device.id}/telemetry`, JSON.stringify({ metrics: { temp: 40 } }), { qos: 1 });
    const actions = await waitFor(() => seen.get(`devices/${device.id}/actions`), "an action over WebSocket");
    expect(JSON.parse(actions[0]!)).toMatchObject({ rule: "cool-theme", value: "cool" });
    await client.endAsync();
    await expect(connectDevice(t.wsUrl, device.id, "rfd.YXBwLTE.wrong")).rejects.toThrow(/Bad username or password/i);
  });

  it("refuses a wrong password, an unknown device and another device's client id", async () => {
    const device = await provision(t, { id: "door-1" });
    await expect(connectDevice(t.mqttUrl, device.id, "rfd.ZG9vci0x.not-the-token")).rejects.toThrow(
      /Bad username or password/i,
    );
    await expect(connectDevice(t.mqttUrl, "ghost", device.token)).rejects.toThrow(/Bad username or password/i);
    await expect(connectDevice(t.mqttUrl, device.id, device.token, { clientId: "thermo-1" })).rejects.toThrow(
      /Identifier rejected/i,
    );
  });

  it("provisions only with the admin token and a valid body, and returns the token once", async () => {
    expect((await api(t, "POST", "/api/devices", { id: "x-1" }, null)).status).toBe(401);
    expect((await api(t, "POST", "/api/devices", { id: "x-1" }, "wrong-token")).status).toBe(401);
    const bad = await api(t, "POST", "/api/devices", { id: "has space" });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^id: /);
    const unknown = await api(t, "POST", "/api/devices", { id: "x-2", colour: "red" });
    expect(unknown).toMatchObject({ status: 400, body: { message: "unknown field colour" } });
    await provision(t, { id: "x-1" });
    expect((await api(t, "POST", "/api/devices", { id: "x-1" })).status).toBe(409);
    const listed = await api(t, "GET", "/api/devices/x-1");
    expect(listed.status).toBe(200);
    expect(JSON.stringify(listed.body)).not.toContain("token");
    // Only a scrypt hash is stored.
    const stored = await influxQuery(t.db, influxql`SELECT token_hash FROM device_registry WHERE device = 'x-1'`);
    expect(String(stored[0]!.token_hash)).toMatch(/^scrypt\$/);
  });

  it("keeps the registry and profiles across a restart: the same token still connects", async () => {
    const device = await provision(t, { id: "kiosk-7" });
    await t.restart();
    const client = await connectDevice(t.mqttUrl, device.id, device.token);
    const granted = await client.subscribeAsync(`devices/${device.id}/state`, { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual([1]);
    // Another device's state is refused with SUBACK 0x80.
    const refused = await client
      .subscribeAsync(`devices/thermo-1/state`, { qos: 1 })
      .catch((err: { packet?: { granted?: number[] } }) => err);
    expect(refused).toMatchObject({ packet: { granted: [128] } });
    await client.endAsync();
    const thermo = (await api(t, "GET", "/api/devices/thermo-1")).body;
    expect(thermo.profile).toEqual({ "ui.theme": "cool" });
  });

  it("reloads a rule file edited while running", async () => {
    await writeFile(
      path.join(t.rulesDir, "door.yaml"),
      `id: door-open\non: event:door_opened\nthen:\n  - set: ui.banner\n    expr: "'door ' + msg.props.which"\n`,
    );
    const device = await provision(t, { id: "fridge-1" });
    const client = await connectDevice(t.mqttUrl, device.id, device.token);
    const seen = collect(client);
    await client.subscribeAsync(`devices/${device.id}/actions`, { qos: 1 });
    // The watcher picks the file up asynchronously; publish until the rule has fired.
    const actions = await waitFor(async () => {
      await client.publishAsync(
        `devices/${device.id}/events`,
        JSON.stringify({ name: "door_opened", props: { which: "left" } }),
        { qos: 1 },
      );
      return seen.get(`devices/${device.id}/actions`);
    }, "the new rule to fire");
    expect(JSON.parse(actions[0]!)).toMatchObject({ rule: "door-open", key: "ui.banner", value: "door left" });
    await client.endAsync();
  });

  it("reports liveness and InfluxDB reachability at /healthz without auth", async () => {
    const res = await api(t, "GET", "/healthz", undefined, null);
    expect(res).toMatchObject({ status: 200, body: { status: "ok", influx: "reachable" } });
  });
});
