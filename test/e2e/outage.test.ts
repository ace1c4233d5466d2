import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { freePort, startInfluxd, type ManagedInfluxd } from "../../store/influxd.ts";
import { freshDb, influxQuery } from "../support/influx.ts";
import { provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

const log = pino({ level: "silent" });

/** A device publishing numbered telemetry at QoS 1, a few messages in flight, remembering what was acknowledged. */
function publisher(client: MqttClient, device: string, options: { withTs: (seq: number) => boolean; base: number }) {
  const acked = new Set<number>();
  let next = 0;
  let running = true;
  const sent: Array<Promise<void>> = [];
  const lane = async () => {
    while (running) {
      const seq = next++;
      const payload = JSON.stringify({ ...(options.withTs(seq) ? { ts: options.base + seq } : {}), metrics: { seq } });
      // Like firmware: a publish the client library gave up on (connection closed) is sent again once reconnected.
      for (;;) {
        try {
          await client.publishAsync(`devices/${device}/telemetry`, payload, { qos: 1 });
          break;
        } catch {
          await new Promise((resolve) => (client.connected ? resolve(undefined) : client.once("connect", resolve)));
        }
      }
      acked.add(seq);
    }
  };
  for (let i = 0; i < 8; i += 1) sent.push(lane());
  return {
    acked,
    get published() {
      return next;
    },
    async stop() {
      running = false;
      await Promise.all(sent);
    },
  };
}

const metric = async (t: TestPlatform, name: string): Promise<number> => {
  const text = await (await fetch(`${t.http}/metrics`)).text();
  const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return match ? Number(match[1]) : NaN;
};

const connect = (t: TestPlatform, id: string, token: string, reconnectPeriod = 0) =>
  new Promise<MqttClient>((resolve, reject) => {
    const client = mqtt.connect(t.mqttUrl, {
      clientId: id,
      username: id,
      password: token,
      reconnectPeriod,
      connectTimeout: 5000,
    });
    client.on("error", () => undefined); // refusals show up as closes; the client reconnects by itself
    client.once("connect", () => resolve(client));
    client.once("close", () => !client.connected && reject(new Error("could not connect")));
  });

async function storedSeqs(db: string, url: string, device: string): Promise<number[]> {
  const rows = await influxQuery(db, influxql`SELECT seq FROM telemetry WHERE device = ${device}`, url);
  return rows.map((r) => Number(r.seq));
}

/**
 * Waits until every acknowledged seq is in InfluxDB, and answers what is
 * stored: an acknowledgement means durable on disk (commit log or spool), and
 * InfluxDB has the message moments later, also once the spool is replayed.
 */
function storedOnce(db: string, url: string, device: string, acked: Set<number>): Promise<number[]> {
  return waitFor(
    async () => {
      const stored = await storedSeqs(db, url, device);
      const have = new Set(stored);
      const missing = [...acked].filter((seq) => !have.has(seq));
      if (missing.length > 0)
        throw new Error(
          `${missing.length} acknowledged messages not in InfluxDB yet, e.g. ${missing.slice(0, 10).join(", ")}`,
        );
      return stored;
    },
    `every acknowledged message of ${device} in InfluxDB`,
    15_000,
  );
}

function expectEachOnce(stored: number[], acked: Set<number>) {
  const counts = new Map<number, number>();
  for (const seq of stored) counts.set(seq, (counts.get(seq) ?? 0) + 1);
  const missing = [...acked].filter((seq) => !counts.has(seq));
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([seq]) => seq);
  expect({ missing, duplicated }).toEqual({ missing: [], duplicated: [] });
}

describe("acknowledged means durable: InfluxDB stops while devices publish at QoS 1", () => {
  let dir: string;
  let influxd: ManagedInfluxd;
  let port: number;
  let t: TestPlatform;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-outage-"));
    port = await freePort();
    influxd = await startInfluxd({ dataDir: dir, log, port });
  });
  afterEach(async () => {
    await t?.close();
    await influxd.close();
    await rm(dir, { recursive: true, force: true });
  });

  const start = (ingest: Record<string, number>) =>
    startTestPlatform(
      {
        influx: { url: influxd.url, db: freshDb("outage") },
        ingest: { batchSize: 100, flushMs: 20, writeTimeoutMs: 2000, ...ingest },
      } as never,
      {
        limits: { publishRate: 100_000, publishBurst: 100_000 },
      },
    );

  it("keeps acknowledging from the disk spool, then replays it: every acknowledged message is stored exactly once", async () => {
    t = await start({});
    const base = Date.now() - 600_000;
    const devices = await Promise.all([0, 1, 2].map((i) => provision(t, { id: `pub-${i}` })));
    const clients = await Promise.all(devices.map((d) => connect(t, d.id, d.token)));
    // Half the messages carry the device's ts, half are timed at receipt: both must come out once.
    const pubs = clients.map((c, i) => publisher(c, devices[i]!.id, { withTs: (seq) => seq % 2 === 0, base }));
    const total = () => pubs.reduce((n, p) => n + p.acked.size, 0);

    await waitFor(() => total() >= 150, "acknowledged messages before the outage");
    await influxd.close();
    const atOutage = total();
    // Still acknowledged while InfluxDB is down: the spool holds them.
    await waitFor(() => total() >= atOutage + 300, "acknowledged messages during the outage", 15_000);
    expect(await metric(t, "refeed_ingest_spooling")).toBe(1);
    expect(await metric(t, "refeed_ingest_spool_points")).toBeGreaterThan(0);
    expect((await fetch(`${t.http}/healthz`)).status).toBe(503);

    influxd = await startInfluxd({ dataDir: dir, log, port });
    const atRestart = total();
    await waitFor(() => total() >= atRestart + 150, "acknowledged messages after the restart", 15_000);
    await Promise.all(pubs.map((p) => p.stop()));
    await waitFor(async () => (await metric(t, "refeed_ingest_spooling")) === 0, "the spool to be replayed", 15_000);
    expect(await metric(t, "refeed_ingest_spool_points")).toBe(0);
    expect(await metric(t, "refeed_ingest_spooled_points_total")).toBeGreaterThan(0);

    for (const [i, d] of devices.entries())
      expectEachOnce(await storedOnce(t.db, influxd.url, d.id, pubs[i]!.acked), pubs[i]!.acked);
    expect(clients.every((c) => c.connected)).toBe(true);
    await Promise.all(clients.map((c) => c.endAsync()));
  }, 60_000);

  it("keeps what was spooled across a restart of Refeed and replays it at the next start", async () => {
    t = await start({});
    const device = await provision(t, { id: "restarted" });
    const client = await connect(t, device.id, device.token);
    await influxd.close();
    for (let seq = 0; seq < 20; seq += 1)
      await client.publishAsync(`devices/${device.id}/telemetry`, JSON.stringify({ metrics: { seq } }), { qos: 1 });
    await client.endAsync();
    await t.platform.close(); // InfluxDB is still down: the acknowledged messages exist only in the spool

    influxd = await startInfluxd({ dataDir: dir, log, port });
    await t.restart();
    await waitFor(
      async () => (await storedSeqs(t.db, influxd.url, device.id)).length === 20,
      "the spool of the last run to be replayed",
      15_000,
    );
    expectEachOnce(await storedSeqs(t.db, influxd.url, device.id), new Set(Array.from({ length: 20 }, (_, i) => i)));
  }, 60_000);

  it("stops acknowledging when the spool is full (devices retry) and loses nothing", async () => {
    t = await start({ spoolMaxBytes: 16 * 1024 });
    const base = Date.now() - 600_000;
    const device = await provision(t, { id: "retrier" });
    const client = await connect(t, device.id, device.token, 100);
    let closes = 0;
    client.on("close", () => (closes += 1));
    // Every message carries its ts, so a redelivery of a message that was stored but not acknowledged overwrites it.
    const pub = publisher(client, device.id, { withTs: () => true, base });

    await waitFor(() => pub.acked.size >= 50, "acknowledged messages before the outage");
    await influxd.close();
    // The spool fills; then publishes are refused and the connection is closed instead of acknowledged.
    await waitFor(
      async () => (await metric(t, "refeed_ingest_refused_points_total")) > 0 && closes > 0,
      "the full spool to refuse a publish",
      15_000,
    );
    const stalled = pub.acked.size;
    expect(pub.published).toBeGreaterThan(stalled);

    influxd = await startInfluxd({ dataDir: dir, log, port });
    // The device's retries go through once the spool drains.
    await waitFor(() => pub.acked.size >= stalled + 100, "acknowledged messages after the restart", 20_000);
    await pub.stop();
    await waitFor(async () => (await metric(t, "refeed_ingest_spooling")) === 0, "the spool to be replayed", 15_000);

    const stored = await storedOnce(t.db, influxd.url, device.id, pub.acked);
    expectEachOnce(stored, pub.acked);
    // Nothing the device sent was dropped: every message it published was acknowledged in the end.
    expect(pub.acked.size).toBe(pub.published);
    await client.endAsync();
  }, 60_000);
});
