import { describe, expect, it } from "vitest";
import { createParser } from "../../ingest/parse.ts";

const now = Date.parse("2026-01-01T00:00:00Z");
const parser = createParser({ maxFutureSkewMs: 60_000, maxRecords: 10, maxFields: 4, maxPayloadBytes: 8192 });
type Ch = "telemetry" | "events" | "feedback" | "acks";
const parse = (channel: Ch, body: unknown) =>
  parser(channel, typeof body === "string" ? body : JSON.stringify(body), { device: "d1", now });

describe("message contract", () => {
  it("accepts the DESIGN.md payloads and normalises ts", () => {
    expect(parse("telemetry", { metrics: { temp: 21.5, on: true, mode: "eco" } })).toMatchObject({
      refused: [],
      messages: [
        {
          kind: "telemetry",
          device: "d1",
          ts: now,
          tsFromDevice: false,
          metrics: { temp: 21.5, on: true, mode: "eco" },
        },
      ],
    });
    expect(
      parse("events", {
        ts: "2025-12-31T23:00:00Z",
        subject: "cust-1",
        name: "withdrawal",
        props: { amount: 100, note: null },
      }),
    ).toMatchObject({
      messages: [
        {
          kind: "event",
          ts: Date.parse("2025-12-31T23:00:00Z"),
          tsFromDevice: true,
          subject: "cust-1",
          name: "withdrawal",
          props: { amount: 100, note: null },
        },
      ],
    });
    expect(parse("acks", { action: "act_1", status: "accepted" })).toMatchObject({
      acks: [{ device: "d1", action: "act_1", status: "accepted" }],
    });
    // A device may name itself.
    expect(parse("telemetry", { device: "d1", ts: now - 5, metrics: { a: 1 } }).messages).toHaveLength(1);
  });

  it("scores feedback text for sentiment", () => {
    const [good] = parse("feedback", { rating: 5, text: "I love it, great service" }).messages;
    const [bad] = parse("feedback", { text: "terrible, slow and broken" }).messages;
    const [none] = parse("feedback", { rating: 3 }).messages;
    expect(good).toMatchObject({ kind: "feedback", rating: 5, sentiment: expect.any(Number) });
    expect(good?.kind === "feedback" && good.sentiment).toBeGreaterThan(0.5);
    expect(bad?.kind === "feedback" && bad.sentiment).toBeLessThan(-0.5);
    expect(none).toMatchObject({ sentiment: undefined });
  });

  it("judges the records of a batch one by one", () => {
    const result = parse("telemetry", [
      { metrics: { a: 1 } },
      { metrics: { a: "x".repeat(300) } },
      { ts: now - 1000, metrics: { a: 2 } },
    ]);
    expect(result.messages.map((m) => m.kind === "telemetry" && m.metrics.a)).toEqual([1, 2]);
    expect(result.refused).toEqual([
      {
        index: 1,
        reason: "value_too_long",
        detail: expect.stringMatching(/^\[1\]\.metrics\.a: /),
        payload: expect.stringContaining('"metrics"'),
      },
    ]);
  });

  const bad: Array<[string, Ch, unknown, string]> = [
    ["malformed JSON", "telemetry", "{metrics:", "malformed_json"],
    ["NaN literal", "telemetry", '{"metrics":{"a":NaN}}', "malformed_json"],
    ["a payload over the byte limit", "telemetry", JSON.stringify({ metrics: { a: "x".repeat(9000) } }), "too_large"],
    ["no metrics", "telemetry", {}, "invalid_shape"],
    ["empty metrics", "telemetry", { metrics: {} }, "invalid_shape"],
    ["unknown field", "telemetry", { metrics: { a: 1 }, extra: 1 }, "invalid_shape"],
    ["a record that is not an object", "telemetry", [5], "invalid_shape"],
    ["object as metric value", "telemetry", { metrics: { a: { b: 1 } } }, "invalid_shape"],
    ["metric name with a space", "telemetry", { metrics: { "a b": 1 } }, "invalid_name"],
    ["metric name starting with _", "telemetry", { metrics: { _field: 1 } }, "invalid_name"],
    ["reserved metric name", "telemetry", { metrics: { time: 1 } }, "invalid_name"],
    ["too many metrics", "telemetry", { metrics: { a: 1, b: 2, c: 3, d: 4, e: 5 } }, "too_many_fields"],
    ["number overflowing to Infinity", "telemetry", '{"metrics":{"a":1e999}}', "not_finite"],
    ["future timestamp", "telemetry", { ts: now + 3_600_000, metrics: { a: 1 } }, "future_timestamp"],
    ["timestamp that is not a date", "telemetry", { ts: "yesterday", metrics: { a: 1 } }, "invalid_timestamp"],
    ["timestamp in seconds", "telemetry", { ts: 1_767_225_600, metrics: { a: 1 } }, "invalid_timestamp"],
    ["subject with a comma", "telemetry", { subject: "a,b", metrics: { a: 1 } }, "invalid_subject"],
    ["another device's id", "telemetry", { device: "d2", metrics: { a: 1 } }, "device_mismatch"],
    ["event without a name", "events", { props: {} }, "invalid_shape"],
    ["rating out of range", "feedback", { rating: 6 }, "invalid_shape"],
    ["feedback with neither rating nor text", "feedback", {}, "invalid_shape"],
    ["feedback text over 4000 characters", "feedback", { text: "y".repeat(1900) + " ".repeat(2101) }, "value_too_long"],
    ["ack with an unknown status", "acks", { action: "a", status: "maybe" }, "invalid_shape"],
    ["empty batch", "telemetry", [], "invalid_shape"],
    ["batch too large", "telemetry", Array.from({ length: 11 }, () => ({ metrics: { a: 1 } })), "too_many_records"],
  ];
  it.each(bad)("refuses %s", (_what, channel, body, reason) => {
    const result = parse(channel, body);
    expect(result.messages).toEqual([]);
    expect(result.refused).toHaveLength(1);
    expect(result.refused[0]).toMatchObject({ reason });
    expect(result.refused[0]!.detail.length).toBeGreaterThan(0);
  });

  it("refuses bytes that are not UTF-8", () => {
    const result = parser("telemetry", Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { device: "d1", now });
    expect(result.refused).toMatchObject([{ reason: "malformed_json", detail: "payload is not valid UTF-8" }]);
  });
});
