import { createHmac } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxql, regex } from "../../store/influxql.ts";
import { rowsOnce } from "../support/influx.ts";
import {
  api,
  connectDevice,
  ingestCaughtUp,
  provision,
  startTestPlatform,
  type TestPlatform,
} from "../support/platform.ts";

/**
 * A refused record about a customer is no more stored than an admitted one:
 * without consent for its purpose, its dead letter keeps the reason, the
 * device, the topic and a keyed hash of the customer, never their id or the
 * payload. With consent, the dead letter is a copy as before.
 */
describe("dead letters about a subject", () => {
  let t: TestPlatform;
  let device: { id: string; token: string };
  let client: MqttClient;
  beforeAll(async () => {
    t = await startTestPlatform({}, { logs: true });
    device = await provision(t, { id: "kiosk-dl", kind: "kiosk" });
    client = await connectDevice(t.mqttUrl, device.id, device.token);
    expect((await api(t, "PUT", "/api/subjects/cust-agreed/consent", { personalization: true })).status).toBe(200);
  });
  afterAll(async () => {
    await client?.endAsync(true);
    await t?.close();
  });

  const lettersAbout = async (marker: string) => {
    await ingestCaughtUp(t);
    return rowsOnce(
      t.db,
      influxql`SELECT * FROM dead_letters WHERE device = ${device.id} AND detail =~ ${regex(marker)}`,
    );
  };

  it("without consent: no subject id and no payload in any field or tag, and the keyed hash of the subject", async () => {
    const event = { subject: "cust-nothing-42", name: "page_view", props: { page: "home" }, surplus_a: 1 };
    await client.publishAsync(`devices/${device.id}/events`, JSON.stringify(event), { qos: 1 });
    const [row, ...more] = await lettersAbout("surplus_a");
    expect(more).toHaveLength(0);
    expect(row).toMatchObject({
      device: device.id,
      channel: "events",
      reason: "invalid_shape",
      topic: `devices/${device.id}/events`,
    });
    expect(row!.payload ?? null).toBeNull();
    for (const value of Object.values(row!)) {
      expect(String(value)).not.toContain("cust-nothing-42");
      expect(String(value)).not.toContain("page_view");
    }
    // HMAC-SHA256 under the install's key, kept (mode 0600) in the data dir.
    const keyFile = path.join(t.dataDir, "subject-hash.key");
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    const key = Buffer.from((await readFile(keyFile, "utf8")).trim(), "hex");
    expect(row!.subject_hash).toBe(createHmac("sha256", key).update("cust-nothing-42").digest("hex"));
    // Neither the log nor anything else the platform said names the customer or the key.
    const logged = JSON.stringify(t.logs);
    expect(logged).not.toContain("cust-nothing-42");
    expect(logged).not.toContain(key.toString("hex"));
  });

  it("without consent, also when the payload is not valid JSON", async () => {
    const broken = `{"subject": "cust-nothing-42", "name": "surplus_b" "props": {}}`;
    await client.publishAsync(`devices/${device.id}/events`, broken, { qos: 1 });
    const [row] = await lettersAbout("JSON");
    expect(row).toMatchObject({ reason: "malformed_json", channel: "events" });
    expect(row!.payload ?? null).toBeNull();
    for (const value of Object.values(row!)) expect(String(value)).not.toContain("cust-nothing-42");
    expect(row!.subject_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("with consent for the purpose: the dead letter keeps the copy, as before", async () => {
    const event = { subject: "cust-agreed", name: "page_view", surplus_c: 1 };
    await client.publishAsync(`devices/${device.id}/events`, JSON.stringify(event), { qos: 1 });
    const [row] = await lettersAbout("surplus_c");
    expect(row).toMatchObject({ reason: "invalid_shape", channel: "events", payload: JSON.stringify(event) });
    expect(row!.subject_hash ?? null).toBeNull();
  });
});
