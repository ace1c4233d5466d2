import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { atLeast, rowsOnce } from "../support/influx.ts";
import { ADMIN_TOKEN, connectDevice, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

describe("POST /api/ingest/{channel} with a device token", () => {
  let t: TestPlatform;
  let device: { id: string; token: string };
  beforeAll(async () => {
    t = await startTestPlatform();
    device = await provision(t, { id: "kiosk-http", kind: "kiosk" });
  });
  afterAll(() => t?.close());

  const post = async (channel: string, body: string, token: string | null = device.token) => {
    const res = await fetch(`${t.http}/api/ingest/${channel}`, {
      method: "POST",
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), "content-type": "application/json" },
      body,
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it("stores telemetry, events and feedback (with its sentiment score) once they are durable", async () => {
    expect(await post("telemetry", JSON.stringify({ metrics: { temp: 22.5, door: "closed" } }))).toEqual({
      status: 200,
      body: { accepted: 1, withheld: 0, refused: [] },
    });
    expect(
      await post(
        "events",
        JSON.stringify([
          { name: "page_view", props: { page: "home" } },
          { name: "page_view", props: { page: "shares" } },
        ]),
      ),
    ).toMatchObject({ status: 200, body: { accepted: 2 } });
    expect(
      await post("feedback", JSON.stringify({ rating: 1, text: "awful, the screen is broken and slow" })),
    ).toMatchObject({ status: 200, body: { accepted: 1 } });
    // The answer came once the points were durable on disk; InfluxDB has them moments later.
    expect(await rowsOnce(t.db, influxql`SELECT temp, door FROM telemetry WHERE device = ${device.id}`)).toEqual([
      expect.objectContaining({ temp: 22.5, door: "closed" }),
    ]);
    expect(
      (
        await rowsOnce(
          t.db,
          influxql`SELECT props FROM events WHERE device = ${device.id} AND event = 'page_view'`,
          atLeast(2),
        )
      ).length,
    ).toBe(2);
    const [feedback] = await rowsOnce(
      t.db,
      influxql`SELECT rating, text, sentiment FROM feedback WHERE device = ${device.id}`,
    );
    expect(feedback).toMatchObject({ rating: 1, text: "awful, the screen is broken and slow" });
    expect(Number(feedback!.sentiment)).toBeLessThan(0);
  });

  it("answers which records of a batch were refused and stores the rest", async () => {
    const res = await post(
      "telemetry",
      JSON.stringify([{ metrics: { temp: 1 } }, { metrics: { "bad name": 2 } }, { metrics: { temp: 3 } }]),
    );
    expect(res).toEqual({
      status: 200,
      body: {
        accepted: 2,
        withheld: 0,
        refused: [
          { index: 1, reason: "invalid_name", message: expect.stringMatching(/^\[1\]\.metrics\.bad name: names are/) },
        ],
      },
    });
  });

  it("takes acks for the actions topic's counterpart", async () => {
    expect(await post("acks", JSON.stringify({ action: "act_unknown", status: "declined" }))).toMatchObject({
      status: 200,
      body: { accepted: 1 },
    });
  });

  it("refuses callers without a device token and unknown channels", async () => {
    expect(await post("telemetry", "{}", null)).toMatchObject({
      status: 401,
      body: { error: "unauthorized", message: expect.stringMatching(/device token/) },
    });
    expect(await post("telemetry", "{}", ADMIN_TOKEN)).toMatchObject({
      status: 401,
      body: { message: "unknown or invalid device token" },
    });
    expect(await post("telemetry", "{}", `${device.token}x`)).toMatchObject({ status: 401 });
    expect(await post("state", "{}")).toMatchObject({
      status: 404,
      body: { message: "no ingest channel 'state'; use telemetry, events, feedback, acks" },
    });
    expect(await post("telemetry", JSON.stringify({ metrics: { blob: "x".repeat(1_100_000) } }))).toMatchObject({
      status: 413,
      body: { error: "body_too_large" },
    });
  });
});

describe("GET /metrics", () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(() => t?.close());

  it("serves Prometheus text: messages by kind, batch sizes, write latency, spool depth and connected clients", async () => {
    const device = await provision(t, { id: "metered" });
    const client = await connectDevice(t.mqttUrl, device.id, device.token);
    await client.publishAsync(
      `devices/${device.id}/telemetry`,
      JSON.stringify([{ metrics: { a: 1 } }, { metrics: { a: 2 } }]),
      { qos: 1 },
    );
    await client.publishAsync(`devices/${device.id}/events`, JSON.stringify({ name: "tap" }), { qos: 1 });
    // The PUBACKs mean durable on disk; the write metrics count once InfluxDB has taken the points, moments later.
    await waitFor(
      async () =>
        /^refeed_ingest_write_seconds_bucket\{le="\+Inf",from="direct"\} [1-9]/m.test(
          await (await fetch(`${t.http}/metrics`)).text(),
        ),
      "a direct write to InfluxDB in the metrics",
    );
    const res = await fetch(`${t.http}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toContain('refeed_ingest_messages_total{kind="telemetry",transport="mqtt"} 2');
    expect(text).toContain('refeed_ingest_messages_total{kind="event",transport="mqtt"} 1');
    expect(text).toContain('refeed_ingest_dead_letters_total{reason="invalid_shape"} 0');
    expect(text).toMatch(/^refeed_ingest_batch_points_count\{from="direct"\} [1-9]/m);
    expect(text).toMatch(/^refeed_ingest_write_seconds_bucket\{le="\+Inf",from="direct"\} [1-9]/m);
    expect(text).toContain("refeed_ingest_spool_points 0");
    expect(text).toContain("refeed_mqtt_connected_clients 1");
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    await client.endAsync();
  });
});
