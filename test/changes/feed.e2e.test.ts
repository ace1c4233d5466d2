import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consentChanges } from "../../consent/index.ts";
import { keyChanges } from "../../keys/index.ts";
import { registryChanges } from "../../registry/index.ts";
import { ruleChanges } from "../../rules/catalog.ts";
import { nextMicros } from "../../store/clock.ts";
import { api, collect, connectDevice, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";

const closed = (client: MqttClient) =>
  new Promise<void>((resolve) => (client.disconnected ? resolve() : client.once("close", () => resolve())));

/**
 * A change made on another node arrives on the feed only: published there
 * directly, it must have the effect a change made here has.
 */
describe("changes from another node, through the change feed", () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(() => t?.close());

  it("a device revoked elsewhere loses its live session and its token here", async () => {
    const tv = await provision(t, { id: "tv-remote", kind: "tv" });
    const client = await connectDevice(t.mqttUrl, tv.id, tv.token);
    const gone = closed(client);
    await t.platform.changes.publish(registryChanges, { op: "revoked", device: tv.id, micros: nextMicros() });
    await gone;
    expect((await api(t, "GET", `/api/devices/${tv.id}`)).body).toMatchObject({ revoked: true });
    await expect(connectDevice(t.mqttUrl, tv.id, tv.token)).rejects.toThrow();
    const ingest = await api(t, "POST", "/api/ingest/telemetry", { metrics: { temp: 20 } }, tv.token);
    expect(ingest).toMatchObject({ status: 403, body: { message: "this device is revoked" } });
  });

  it("a consent recorded elsewhere is the subject's consent here", async () => {
    await t.platform.changes.publish(consentChanges, {
      op: "granted",
      subject: "cust-remote",
      purpose: "personalization",
      by: "customer",
      micros: nextMicros(),
    });
    const res = await api(t, "GET", "/api/subjects/cust-remote/consent");
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      consent: { analytics: false, personalization: true, feedback: false },
      history: [{ purpose: "personalization", granted: true, by: "customer" }],
    });
  });

  it("a key revoked elsewhere stops opening the API here", async () => {
    const key = (await api(t, "POST", "/api/keys", { name: "remote desk", role: "support" })).body as {
      id: string;
      token: string;
    };
    expect((await api(t, "GET", "/api/fleet/health", undefined, key.token)).status).toBe(200);
    await t.platform.changes.publish(keyChanges, { op: "revoked", key: key.id, micros: nextMicros(), by: "admin" });
    expect((await api(t, "GET", "/api/fleet/health", undefined, key.token)).status).toBe(401);
    expect((await api(t, "GET", `/api/keys/${key.id}`)).body).toMatchObject({ state: "revoked" });
  });

  it("a rule put, disabled and deleted elsewhere is listed, toggled and gone here", async () => {
    const text = JSON.stringify({ id: "remote-rule", on: "telemetry", when: "true", then: [{ set: "x", value: 1 }] });
    await t.platform.changes.publish(ruleChanges, {
      op: "version",
      rule: "remote-rule",
      micros: nextMicros(),
      origin: "api",
      by: "admin",
      version: 1,
      text,
    });
    expect((await api(t, "GET", "/api/rules/remote-rule")).body).toMatchObject({
      id: "remote-rule",
      origin: "api",
      version: 1,
      enabled: true,
      text,
    });
    await t.platform.changes.publish(ruleChanges, {
      op: "disable",
      rule: "remote-rule",
      micros: nextMicros(),
      origin: "api",
      by: "admin",
    });
    expect((await api(t, "GET", "/api/rules/remote-rule")).body).toMatchObject({ enabled: false });
    const listed = (await api(t, "GET", "/api/rules")).body as unknown as Array<{ id: string; enabled: boolean }>;
    expect(listed).toContainEqual(expect.objectContaining({ id: "remote-rule", enabled: false }));
    await t.platform.changes.publish(ruleChanges, {
      op: "delete",
      rule: "remote-rule",
      micros: nextMicros(),
      origin: "api",
      by: "admin",
    });
    expect((await api(t, "GET", "/api/rules/remote-rule")).status).toBe(404);
  });

  it("a rule put elsewhere runs here: the device gets its action", async () => {
    const text = JSON.stringify({
      id: "remote-hot",
      on: "telemetry",
      scope: "device",
      when: "msg.metrics.temp > 30",
      then: [{ set: "ui.theme", value: "cool" }],
    });
    await t.platform.changes.publish(ruleChanges, {
      op: "version",
      rule: "remote-hot",
      micros: nextMicros(),
      origin: "api",
      by: "admin",
      version: 1,
      text,
    });
    const atm = await provision(t, { id: "atm-remote" });
    const client = await connectDevice(t.mqttUrl, atm.id, atm.token);
    const seen = collect(client);
    await client.subscribeAsync(`devices/${atm.id}/actions`, { qos: 1 });
    await client.publishAsync(`devices/${atm.id}/telemetry`, JSON.stringify({ metrics: { temp: 35 } }), { qos: 1 });
    const actions = await waitFor(() => seen.get(`devices/${atm.id}/actions`), "the remote rule's action");
    expect(JSON.parse(actions[0]!)).toMatchObject({ rule: "remote-hot", key: "ui.theme", value: "cool" });
    await client.endAsync();
  });
});
