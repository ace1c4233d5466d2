import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxQuery, rowsOnce } from "../support/influx.ts";
import { api, connectDevice, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { polling } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

const SUBJECT = "cust-42";

describe("consent: opt-in per purpose decides what is stored about a subject", () => {
  let t: TestPlatform;
  let client: MqttClient;
  let device: { id: string; token: string };
  let n = 0;
  beforeAll(async () => {
    t = await startTestPlatform();
    device = await provision(t, { id: "atm-1", kind: "atm" });
    client = await connectDevice(t.mqttUrl, device.id, device.token);
  });
  afterAll(async () => {
    await client?.endAsync();
    await t?.close();
  });

  /**
   * Publishes one record of each kind about the subject, each marked with a
   * fresh number, then a device-only marker with that number behind them.
   */
  const publishAll = async (subject: string | undefined = SUBJECT) => {
    n += 1;
    const s = subject ? { subject } : {};
    await client.publishAsync(`devices/${device.id}/telemetry`, JSON.stringify({ ...s, metrics: { n } }), { qos: 1 });
    await client.publishAsync(
      `devices/${device.id}/events`,
      JSON.stringify({ ...s, name: "withdrawal", props: { n } }),
      { qos: 1 },
    );
    await client.publishAsync(
      `devices/${device.id}/feedback`,
      JSON.stringify({ ...s, rating: 4, text: `visit ${n}, great` }),
      { qos: 1 },
    );
    await client.publishAsync(`devices/${device.id}/telemetry`, JSON.stringify({ metrics: { marker: n } }), { qos: 1 });
    return n;
  };
  /**
   * Waits until InfluxDB has the marker behind the records number `k`: the
   * evidence that ingest got through them, before asserting what is not stored.
   * (A PUBACK means durable on disk; InfluxDB has the record moments later.)
   */
  const settled = (k: number) => rowsOnce(t.db, influxql`SELECT marker FROM telemetry WHERE marker = ${k}`);
  /** Which kinds of the subject's record number `k` are stored, linked to the subject, once its marker is in InfluxDB. */
  const storedFor = async (k: number) => {
    await settled(k);
    const kinds: string[] = [];
    if ((await influxQuery(t.db, influxql`SELECT n FROM telemetry WHERE subject = ${SUBJECT} AND n = ${k}`)).length)
      kinds.push("telemetry");
    if (
      (
        await influxQuery(
          t.db,
          influxql`SELECT props FROM events WHERE subject = ${SUBJECT} AND props = ${`{"n":${k}}`}`,
        )
      ).length
    )
      kinds.push("events");
    if (
      (
        await influxQuery(
          t.db,
          influxql`SELECT text FROM feedback WHERE subject = ${SUBJECT} AND text = ${`visit ${k}, great`}`,
        )
      ).length
    )
      kinds.push("feedback");
    return kinds;
  };
  const anyPointOf = async (k: number) =>
    (await influxQuery(t.db, influxql`SELECT n FROM telemetry WHERE n = ${k}`)).length +
    (await influxQuery(t.db, influxql`SELECT props FROM events WHERE props = ${`{"n":${k}}`}`)).length +
    (await influxQuery(t.db, influxql`SELECT text FROM feedback WHERE text = ${`visit ${k}, great`}`)).length;
  const consent = (body: unknown, subject = SUBJECT) => api(t, "PUT", `/api/subjects/${subject}/consent`, body);

  it("stores nothing about a subject without a consent record, counts it, and is not an error to the device", async () => {
    const k = await publishAll();
    await settled(k);
    expect(await anyPointOf(k)).toBe(0); // not even unlinked
    expect(client.connected).toBe(true);
    const text = await (await fetch(`${t.http}/metrics`)).text();
    for (const kind of ["telemetry", "event", "feedback"])
      expect(text).toContain(`refeed_ingest_no_consent_total{kind="${kind}"} 1`);
    // A device-only message (no subject) is operational data and is stored.
    const own = await publishAll("");
    await expect.poll(() => anyPointOf(own), polling).toBe(3);
    // Over HTTP the device is told how many records were withheld.
    const res = await fetch(`${t.http}/api/ingest/telemetry`, {
      method: "POST",
      headers: { authorization: `Bearer ${device.token}`, "content-type": "application/json" },
      body: JSON.stringify({ subject: SUBJECT, metrics: { n: -1 } }),
    });
    expect([res.status, await res.json()]).toEqual([200, { accepted: 0, withheld: 1, refused: [] }]);
  });

  it("stores each kind once its purpose is opted in to, and stops at the next message after revocation", async () => {
    expect(await consent({ analytics: true })).toEqual({
      status: 200,
      body: { subject: SUBJECT, consent: { analytics: true, personalization: false, feedback: false } },
    });
    const first = await publishAll();
    await expect.poll(() => storedFor(first), polling).toEqual(["telemetry"]);

    await consent({ personalization: true, feedback: true });
    const second = await publishAll();
    await expect.poll(() => storedFor(second), polling).toEqual(["telemetry", "events", "feedback"]);
    const [feedback] = await influxQuery(
      t.db,
      influxql`SELECT rating, text, sentiment FROM feedback WHERE subject = ${SUBJECT}`,
    );
    expect(feedback).toMatchObject({ rating: 4, sentiment: expect.any(Number) });
    expect(Number(feedback!.sentiment)).toBeGreaterThan(0);

    await consent({ analytics: false });
    const third = await publishAll();
    await expect.poll(() => storedFor(third), polling).toEqual(["events", "feedback"]);
  });

  it("keeps the history in InfluxDB and rebuilds consent from it after a restart", async () => {
    const res = await api(t, "GET", `/api/subjects/${SUBJECT}/consent`);
    expect(res.status).toBe(200);
    expect(res.body.consent).toEqual({ analytics: false, personalization: true, feedback: true });
    expect((res.body.history as Array<Record<string, unknown>>).map((h) => [h.purpose, h.granted, h.by])).toEqual([
      ["analytics", true, "admin"],
      ["personalization", true, "admin"],
      ["feedback", true, "admin"],
      ["analytics", false, "admin"],
    ]);
    const rows = await influxQuery(t.db, influxql`SELECT purpose, granted FROM consent WHERE subject = ${SUBJECT}`);
    expect(rows.map((r) => [r.purpose, r.granted])).toEqual([
      ["analytics", true],
      ["personalization", true],
      ["feedback", true],
      ["analytics", false],
    ]);

    await client.endAsync();
    await t.restart();
    client = await connectDevice(t.mqttUrl, device.id, device.token);
    const after = await publishAll();
    await expect.poll(() => storedFor(after), polling).toEqual(["events", "feedback"]);
    expect((await api(t, "GET", `/api/subjects/${SUBJECT}/consent`)).body.history).toHaveLength(4);
  });

  it("refuses unknown purposes, non-boolean values, bad subject ids and callers without the admin token", async () => {
    expect(await consent({ marketing: true })).toMatchObject({
      status: 400,
      body: {
        error: "invalid_body",
        message: expect.stringMatching(
          /^marketing: unknown purpose; known purposes: analytics, personalization, feedback$/,
        ),
      },
    });
    expect(await consent({ analytics: "yes" })).toMatchObject({
      status: 400,
      body: { message: "analytics: expected true (opt in) or false (opt out)" },
    });
    expect(await consent({})).toMatchObject({
      status: 400,
      body: { message: expect.stringMatching(/at least one purpose/) },
    });
    expect(await consent([true])).toMatchObject({ status: 400 });
    expect(await consent({ analytics: true }, "bad,subject")).toMatchObject({
      status: 400,
      body: { error: "invalid_subject" },
    });
    expect((await api(t, "PUT", `/api/subjects/${SUBJECT}/consent`, { analytics: true }, null)).status).toBe(401);
    expect((await api(t, "PUT", `/api/subjects/${SUBJECT}/consent`, { analytics: true }, device.token)).status).toBe(
      401,
    );
    // Nothing changed.
    expect((await api(t, "GET", `/api/subjects/${SUBJECT}/consent`)).body.consent).toEqual({
      analytics: false,
      personalization: true,
      feedback: true,
    });
  });
});
