import { describe, expect, it } from "vitest";
import { parsePayload } from "../../ingest/parse.ts";

const opts = { device: "d1", now: Date.parse("2026-01-01T00:00:00Z"), maxFutureSkewMs: 60_000, maxBatch: 10 };
const parse = (channel: "telemetry" | "events" | "feedback" | "acks", body: unknown) =>
  parsePayload(channel, typeof body === "string" ? body : JSON.stringify(body), opts);

describe("message contract", () => {
  it("accepts the DESIGN.md payloads and normalises ts", () => {
    expect(parse("telemetry", { metrics: { temp: 21.5, on: true, mode: "eco" } })).toMatchObject({
      ok: true,
      messages: [{ kind: "telemetry", device: "d1", ts: opts.now, tsFromDevice: false, metrics: { temp: 21.5, on: true, mode: "eco" } }],
    });
    expect(parse("events", { ts: "2025-12-31T23:00:00Z", subject: "cust-1", name: "withdrawal", props: { amount: 100 } })).toMatchObject({
      ok: true,
      messages: [{ kind: "event", ts: Date.parse("2025-12-31T23:00:00Z"), tsFromDevice: true, subject: "cust-1", name: "withdrawal" }],
    });
    expect(parse("feedback", { rating: 2, text: "too slow" })).toMatchObject({ ok: true, messages: [{ kind: "feedback", rating: 2, text: "too slow" }] });
    expect(parse("acks", { action: "act_1", status: "accepted" })).toMatchObject({ ok: true, acks: [{ device: "d1", action: "act_1", status: "accepted" }] });
  });

  it("accepts a batch of records in one publish", () => {
    const result = parse("telemetry", [{ metrics: { a: 1 } }, { ts: opts.now - 1000, metrics: { a: 2 } }]);
    expect(result.ok && "messages" in result && result.messages.length).toBe(2);
  });

  const bad: Array<[string, "telemetry" | "events" | "feedback" | "acks", unknown, string]> = [
    ["malformed JSON", "telemetry", "{metrics:", "malformed_json"],
    ["no metrics", "telemetry", {}, "invalid_shape"],
    ["empty metrics", "telemetry", { metrics: {} }, "invalid_shape"],
    ["unknown field", "telemetry", { metrics: { a: 1 }, extra: 1 }, "invalid_shape"],
    ["object as metric value", "telemetry", { metrics: { a: { b: 1 } } }, "invalid_shape"],
    ["metric name with a space", "telemetry", { metrics: { "a b": 1 } }, "invalid_shape"],
    ["reserved metric name", "telemetry", { metrics: { time: 1 } }, "invalid_shape"],
    ["huge number as exponent overflow", "telemetry", '{"metrics":{"a":1e999}}', "invalid_shape"],
    ["future timestamp", "telemetry", { ts: opts.now + 3_600_000, metrics: { a: 1 } }, "future_timestamp"],
    ["timestamp that is not a date", "telemetry", { ts: "yesterday", metrics: { a: 1 } }, "invalid_shape"],
    ["subject with a comma", "telemetry", { subject: "a,b", metrics: { a: 1 } }, "invalid_shape"],
    ["event without a name", "events", { props: {} }, "invalid_shape"],
    ["rating out of range", "feedback", { rating: 6 }, "invalid_shape"],
    ["feedback with neither rating nor text", "feedback", {}, "invalid_shape"],
    ["ack with an unknown status", "acks", { action: "a", status: "maybe" }, "invalid_shape"],
    ["empty batch", "telemetry", [], "invalid_shape"],
    ["batch too large", "telemetry", Array.from({ length: 11 }, () => ({ metrics: { a: 1 } })), "invalid_shape"],
  ];
  it.each(bad)("refuses %s", (_what, channel, body, reason) => {
    const result = parse(channel, body);
    expect(result).toMatchObject({ ok: false, reason });
    expect(!result.ok && result.detail.length).toBeGreaterThan(0);
  });

  it("names the record and field in a batch", () => {
    const result = parse("telemetry", [{ metrics: { a: 1 } }, { metrics: { a: "x".repeat(300) } }]);
    expect(!result.ok && result.detail).toMatch(/^\[1\]\.metrics\.a: /);
  });
});
