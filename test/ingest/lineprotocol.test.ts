import { describe, expect, it } from "vitest";
import { describeLine, toLine } from "../../ingest/lineprotocol.ts";
import { toDeadLetterLine, toDeviceLine } from "../../ingest/points.ts";

describe("line protocol", () => {
  it("escapes every token so that no value can end it", () => {
    expect(
      toLine("m", [["device", "a,b=c d"]], { "k ey": 'say "hi" \\ bye\nnext,device=x v=1 1', n: 2, ok: true }, 5),
    ).toBe('m,device=a\\,b\\=c\\ d k\\ ey="say \\"hi\\" \\\\ bye\nnext,device=x v=1 1",n=2,ok=true 5');
  });

  it("writes numbers as floats and refuses what InfluxDB cannot hold", () => {
    expect(toLine("m", [], { a: 1, b: -0.5, c: 1e21 }, 1)).toBe("m a=1,b=-0.5,c=1e+21 1");
    expect(() => toLine("m", [], { a: Number.NaN }, 1)).toThrow(/finite/);
    expect(() => toLine("m", [], {}, 1)).toThrow(/at least one field/);
  });

  it("maps messages to the documented schema with the timestamp decided once", () => {
    const base = { device: "d1", subject: "c1", ts: 1_767_225_600_000, tsFromDevice: true };
    expect(toDeviceLine({ ...base, kind: "telemetry", metrics: { temp: 21 } })).toBe(
      "telemetry,device=d1,subject=c1 temp=21 1767225600000000",
    );
    expect(toDeviceLine({ ...base, subject: undefined, kind: "event", name: "tap", props: { x: "1" } })).toBe(
      'events,device=d1,event=tap props="{\\"x\\":\\"1\\"}" 1767225600000000',
    );
    expect(toDeviceLine({ ...base, kind: "feedback", rating: 2, text: "meh", sentiment: -0.5 })).toBe(
      'feedback,device=d1,subject=c1 rating=2,text="meh",sentiment=-0.5 1767225600000000',
    );
    // Timed at receipt: unique microseconds, so two messages in the same millisecond stay two points.
    const a = toDeviceLine({ ...base, tsFromDevice: false, kind: "telemetry", metrics: { v: 1 } });
    const b = toDeviceLine({ ...base, tsFromDevice: false, kind: "telemetry", metrics: { v: 1 } });
    expect(a).not.toBe(b);
  });

  it("reads back the measurement and device of its own lines, for dead letters", () => {
    const letter = toDeadLetterLine({
      device: "d1",
      channel: "telemetry",
      reason: "invalid_name",
      detail: "x",
      topic: "devices/d1/telemetry",
      payload: "é".repeat(2000),
    });
    expect(describeLine(letter)).toEqual({ measurement: "dead_letters", device: "d1" });
    expect(letter).toMatch(
      /^dead_letters,channel=telemetry,device=d1,reason=invalid_name detail="x",topic="devices\/d1\/telemetry",payload="é{1024}" \d+$/,
    );
  });
});
