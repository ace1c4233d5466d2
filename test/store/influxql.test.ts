import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore, type Store } from "../../store/index.ts";
import {
  duration,
  ident,
  influxql,
  join,
  literal,
  micros,
  regex,
  trusted,
  whereDevicePage,
  whereWindow,
} from "../../store/influxql.ts";
import { freshDb, influxUrl } from "../support/influx.ts";

describe("the influxql template", () => {
  it("quotes every interpolated string as a literal, escaping backslashes, quotes and newlines", () => {
    expect(influxql`"device" = ${"kiosk-1"}`.text).toBe(`"device" = 'kiosk-1'`);
    expect(influxql`x = ${"it's"}`.text).toBe(`x = 'it\\'s'`);
    expect(influxql`x = ${"back\\slash"}`.text).toBe(`x = 'back\\\\slash'`);
    expect(influxql`x = ${"two\nlines"}`.text).toBe(`x = 'two\\nlines'`);
    expect(literal("a\\'b")).toBe(`'a\\\\\\'b'`);
  });

  it("keeps an injection attempt inside its literal", () => {
    expect(influxql`SELECT * FROM t WHERE "device" = ${"a' OR 1=1 --"}`.text).toBe(
      `SELECT * FROM t WHERE "device" = 'a\\' OR 1=1 --'`,
    );
    expect(influxql`SELECT * FROM t WHERE "device" = ${`x'; DROP MEASUREMENT telemetry; --`}`.text).toBe(
      `SELECT * FROM t WHERE "device" = 'x\\'; DROP MEASUREMENT telemetry; --'`,
    );
    // A backslash cannot eat the escape of the quote after it.
    expect(influxql`x = ${"a\\' OR 1=1"}`.text).toBe(`x = 'a\\\\\\' OR 1=1'`);
  });

  it("quotes names with ident(), escaping double quotes and backslashes", () => {
    expect(influxql`SELECT ${ident("temp")} FROM ${ident("telemetry")}`.text).toBe(`SELECT "temp" FROM "telemetry"`);
    expect(ident(`x"; DROP DATABASE refeed; "`).text).toBe(`"x\\"; DROP DATABASE refeed; \\""`);
    expect(ident(`a\\"b`).text).toBe(`"a\\\\\\"b"`);
  });

  it("writes numbers, booleans, times and durations in InfluxQL's own forms", () => {
    expect(influxql`n = ${42} AND r = ${-1.5} AND b = ${true}`.text).toBe("n = 42 AND r = -1.5 AND b = true");
    expect(influxql`time >= ${new Date("2026-01-02T03:04:05.678Z")}`.text).toBe(`time >= '2026-01-02T03:04:05.678Z'`);
    expect(influxql`time >= now() - ${duration(30_000)}`.text).toBe("time >= now() - 30000ms");
    expect(influxql`time <= ${micros(1_700_000_000_000_123)}`.text).toBe("time <= 1700000000000123u");
    expect(() => influxql`n = ${Number.NaN}`).toThrow(RangeError);
    expect(() => influxql`n = ${Number.POSITIVE_INFINITY}`).toThrow(RangeError);
    expect(() => influxql`t = ${new Date("not a date")}`).toThrow(RangeError);
    expect(() => duration(-1)).toThrow(RangeError);
    expect(() => duration(1.5)).toThrow(RangeError);
  });

  it("writes regex literals whose slashes cannot end the literal early", () => {
    expect(influxql`x =~ ${regex("^a.b$")}`.text).toBe("x =~ /^a.b$/");
    expect(regex("a/b").text).toBe("/a\\/b/");
    // Already escaped stays escaped once; an escaped backslash before a slash does not hide the slash.
    expect(regex("a\\/b").text).toBe("/a\\/b/");
    expect(regex("a\\\\/ OR 1=1").text).toBe("/a\\\\\\/ OR 1=1/");
    expect(() => regex("a\nb")).toThrow(RangeError);
    expect(() => regex("trailing\\")).toThrow(RangeError);
  });

  it("nests fragments as written and joins them", () => {
    const conditions = join(
      ["a", "b'c"].map((d) => influxql`"device" = ${d}`),
      " OR ",
    );
    expect(influxql`WHERE (${conditions}) AND ${trusted(`"status" = 'proposed'`)}`.text).toBe(
      `WHERE ("device" = 'a' OR "device" = 'b\\'c') AND "status" = 'proposed'`,
    );
    expect(whereWindow({ from: 1000, to: 2000, devices: ["d1", "d'2"] }, influxql`"x" > ${0}`).text).toBe(
      `WHERE time >= 1000000u AND time <= 2000000u AND ("device" = 'd1' OR "device" = 'd\\'2') AND "x" > 0`,
    );
    expect(whereDevicePage({ device: "d1", from: 5, untilMicros: 9000, limit: 3 }).text).toBe(
      `WHERE "device" = 'd1' AND time >= 5000u AND time <= 9000u ORDER BY time DESC LIMIT 3`,
    );
  });
});

describe("the influxql template against InfluxDB", () => {
  let store: Store;
  const hostile = [
    `a' OR 1=1 --`,
    `x"; DROP MEASUREMENT m; "`,
    `back\\slash`,
    `a\\' OR 1=1`,
    `'; DROP DATABASE db; --`,
  ];

  beforeAll(async () => {
    store = await openStore({
      url: influxUrl(),
      db: freshDb("influxql"),
      influxdPath: "influxd",
      connectTimeoutMs: 5000,
      dataDir: "unused",
      log: pino({ level: "silent" }),
    });
    // Line protocol by hand: the tag value as written, with only what line protocol escapes (space, comma, =).
    const tag = (v: string) => v.replace(/[ ,=]/g, (c) => `\\${c}`);
    const lines = ["plain", ...hostile].map((device, i) => `m,device=${tag(device)} v=${i} ${i + 1}`);
    await store.writeLines(lines.join("\n"), 5000);
  });
  afterAll(() => store.close());

  it("finds exactly the point of a hostile id, and the id changes nothing else", async () => {
    for (const [i, device] of hostile.entries()) {
      const rows = await store.query(influxql`SELECT "v", "device" FROM ${ident("m")} WHERE "device" = ${device}`);
      expect(rows.map((r) => [r.device, r.v])).toEqual([[device, i + 1]]);
    }
    const all = await store.query(influxql`SELECT count("v") FROM ${ident("m")}`);
    expect(all[0]?.count).toBe(hostile.length + 1);
  });

  it("runs batched statements built from fragments, each answering its rows", async () => {
    const statements = join(
      ["plain", hostile[0]!].map((d) => influxql`SELECT "v" FROM "m" WHERE "device" = ${d}`),
      "; ",
    );
    const [plain = [], first = []] = await store.exec(statements);
    expect(plain.map((r) => r.v)).toEqual([0]);
    expect(first.map((r) => r.v)).toEqual([1]);
  });
});
