import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { freePort, startInfluxd, type ManagedInfluxd } from "../../store/influxd.ts";
import { ident, influxql } from "../../store/influxql.ts";
import { freshDb, influxQuery } from "../support/influx.ts";
import { api, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";

const log = pino({ level: "silent" });
const rule = (temp: number) =>
  `id: cool-theme\non: telemetry\nwhen: msg.metrics.temp > ${temp}\nthen:\n  - set: ui.theme\n    value: cool\n`;

/** Rule files edited while InfluxDB is down, and a start from the views' snapshot meanwhile. */
describe("rule files at a start from the views snapshot", () => {
  let dir: string;
  let port: number;
  let influxd: ManagedInfluxd | undefined;
  let t: TestPlatform | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-snapshot-rules-"));
    port = await freePort();
    influxd = await startInfluxd({ dataDir: dir, log, port });
  });
  afterEach(async () => {
    await t?.close();
    await influxd?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("runs the files as they are now, and records their new versions once InfluxDB is back", async () => {
    const db = freshDb("snaprules");
    t = await startTestPlatform({
      influx: { url: influxd!.url, db, connectTimeoutMs: 5000 },
      snapshot: { every: "100ms", startWait: "300ms" },
    } as never);
    await writeFile(path.join(t.rulesDir, "cool-theme.yaml"), rule(30));
    const listed = async () => (await api(t!, "GET", "/api/rules")).body as unknown as Array<{ version: number }>;
    await waitFor(async () => (await listed())[0]?.version === 1, "version 1 recorded");
    await t.platform.close();
    await influxd!.close();
    influxd = undefined;

    await writeFile(path.join(t.rulesDir, "cool-theme.yaml"), rule(35));
    await t.restart();
    expect((await api(t, "GET", "/healthz", undefined, null)).body).toMatchObject({
      status: "degraded",
      views: "snapshot",
    });
    // The file as it is now runs, though InfluxDB has not recorded it yet.
    expect(JSON.stringify((await api(t, "GET", "/api/rules/cool-theme")).body)).toContain("msg.metrics.temp > 35");

    influxd = await startInfluxd({ dataDir: dir, log, port });
    await waitFor(
      async () => (await api(t!, "GET", "/healthz", undefined, null)).body.views === "rebuilt",
      "the catch-up",
      20_000,
    );
    const versions = await waitFor(async () => {
      const rows = await influxQuery(db, influxql`SELECT version, text FROM ${ident("rule_versions")}`, influxd!.url);
      return rows.length === 2 && rows;
    }, "the new version recorded in InfluxDB");
    expect(versions.map((r) => [r.version, String(r.text).includes("> 35")])).toEqual([
      [1, false],
      [2, true],
    ]);
  }, 60_000);
});
