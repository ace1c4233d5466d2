import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { findInterpolatedInfluxQL, scanTree } from "../support/interpolated-influxql.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
// Fixtures are source text in plain strings: the tree scan reads them as string literals, not as queries.
const found = (source: string) => findInterpolatedInfluxQL(source).map((f) => `${f.line}: ${f.why}`);

describe("InfluxQL is built only with the influxql tag", () => {
  it("finds no query in the tree built by interpolation or concatenation", () => {
    expect(scanTree(root)).toEqual([]);
  });

  it("flags an untagged template that interpolates into InfluxQL", () => {
    expect(found("const q = `SELECT * FROM telemetry WHERE device = '${id}'`;")).toEqual([
      "1: InfluxQL built by interpolation",
    ]);
    expect(found('store.exec(`DROP SERIES FROM ${m} WHERE "subject" = ${s}`);')).toEqual([
      "1: InfluxQL built by interpolation",
    ]);
    expect(found("\n\nconst w = `WHERE time >= ${from}u`;")).toEqual(["3: InfluxQL built by interpolation"]);
    expect(found('const q = `SHOW TAG VALUES WITH KEY = "${key}"`;')).toEqual(["1: InfluxQL built by interpolation"]);
  });

  it("flags a query nested in another template's interpolation", () => {
    expect(found("const q = influxql`SELECT * FROM m ${where(`WHERE d = '${id}'`)}`;")).toEqual([
      "1: InfluxQL built by interpolation",
    ]);
  });

  it("flags InfluxQL built by concatenation", () => {
    expect(found(`const q = "SELECT * FROM telemetry WHERE device = '" + id + "'";`)).toEqual([
      "1: InfluxQL built by concatenation",
    ]);
    expect(found(`const q = prefix + ' GROUP BY "device"';`)).toEqual(["1: InfluxQL built by concatenation"]);
  });

  it("flags trusted() given interpolated text", () => {
    expect(found("const c = trusted(`\"device\" = '${id}'`);")).toEqual(["1: trusted() given interpolated text"]);
  });

  it("lets through tagged queries, constant text, prose marked as such, and comments", () => {
    expect(found('const q = influxql`SELECT * FROM ${ident(m)} WHERE "device" = ${id}`;')).toEqual([]);
    expect(found("const q = influxql`SHOW MEASUREMENTS`; const c = trusted(`\"status\" = 'proposed'`);")).toEqual([]);
    expect(found("const line = `telemetry,device=${d} temp=${t} ${us}`;")).toEqual([]);
    expect(found("// `SELECT * FROM m WHERE d = '${id}'` was the old way\nconst x = 1;")).toEqual([]);
    expect(found("// not InfluxQL: a report\nconst r = `thirteen queries GROUP BY device over ${n} days`;")).toEqual(
      [],
    );
    // A regex literal with a quote in it does not derail the scan of what follows.
    expect(found("const r = /'/; const q = `SELECT * FROM m WHERE d = '${id}'`;")).toEqual([
      "1: InfluxQL built by interpolation",
    ]);
  });
});
