import { createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxql } from "../../store/influxql.ts";
import { influxQuery } from "../support/influx.ts";
import {
  api,
  connectDevice,
  ingestCaughtUp,
  provision,
  startTestPlatform,
  type TestPlatform,
} from "../support/platform.ts";

const ME = "cust-dl-me";
const OTHER = "cust-dl-other";

/**
 * A refused record about a customer without consent keeps only a keyed hash of them in its dead letter
 * (test/e2e/dead-letters-consent.test.ts). Whoever holds the id and the data dir can still link that hash
 * to the customer, so erasing them must take those dead letters too, and leave others' alone.
 */
describe("erasure and the dead letters that name a subject only by its keyed hash", () => {
  let t: TestPlatform;
  let client: MqttClient;
  let hashOf: (subject: string) => string;
  beforeAll(async () => {
    t = await startTestPlatform();
    const device = await provision(t, { id: "kiosk-erase-dl", kind: "kiosk" });
    client = await connectDevice(t.mqttUrl, device.id, device.token);
    const key = Buffer.from((await readFile(path.join(t.dataDir, "subject-hash.key"), "utf8")).trim(), "hex");
    hashOf = (subject) => createHmac("sha256", key).update(subject).digest("hex");
    const publish = (payload: string) => client.publishAsync(`devices/${device.id}/events`, payload, { qos: 1 });
    // Neither customer consented to anything: each refused record keeps the hash, not the id.
    await publish(JSON.stringify({ subject: ME, name: "page_view", surplus: 1 }));
    await publish(JSON.stringify({ subject: ME, name: "page_view", surplus: 2 }));
    await publish(JSON.stringify({ subject: OTHER, name: "page_view", surplus: 3 }));
    // Not JSON, naming both: one dead letter with both hashes.
    await publish(`[{"subject": "${ME}", "name": "a"}, {"subject": "${OTHER}", "name": "b"}`);
    await ingestCaughtUp(t);
  });
  afterAll(async () => {
    await client?.endAsync(true);
    await t?.close();
  });

  const hashes = async () =>
    (await influxQuery(t.db, influxql`SELECT subject_hash FROM dead_letters`)).map((r) => String(r.subject_hash));

  it("has the hashed dead letters to begin with", async () => {
    expect((await hashes()).sort()).toEqual(
      [hashOf(ME), hashOf(ME), hashOf(OTHER), `${hashOf(ME)},${hashOf(OTHER)}`].sort(),
    );
  });

  it("deletes the customer's, takes their hash out of a shared one, keeps the other customer's, and says so", async () => {
    const res = await api(t, "DELETE", `/api/subjects/${ME}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({
      subject: ME,
      deleted: { dead_letters: 2 },
      redacted: { dead_letters: 1 },
      remaining: {},
    });
    expect((await hashes()).sort()).toEqual([hashOf(OTHER), hashOf(OTHER)]);
    // Nothing that is left can be linked to them, by the id or by the hash.
    const everything = JSON.stringify(await influxQuery(t.db, influxql`SELECT * FROM dead_letters`));
    expect(everything).not.toContain(hashOf(ME));
    expect(everything).not.toContain(ME);
  });

  it("stays erased after a restart, and a second erasure finds nothing more", async () => {
    await t.restart();
    expect((await hashes()).sort()).toEqual([hashOf(OTHER), hashOf(OTHER)]);
    const again = await api(t, "DELETE", `/api/subjects/${ME}`);
    expect(again.status).toBe(200);
    expect((again.body as { deleted: Record<string, number> }).deleted.dead_letters ?? 0).toBe(0);
  });
});
