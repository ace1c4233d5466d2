import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connect,
  createDevice,
  DeviceError,
  fileSeenStore,
  type Action,
  type Device,
  type State,
} from "../../sdk/index.ts";
import { influxQuery } from "../support/influx.ts";
import { startMqttProxy, type MqttProxy } from "../support/mqtt-proxy.ts";
import { api, ingestCaughtUp, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

const rule = "id: hot\non: telemetry\nwhen: msg.metrics.temp > 30\nthen:\n  - set: ui.theme\n    value: cool\n";
/** Short backoff: these devices reconnect within the test's patience, as a real one would within its own. */
const quick = { baseMs: 50, maxMs: 200 };

/** The device SDK against the whole platform: contract, actions once, acks in order, typed refusals. */
describe("device SDK over MQTT", () => {
  let t: TestPlatform;
  let dir: string;
  const devices: Device[] = [];
  beforeAll(async () => {
    t = await startTestPlatform();
    await writeFile(path.join(t.rulesDir, "hot.yaml"), rule);
    await t.restart();
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-sdk-"));
  });
  afterAll(async () => {
    await Promise.all(devices.map((d) => d.close({ graceMs: 0 })));
    await t?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const log = async (device: string) =>
    (await influxQuery(
      t.db,
      influxql`SELECT action, status FROM action_log WHERE device = ${device}`,
    )) as unknown as Array<{ time: string; action: string; status: string }>;
  const statusesOf = async (device: string, action: string) =>
    (await log(device)).filter((r) => r.action === action).map((r) => r.status);
  /** Another connection of the same device (its sensor) makes the room hot, so the rule sends an action. */
  const heatUp = async (id: string, token: string) => {
    const sensor = await connect({ url: t.mqttUrl, id, token, clientId: `${id}:sensor`, subscribe: false });
    await sensor.telemetry({ metrics: { temp: 35 } });
    await sensor.close();
  };
  const track = (d: Device) => (devices.push(d), d);

  it("publishes telemetry, events and feedback the platform stores, and refuses a record off the contract before sending it", async () => {
    const { id, token } = await provision(t, { id: "sdk-contract" });
    const device = track(await connect({ url: t.mqttUrl, id, token }));
    await device.telemetry({ metrics: { temp: 21, door: "closed", on: true } });
    await device.event({ name: "withdrawal", props: { amount: 100 } }, { qos: 1 });
    await device.feedback({ rating: 4, text: "quick and clear" });
    const bad = await device.telemetry({ metrics: { "bad name": 1 } }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(DeviceError);
    expect(bad).toMatchObject({ code: "INVALID_RECORD", details: { reason: "invalid_name" } });
    const rating = await device.feedback({ rating: 9 }).catch((e: unknown) => e);
    expect(rating).toMatchObject({ code: "INVALID_RECORD", details: { reason: "invalid_shape" } });
    expect((rating as Error).message).toContain("rating");

    await ingestCaughtUp(t);
    expect(await influxQuery(t.db, influxql`SELECT * FROM telemetry WHERE device = ${id}`)).toMatchObject([
      { temp: 21, door: "closed", on: true },
    ]);
    expect(await influxQuery(t.db, influxql`SELECT * FROM events WHERE device = ${id}`)).toMatchObject([
      { event: "withdrawal", props: JSON.stringify({ amount: 100 }) },
    ]);
    expect(await influxQuery(t.db, influxql`SELECT * FROM feedback WHERE device = ${id}`)).toMatchObject([
      { rating: 4, text: "quick and clear" },
    ]);
    // Nothing reached the platform's dead letters: the SDK refused the bad records itself.
    expect(await influxQuery(t.db, influxql`SELECT * FROM dead_letters WHERE device = ${id}`)).toEqual([]);
  });

  it("acks only after the action's PUBACK, so the lifecycle is proposed, delivered, applied; the state follows, typed", async () => {
    const { id, token } = await provision(t, { id: "sdk-ack" });
    const device = track(await connect({ url: t.mqttUrl, id, token }));
    const states: State[] = [];
    device.onState((s) => states.push(s));
    const acks: Array<Promise<void>> = [];
    const handled: Action[] = [];
    device.onAction((action) => {
      handled.push(action);
      // At once, inside the handler: with mqtt.js' own 'message' event this ack would be written before the PUBACK.
      acks.push(device.ack(action.id, "applied"));
    });
    await heatUp(id, token);
    const action = await waitFor(() => handled[0], "the action");
    expect(action).toMatchObject({ rule: "hot", kind: "set", key: "ui.theme", value: "cool" });
    await acks[0];
    // The delivered and applied rows are written by different writers: wait for both, then look at their order.
    await waitFor(async () => (await statusesOf(id, action.id)).length >= 3, "the delivered and applied records");
    expect(await statusesOf(id, action.id)).toEqual(["proposed", "delivered", "applied"]);
    const cool = await waitFor(() => states.find((s) => s.profile["ui.theme"] === "cool"), "the new state");
    expect(cool).toMatchObject({ device: id, subject: null });
    expect(device.state?.profile).toEqual({ "ui.theme": "cool" });
  });

  describe("an action delivered again after a lost PUBACK", () => {
    let proxy: MqttProxy;
    beforeAll(async () => {
      proxy = await startMqttProxy(t.mqttUrl);
    });
    afterAll(() => proxy?.close());

    it("reaches the handler once when the device reconnects and gets it again", async () => {
      const { id, token } = await provision(t, { id: "sdk-dup" });
      const device = track(await connect({ url: proxy.url, id, token, backoff: quick }));
      let reconnects = 0;
      device.on("reconnect", () => (reconnects += 1));
      const handled: Action[] = [];
      const duplicates: Action[] = [];
      device.onAction((a) => void handled.push(a));
      device.on("duplicate", (a) => duplicates.push(a));
      const lost = proxy.lost;
      proxy.losePuback();
      await heatUp(id, token);
      await waitFor(() => proxy.lost === lost + 1 && handled.length === 1, "the action, with its PUBACK lost");
      const action = handled[0]!;
      // Still pending for the platform; sent again at the new connection; its PUBACK now arrives.
      await waitFor(
        async () => (await statusesOf(id, action.id)).includes("delivered"),
        "the second delivery's PUBACK",
      );
      expect(reconnects).toBeGreaterThanOrEqual(1);
      expect(duplicates.map((a) => a.id)).toContain(action.id);
      expect(handled.map((a) => a.id)).toEqual([action.id]);
      expect(await statusesOf(id, action.id)).toEqual(["proposed", "delivered"]);
    });

    it("reaches the handler once across a restart of the device, when the ids are kept in a store", async () => {
      const { id, token } = await provision(t, { id: "sdk-restart" });
      const store = fileSeenStore(path.join(dir, "seen.json"));
      const before = await connect({ url: proxy.url, id, token, seen: { store }, backoff: { baseMs: 60_000 } });
      const first: Action[] = [];
      before.onAction((a) => void first.push(a));
      const lost = proxy.lost;
      proxy.losePuback();
      await heatUp(id, token);
      await waitFor(() => proxy.lost === lost + 1 && first.length === 1, "the action, with its PUBACK lost");
      await before.close({ graceMs: 0 });
      expect(JSON.parse(await readFile(path.join(dir, "seen.json"), "utf8"))).toEqual([first[0]!.id]);

      // The device restarts: a new process, the same store.
      const after = track(
        await connect({ url: t.mqttUrl, id, token, seen: { store: fileSeenStore(path.join(dir, "seen.json")) } }),
      );
      const second: Action[] = [];
      const duplicates: Action[] = [];
      after.onAction((a) => void second.push(a));
      after.on("duplicate", (a) => duplicates.push(a));
      await waitFor(async () => (await statusesOf(id, first[0]!.id)).includes("delivered"), "the redelivery's PUBACK");
      expect(duplicates.map((a) => a.id)).toContain(first[0]!.id);
      expect(second).toEqual([]);
    });
  });

  it("names a refused connection's reason as a typed error, and does not retry a final refusal", async () => {
    const { id, token } = await provision(t, { id: "sdk-refused" });
    const refusal = (options: Partial<Parameters<typeof connect>[0]>) =>
      connect({ url: t.mqttUrl, id, token, ...options }).then(
        () => {
          throw new Error("connected");
        },
        (err: unknown) => err as DeviceError,
      );
    const wrong = await refusal({ token: "rfd.wrong" });
    expect(wrong).toBeInstanceOf(DeviceError);
    expect(wrong).toMatchObject({ code: "BAD_USER_NAME_OR_PASSWORD", final: true, details: { returnCode: 4 } });
    expect(wrong.message).toContain("bad user name or password");
    expect(await refusal({ clientId: "someone-else" })).toMatchObject({
      code: "IDENTIFIER_REJECTED",
      details: { returnCode: 2 },
    });
    expect((await api(t, "POST", `/api/devices/${id}/revoke`)).status).toBe(200);
    const revoked = await refusal({});
    expect(revoked).toMatchObject({ code: "NOT_AUTHORISED", details: { returnCode: 5 } });
    expect(revoked.message).toContain("not authorised");

    // A device left running stops trying after a final refusal instead of hammering the broker.
    const device = track(createDevice({ url: t.mqttUrl, id, token, backoff: quick }));
    const errors: DeviceError[] = [];
    device.on("error", (e) => errors.push(e));
    await device.start();
    expect(device.refused?.code).toBe("NOT_AUTHORISED");
    expect(errors.map((e) => e.code)).toEqual(["NOT_AUTHORISED"]);
  });

  it("refuses a payload over the platform's limit before the broker would close the connection for it", async () => {
    const device = createDevice({ url: "mqtt://127.0.0.1:1", id: "small", token: "t", maxPayloadBytes: 200 });
    const err = await device.feedback({ text: "é".repeat(150) }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "INVALID_RECORD", details: { reason: "too_large" } });
    expect(await device.feedback({ text: "short" }).catch((e: DeviceError) => e.code)).toBe("NOT_CONNECTED");
  });

  it("refuses options that cannot work, naming the option", () => {
    expect(() => createDevice({ url: "tcp://localhost:1883", id: "x", token: "t" })).toThrow(/url: a URL with scheme/);
    expect(() => createDevice({ url: "mqtt://localhost:1883", id: "a:b", token: "t" })).toThrow(/id: a device id/);
    expect(() => createDevice({ url: "mqtt://localhost:1883", id: "a", token: "t", keepaliveS: 0 })).toThrow(
      DeviceError,
    );
  });
});
