import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { atLeast, influxQuery, rowsOnce } from "../support/influx.ts";
import { connectDevice, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { influxql } from "../../store/influxql.ts";

type Channel = "telemetry" | "events" | "feedback" | "acks";
const DEVICE = "corpus-dev";
const MAX_PAYLOAD = 16 * 1024;
const hour = 3_600_000;
const json = (v: unknown) => JSON.stringify(v);
const metrics = (m: Record<string, unknown>) => json({ metrics: m });
const many = (n: number, prefix = "m") => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, i]));

/**
 * [what, channel, payload, expected dead-letter reason, the copy it keeps if not the payload's first KiB].
 * Each has exactly one thing wrong.
 */
const corpus: Array<[string, Channel, string | Buffer, string, string?]> = [
  // not JSON at all
  ["truncated JSON", "telemetry", "{metrics:", "malformed_json"],
  ["NaN literal", "telemetry", '{"metrics":{"a":NaN}}', "malformed_json"],
  ["Infinity literal", "telemetry", '{"metrics":{"a":Infinity}}', "malformed_json"],
  ["empty payload", "telemetry", "", "malformed_json"],
  ["trailing garbage", "telemetry", '{"metrics":{"a":1}} x', "malformed_json"],
  ["single quotes", "telemetry", "{'metrics':{'a':1}}", "malformed_json"],
  ["bytes that are not UTF-8", "telemetry", Buffer.from([0x7b, 0x22, 0x6d, 0xff, 0xfe, 0x22, 0x7d]), "malformed_json"],
  ["leading zero", "telemetry", '{"metrics":{"a":01}}', "malformed_json"],
  // JSON, wrong shape or types
  ["no metrics", "telemetry", "{}", "invalid_shape"],
  ["empty metrics", "telemetry", metrics({}), "invalid_shape"],
  ["metrics as an array", "telemetry", json({ metrics: [1, 2] }), "invalid_shape"],
  ["object as a metric value", "telemetry", metrics({ a: { b: 1 } }), "invalid_shape"],
  ["null metric", "telemetry", metrics({ a: null }), "invalid_shape"],
  ["array metric", "telemetry", metrics({ a: [1] }), "invalid_shape"],
  ["unknown field", "telemetry", json({ metrics: { a: 1 }, extra: true }), "invalid_shape"],
  ["a bare string", "telemetry", json("just a string"), "invalid_shape"],
  ["a bare number", "telemetry", "42", "invalid_shape"],
  ["null", "telemetry", "null", "invalid_shape"],
  ["empty batch", "telemetry", "[]", "invalid_shape"],
  ["batch of a non-object", "telemetry", "[1]", "invalid_shape", "1"],
  [
    "arrays nested 8,000 deep",
    "telemetry",
    `[${"[".repeat(8000)}${"]".repeat(8000)}]`,
    "invalid_shape",
    "(nested too deeply to copy)",
  ],
  [
    "a metric nested 2,000 objects deep",
    "telemetry",
    `{"metrics":{"a":${'{"b":'.repeat(2000)}1${"}".repeat(2000)}}}`,
    "invalid_shape",
  ],
  ["event without a name", "events", json({ props: {} }), "invalid_shape"],
  ["event name as a number", "events", json({ name: 42 }), "invalid_shape"],
  ["rating 6", "feedback", json({ rating: 6 }), "invalid_shape"],
  ["rating as a string", "feedback", json({ rating: "5" }), "invalid_shape"],
  ["rating 4.5", "feedback", json({ rating: 4.5 }), "invalid_shape"],
  ["empty feedback", "feedback", "{}", "invalid_shape"],
  ["blank feedback text", "feedback", json({ text: "   " }), "invalid_shape"],
  ["ack with an unknown status", "acks", json({ action: "act_x", status: "maybe" }), "invalid_shape"],
  ["ack without an action", "acks", json({ status: "applied" }), "invalid_shape"],
  // names: injection attempts and unsafe characters
  ["metric name with ',' and '='", "telemetry", metrics({ "temp,device=evil": 1 }), "invalid_name"],
  ["metric name with a space", "telemetry", metrics({ "temp value": 1 }), "invalid_name"],
  [
    "metric name with a newline and a second point",
    "telemetry",
    metrics({ "temp\nevil,device=x v=1": 1 }),
    "invalid_name",
  ],
  ["metric name with '='", "telemetry", metrics({ "a=b": 1 }), "invalid_name"],
  ["metric name with an accent", "telemetry", metrics({ tempé: 1 }), "invalid_name"],
  ["metric name with a zero-width space", "telemetry", metrics({ "te\u200bmp": 1 }), "invalid_name"],
  ["metric name 'time'", "telemetry", metrics({ time: 1 }), "invalid_name"],
  ["metric name 'device' (a tag key)", "telemetry", metrics({ device: 1 }), "invalid_name"],
  ["metric name __proto__", "telemetry", '{"metrics":{"__proto__":1}}', "invalid_name"],
  ["__proto__ beside a good metric", "telemetry", '{"metrics":{"a":1,"__proto__":{"polluted":true}}}', "invalid_name"],
  ["__proto__ at the top", "telemetry", '{"metrics":{"a":1},"__proto__":{"isAdmin":true}}', "invalid_name"],
  ["metric name _field", "telemetry", metrics({ _field: 1 }), "invalid_name"],
  ["empty metric name", "telemetry", metrics({ "": 1 }), "invalid_name"],
  ["metric name of 65 characters", "telemetry", metrics({ ["a".repeat(65)]: 1 }), "invalid_name"],
  ["event name with ',' and '='", "events", json({ name: "withdrawal,device=x" }), "invalid_name"],
  ["event name with a space", "events", json({ name: "with drawal" }), "invalid_name"],
  ["event name with a quote and InfluxQL", "events", json({ name: 'x"; DROP MEASUREMENT telemetry' }), "invalid_name"],
  ["event prop name with a space", "events", json({ name: "w", props: { "bad key": 1 } }), "invalid_name"],
  // bounded fields
  ["65 metrics", "telemetry", metrics(many(65)), "too_many_fields"],
  ["65 event props", "events", json({ name: "w", props: many(65, "p") }), "too_many_fields"],
  // finite numbers
  ["1e999", "telemetry", '{"metrics":{"a":1e999}}', "not_finite"],
  ["-1e999", "telemetry", '{"metrics":{"a":-1e999}}', "not_finite"],
  ["a 400-digit number", "telemetry", `{"metrics":{"a":1${"0".repeat(400)}}}`, "not_finite"],
  ["a prop of 1e400", "events", '{"name":"w","props":{"amount":1e400}}', "not_finite"],
  // bounded strings
  ["a metric string of 257 characters", "telemetry", metrics({ mode: "x".repeat(257) }), "value_too_long"],
  ["feedback text of 4001 characters", "feedback", json({ text: "ok ".repeat(1334).slice(0, 4001) }), "value_too_long"],
  [
    "a prop string of 300 characters",
    "events",
    json({ name: "w", props: { note: "n".repeat(300) } }),
    "value_too_long",
  ],
  // timestamps
  ["ts 'yesterday'", "telemetry", json({ ts: "yesterday", metrics: { a: 1 } }), "invalid_timestamp"],
  ["ts in seconds", "telemetry", json({ ts: 1_767_225_600, metrics: { a: 1 } }), "invalid_timestamp"],
  ["negative ts", "telemetry", json({ ts: -1, metrics: { a: 1 } }), "invalid_timestamp"],
  ["fractional ts", "telemetry", json({ ts: 1_767_225_600_000.5, metrics: { a: 1 } }), "invalid_timestamp"],
  [
    "ISO ts without an offset",
    "telemetry",
    json({ ts: "2026-01-01T00:00:00", metrics: { a: 1 } }),
    "invalid_timestamp",
  ],
  ["ts 1e20", "telemetry", json({ ts: 1e20, metrics: { a: 1 } }), "invalid_timestamp"],
  ["ts true", "telemetry", json({ ts: true, metrics: { a: 1 } }), "invalid_timestamp"],
  ["ts an hour ahead", "telemetry", json({ ts: Date.now() + hour, metrics: { a: 1 } }), "future_timestamp"],
  [
    "ISO ts a day ahead",
    "events",
    json({ ts: new Date(Date.now() + 24 * hour).toISOString(), name: "w" }),
    "future_timestamp",
  ],
  // subjects (tag values): injection attempts and unsafe characters
  ["subject with a comma", "telemetry", json({ subject: "cust,1", metrics: { a: 1 } }), "invalid_subject"],
  ["subject with a space", "telemetry", json({ subject: "cust 1", metrics: { a: 1 } }), "invalid_subject"],
  ["subject with '='", "telemetry", json({ subject: "cust=1", metrics: { a: 1 } }), "invalid_subject"],
  [
    "subject with a newline",
    "feedback",
    json({ subject: "cust\nfeedback,device=x rating=1", rating: 1 }),
    "invalid_subject",
  ],
  ["subject with unicode", "telemetry", json({ subject: "çustomer", metrics: { a: 1 } }), "invalid_subject"],
  ["subject of 129 characters", "telemetry", json({ subject: "s".repeat(129), metrics: { a: 1 } }), "invalid_subject"],
  ["subject as a number", "telemetry", json({ subject: 12345, metrics: { a: 1 } }), "invalid_subject"],
  ["subject null", "telemetry", json({ subject: null, metrics: { a: 1 } }), "invalid_subject"],
  // identity
  ["another device's id", "telemetry", json({ device: "thermo-1", metrics: { a: 1 } }), "device_mismatch"],
  ["another device's id in an event", "events", json({ device: "atm-2", name: "withdrawal" }), "device_mismatch"],
  ["a device id that is a number", "telemetry", json({ device: 123, metrics: { a: 1 } }), "device_mismatch"],
  [
    "another device's id in an ack",
    "acks",
    json({ device: "x", action: "act_x", status: "applied" }),
    "device_mismatch",
  ],
  // size
  ["a payload over the byte limit", "telemetry", metrics({ blob: "b".repeat(MAX_PAYLOAD) }), "too_large"],
  [
    "a batch of 501 records",
    "telemetry",
    json(Array.from({ length: 501 }, () => ({ metrics: { a: 1 } }))),
    "too_many_records",
  ],
];

/** Values that must be stored verbatim, not interpreted: line protocol cannot be injected through a field. */
const tricky = [
  "a,b=c d",
  "line one\nnext,device=evil v=1 1",
  'quote " and backslash \\',
  "trailing backslash \\",
  "ünïcödé 🎉 中文",
  "tab\tand\r\ncrlf",
  '" injected=1,device=evil',
];

describe("ingest contract: a corpus of bad messages through a real MQTT client", () => {
  let t: TestPlatform;
  let client: MqttClient;
  let token: string;
  beforeAll(async () => {
    // The whole corpus goes out at once: above the broker's per-device publish rate, which is not under test here.
    t = await startTestPlatform(
      { ingest: { batchSize: 1000, flushMs: 20, maxPayloadBytes: MAX_PAYLOAD, maxFutureSkewMs: 60_000 } } as never,
      { limits: { publishRate: 100_000, publishBurst: 100_000 } },
    );
    ({ token } = await provision(t, { id: DEVICE }));
    client = await connectDevice(t.mqttUrl, DEVICE, token);
  });
  afterAll(async () => {
    await client?.endAsync();
    await t?.close();
  });

  it("has at least 50 bad messages", () => {
    expect(corpus.length).toBeGreaterThanOrEqual(50);
  });

  it("dead-letters each with its reason, keeps the connection, and stores every good message around them", async () => {
    const publishes: Array<Promise<unknown>> = [];
    let seq = 0;
    const good = () => {
      const value = tricky[seq % tricky.length]!;
      publishes.push(client.publishAsync(`devices/${DEVICE}/telemetry`, metrics({ seq, label: value }), { qos: 1 }));
      seq += 1;
    };
    for (const [, channel, payload] of corpus) {
      good();
      publishes.push(client.publishAsync(`devices/${DEVICE}/${channel}`, payload, { qos: 1 }));
    }
    good();
    // Every PUBACK arrives: a bad message is acknowledged once its dead letter is durable (on disk; InfluxDB has it moments later).
    await Promise.all(publishes);
    expect(client.connected).toBe(true);

    const letters = await rowsOnce(
      t.db,
      influxql`SELECT reason, channel, topic, detail, payload FROM dead_letters WHERE device = ${DEVICE}`,
      atLeast(corpus.length),
    );
    expect(letters.map((l) => [l.channel, l.reason])).toEqual(corpus.map(([, channel, , reason]) => [channel, reason]));
    for (const [i, [what, channel, payload, , copy]] of corpus.entries()) {
      const letter = letters[i]!;
      expect(letter.topic, what).toBe(`devices/${DEVICE}/${channel}`);
      expect(String(letter.detail).length, what).toBeGreaterThan(0);
      expect(String(letter.payload), what).toBe(copy ?? payload.toString("utf8").slice(0, 1024));
    }

    const stored = await rowsOnce(
      t.db,
      influxql`SELECT seq, label FROM telemetry WHERE device = ${DEVICE}`,
      atLeast(seq),
    );
    expect(stored.map((r) => r.seq)).toEqual(Array.from({ length: seq }, (_, i) => i));
    expect(stored.map((r) => r.label)).toEqual(Array.from({ length: seq }, (_, i) => tricky[i % tricky.length]));
    // Nothing leaked into another measurement, series or field.
    const measurements = (await influxQuery(t.db, influxql`SHOW MEASUREMENTS`)).map((m) => m.name);
    expect(measurements).toContain("telemetry");
    expect(measurements).not.toContain("next"); // the line a tricky value tried to start
    expect(measurements).not.toContain("events"); // no good event was sent yet
    expect(await influxQuery(t.db, influxql`SHOW SERIES WHERE "device" = 'evil' OR "device" = 'x'`)).toEqual([]);
    const devices = await influxQuery(t.db, influxql`SHOW TAG VALUES FROM telemetry WITH KEY = "device"`);
    expect(devices.map((d) => d.value)).toEqual([DEVICE]);
    const fields = await influxQuery(t.db, influxql`SHOW FIELD KEYS FROM telemetry`);
    expect(fields.map((f) => f.fieldKey).sort()).toEqual(["label", "seq"]);

    // Counted by reason.
    const text = await (await fetch(`${t.http}/metrics`)).text();
    const expected = new Map<string, number>();
    for (const [, , , reason] of corpus) expected.set(reason, (expected.get(reason) ?? 0) + 1);
    for (const [reason, n] of expected)
      expect(text, reason).toContain(`refeed_ingest_dead_letters_total{reason="${reason}"} ${n}`);
    expect(text).toContain(`refeed_ingest_messages_total{kind="telemetry",transport="mqtt"} ${seq}`);
  });

  it("refuses the same corpus over HTTP with the same reasons, in the answer and as dead letters", async () => {
    const device = await provision(t, { id: "http-dev" });
    for (const [what, channel, payload, reason] of corpus) {
      const res = await fetch(`${t.http}/api/ingest/${channel}`, {
        method: "POST",
        headers: { authorization: `Bearer ${device.token}`, "content-type": "application/json" },
        body: typeof payload === "string" ? payload : new Uint8Array(payload),
      });
      const body = (await res.json()) as { error: string; message: string };
      expect([res.status, body.error], what).toEqual([400, reason]);
      expect(body.message.length, what).toBeGreaterThan(0);
    }
    // Each answer came once its dead letter was durable on disk; InfluxDB has them moments later.
    const letters = await rowsOnce(
      t.db,
      influxql`SELECT reason, topic FROM dead_letters WHERE device = 'http-dev'`,
      atLeast(corpus.length),
    );
    expect(letters.map((l) => l.reason)).toEqual(corpus.map(([, , , reason]) => reason));
    expect(letters[0]).toMatchObject({ topic: "POST /api/ingest/telemetry" });
  });

  it("stores the good records of a batch and dead-letters only the bad one", async () => {
    await client.publishAsync(
      `devices/${DEVICE}/events`,
      json([{ name: "batch_ok", props: { n: 1 } }, { name: "bad name" }, { name: "batch_ok", props: { n: 2 } }]),
      { qos: 1 },
    );
    const rows = await rowsOnce(
      t.db,
      influxql`SELECT props FROM events WHERE device = ${DEVICE} AND event = 'batch_ok'`,
      atLeast(2),
    );
    expect(rows.map((r) => JSON.parse(String(r.props)) as unknown)).toEqual([{ n: 1 }, { n: 2 }]);
    // This batch's dead letter is the one with a record index (the corpus' events are single records).
    const letters = await rowsOnce(
      t.db,
      influxql`SELECT reason, detail, "index" FROM dead_letters WHERE device = ${DEVICE} AND channel = 'events'`,
      (rows) => rows.some((r) => r.index === 1),
    );
    expect(letters.at(-1)).toMatchObject({
      reason: "invalid_name",
      index: 1,
      detail: expect.stringMatching(/^\[1\]\.name: /),
    });
  });

  it("turns a field type conflict into a dead letter with InfluxDB's message, and goes on", async () => {
    await client.publishAsync(`devices/${DEVICE}/telemetry`, metrics({ level: 1.5 }), { qos: 1 });
    await client.publishAsync(`devices/${DEVICE}/telemetry`, metrics({ level: "high" }), { qos: 1 });
    await client.publishAsync(`devices/${DEVICE}/telemetry`, metrics({ level: 2.5 }), { qos: 1 });
    // The PUBACKs mean durable on disk: InfluxDB refuses "high" only when the point reaches it, and then the dead letter follows.
    const letters = await rowsOnce(
      t.db,
      influxql`SELECT detail, payload FROM dead_letters WHERE device = ${DEVICE} AND reason = 'write_rejected'`,
    );
    expect(letters).toEqual([
      expect.objectContaining({
        detail: expect.stringMatching(
          /field type conflict: input field "level" on measurement "telemetry" is type string, already exists as type float/,
        ),
        payload: expect.stringContaining('level="high"'),
      }),
    ]);
    const rows = await rowsOnce(
      t.db,
      influxql`SELECT level FROM telemetry WHERE device = ${DEVICE} AND level > 0`,
      atLeast(2),
    );
    expect(rows.map((r) => r.level)).toEqual([1.5, 2.5]);
    const text = await (await fetch(`${t.http}/metrics`)).text();
    expect(text).toContain('refeed_ingest_dead_letters_total{reason="write_rejected"} 1');
  });
});
