import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import mqtt from "mqtt";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { freePort, startInfluxd, type ManagedInfluxd } from "../../store/influxd.ts";
import { influxql } from "../../store/influxql.ts";
import { readSnapshot, SNAPSHOT_FILE } from "../../snapshot/file.ts";
import { freshDb, influxQuery } from "../support/influx.ts";
import { runCli, type Running } from "../support/process.ts";
import { waitFor } from "../support/wait.ts";

const log = pino({ level: "silent" });
const ADMIN = `rfa_${randomBytes(24).toString("base64url")}`;

/**
 * Issue 16, item 2: Refeed killed (-9) while InfluxDB is down starts again
 * from its views' snapshot instead of waiting for InfluxDB, lets the devices
 * it knows in, acknowledges their data into the commit log and spool, and
 * stores all of it once InfluxDB is back.
 */
describe("refeed start while InfluxDB is down", () => {
  let dir: string;
  let port: number;
  let influxd: ManagedInfluxd | undefined;
  let db: string;
  const runs: Running[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-snapshot-start-"));
    port = await freePort();
    influxd = await startInfluxd({ dataDir: path.join(dir, "influxd"), log, port });
    db = freshDb("snap");
  });
  afterEach(async () => {
    for (const run of runs.splice(0))
      if (run.child.exitCode === null && run.child.signalCode === null) {
        run.child.kill("SIGKILL");
        await run.exited;
      }
    await influxd?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const start = (env: Record<string, string> = {}) => {
    const run = runCli(["start"], {
      REFEED_INFLUX_URL: `http://127.0.0.1:${port}`,
      REFEED_INFLUX_DB: db,
      REFEED_DATA_DIR: path.join(dir, "data"),
      REFEED_ADMIN_TOKEN: ADMIN,
      REFEED_MQTT_HOST: "127.0.0.1",
      REFEED_HTTP_HOST: "127.0.0.1",
      REFEED_MQTT_PORT: "0",
      REFEED_HTTP_PORT: "0",
      REFEED_SNAPSHOT_START_WAIT: "1s",
      REFEED_SNAPSHOT_EVERY: "200ms",
      ...env,
    });
    runs.push(run);
    return run;
  };
  const listening = async (run: Running) => {
    const line = await run.logLine((l) => l.msg === "refeed listening", "the listening line", 60_000);
    return { line, http: String(line.http), mqttUrl: String(line.mqtt) };
  };
  const call = async (http: string, method: string, url: string, body?: unknown) => {
    const res = await fetch(`${http}${url}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
  };
  const snapshotFile = () => path.join(dir, "data", SNAPSHOT_FILE);
  const url = () => `http://127.0.0.1:${port}`;

  it("after kill -9 during an outage it starts from the snapshot, takes the devices' data, and stores every acknowledged record once InfluxDB is back", async () => {
    const first = start();
    const { http } = await listening(first);
    const device = (await call(http, "POST", "/api/devices", { id: "atm-7", subject: "cust-1", kind: "atm" })).body as {
      id: string;
      token: string;
    };
    expect(device.token).toBeDefined();
    // Without this opt-in a record about cust-1 is acknowledged and not stored: the consent view must come back too.
    expect((await call(http, "PUT", "/api/subjects/cust-1/consent", { analytics: true })).status).toBe(200);
    await waitFor(async () => {
      const read = await readSnapshot(snapshotFile(), { url: url(), db });
      const topics = new Set(read.ok ? read.snapshot.events.map((e) => e.topic) : []);
      return topics.has("registry") && topics.has("consent") && topics.has("subject_links");
    }, "the device, its link and the consent in the views snapshot");

    await influxd!.close();
    influxd = undefined;
    first.child.kill("SIGKILL");
    await first.exited;

    const second = start();
    const { line, http: http2, mqttUrl } = await listening(second);
    expect(line).toMatchObject({ degraded: true, views: "snapshot" });
    const said = await second.logLine(
      (l) => String(l.msg).startsWith("InfluxDB is unreachable: starting degraded"),
      "the degraded start",
    );
    expect(said).toMatchObject({ level: 40, influx: url() });
    const health = await fetch(`${http2}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: "degraded", influx: "unreachable", views: "snapshot" });
    // A change cannot be recorded while InfluxDB is down: it is refused, not half made.
    const refused = await call(http2, "POST", "/api/devices", { id: "tv-new" });
    expect(refused).toMatchObject({ status: 503, body: { error: "unavailable" } });
    // So is a read that needs InfluxDB itself.
    expect(await call(http2, "GET", "/api/subjects/cust-1/export")).toMatchObject({
      status: 503,
      body: { error: "unavailable" },
    });

    const client = await mqtt.connectAsync(mqttUrl, {
      clientId: device.id,
      username: device.id,
      password: device.token,
      reconnectPeriod: 0,
    });
    const acked: number[] = [];
    await Promise.all(
      Array.from({ length: 30 }, async (_, seq) => {
        const payload = JSON.stringify({ subject: "cust-1", metrics: { seq } });
        await client.publishAsync(`devices/${device.id}/telemetry`, payload, { qos: 1 });
        acked.push(seq);
      }),
    );
    acked.sort((a, b) => a - b);
    await client.endAsync();

    influxd = await startInfluxd({ dataDir: path.join(dir, "influxd"), log, port });
    await waitFor(
      async () => {
        const res = await fetch(`${http2}/healthz`);
        const body = (await res.json()) as Record<string, unknown>;
        return res.status === 200 && body.views === "rebuilt" && body;
      },
      "healthz ok once the views caught up",
      20_000,
    );
    await second.logLine((l) => l.msg === "views caught up from InfluxDB: no longer degraded", "the catch-up line");
    const stored = await waitFor(
      async () => {
        const rows = await influxQuery(
          db,
          influxql`SELECT seq, subject FROM telemetry WHERE device = ${device.id}`,
          url(),
        );
        return rows.length >= acked.length && rows;
      },
      "every acknowledged record in InfluxDB",
      20_000,
    );
    expect(stored.map((r) => Number(r.seq)).sort((a, b) => a - b)).toEqual(acked);
    expect(new Set(stored.map((r) => r.subject))).toEqual(new Set(["cust-1"]));
    // Caught up: changes are recorded again.
    expect((await call(http2, "POST", "/api/devices", { id: "tv-new" })).status).toBe(201);
  }, 90_000);

  it("does not start from a snapshot that does not verify, and says why", async () => {
    const first = start();
    const { http } = await listening(first);
    await call(http, "POST", "/api/devices", { id: "atm-8" });
    await waitFor(async () => (await readSnapshot(snapshotFile(), { url: url(), db })).ok, "a views snapshot");
    first.child.kill("SIGTERM");
    await first.exited;
    await influxd!.close();
    influxd = undefined;
    // One changed byte in the content: the checksum no longer vouches for it.
    const bytes = await readFile(snapshotFile());
    const at = bytes.indexOf("atm-8");
    bytes[at] = "b".charCodeAt(0);
    await writeFile(snapshotFile(), bytes);

    const second = start({ REFEED_INFLUX_CONNECT_TIMEOUT_MS: "1000" });
    const why = await second.logLine(
      (l) => l.msg === "InfluxDB is unreachable and the views snapshot is not used: it does not verify",
      "the refusal of the snapshot",
    );
    expect(why).toMatchObject({ reason: "unverified", detail: "the checksum does not match the content" });
    expect(await second.exited).toBe(1);
    expect(second.stdout.join("\n")).toContain("REFEED_INFLUX_UNREACHABLE");
  }, 60_000);
});
