import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, createDevice, DeviceError, fileQueueStore, type Device, type QueuedRecord } from "../../sdk/index.ts";
import { freePort } from "../../store/influxd.ts";
import { influxQuery } from "../support/influx.ts";
import { ingestCaughtUp, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

const quick = { baseMs: 50, maxMs: 300 };

/** The offline queue: what a device records while the platform is away reaches it, in order, when it is back. */
describe("device SDK offline queue", () => {
  let t: TestPlatform;
  let dir: string;
  const devices: Device[] = [];
  beforeAll(async () => {
    // Fixed ports, so the platform comes back where its devices look for it.
    const [mqttPort, httpPort] = [await freePort(), await freePort()];
    t = await startTestPlatform({
      mqtt: { port: mqttPort, host: "127.0.0.1", limits: {}, tls: { port: 0 } } as never,
      http: { port: httpPort, host: "127.0.0.1" } as never,
    });
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-sdk-queue-"));
  });
  afterAll(async () => {
    await Promise.all(devices.map((d) => d.close({ graceMs: 0 })));
    await t?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const seqs = async (device: string) =>
    (await influxQuery(t.db, influxql`SELECT seq FROM telemetry WHERE device = ${device}`)).map((r) => r.seq);

  it("drains in order after the platform comes back, paced under the broker's rate", async () => {
    const { id, token } = await provision(t, { id: "sdk-queue" });
    const device = await connect({ url: t.mqttUrl, id, token, backoff: quick, queue: { max: 100, rate: 40 } });
    devices.push(device);
    await device.telemetry({ metrics: { seq: 0 } });

    await t.stop();
    await waitFor(() => !device.connected, "the device to see the platform gone");
    const settled: number[] = [];
    const queued = Array.from({ length: 30 }, (_, i) =>
      device.telemetry({ metrics: { seq: i + 1 } }).then(() => settled.push(i + 1)),
    );
    expect(device.queued).toBe(30);
    await t.start();
    await Promise.all(queued);
    expect(settled).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(device.queued).toBe(0);
    await ingestCaughtUp(t);
    // Stored in the order they were made (each carries the device clock's ts), none lost, none twice.
    expect(await seqs(id)).toEqual(Array.from({ length: 31 }, (_, i) => i));
  }, 40_000);

  it("drains in order over SSE and HTTP too, for an app that cannot speak MQTT", async () => {
    const { id, token } = await provision(t, { id: "sdk-queue-http" });
    const device = await connect({ url: t.http, id, token, backoff: quick, queue: { max: 100, rate: 40 } });
    devices.push(device);
    await t.stop();
    await waitFor(() => !device.connected, "the app to see the platform gone");
    const queued = Array.from({ length: 10 }, (_, i) => device.telemetry({ metrics: { seq: i } }));
    await t.start();
    await Promise.all(queued);
    await ingestCaughtUp(t);
    expect(await seqs(id)).toEqual(Array.from({ length: 10 }, (_, i) => i));
  }, 40_000);

  it("drops the oldest record when full, and says so", async () => {
    const closedPort = await freePort();
    const device = createDevice({
      url: `mqtt://127.0.0.1:${closedPort}`,
      id: "offline",
      token: "x",
      queue: { max: 3 },
    });
    devices.push(device);
    const dropped: QueuedRecord[] = [];
    device.on("dropped", (record) => dropped.push(record));
    const outcomes = Array.from({ length: 5 }, (_, i) =>
      device.telemetry({ metrics: { seq: i } }).then(
        () => "sent",
        (err: DeviceError) => err.code,
      ),
    );
    expect(device.queued).toBe(3);
    await device.close({ graceMs: 0 });
    expect(await Promise.all(outcomes)).toEqual(["QUEUE_OVERFLOW", "QUEUE_OVERFLOW", "CLOSED", "CLOSED", "CLOSED"]);
    expect(dropped.map((r) => (JSON.parse(r.payload) as { metrics: { seq: number } }).metrics.seq)).toEqual([0, 1]);
  });

  it("without a queue, refuses a publish while offline instead of keeping it unbounded", async () => {
    const device = createDevice({ url: `mqtt://127.0.0.1:${await freePort()}`, id: "offline", token: "x" });
    await expect(device.telemetry({ metrics: { seq: 0 } })).rejects.toMatchObject({ code: "NOT_CONNECTED" });
  });

  it("keeps a file queue across a restart of the device and sends it at the next connection", async () => {
    const { id, token } = await provision(t, { id: "sdk-file-queue" });
    const file = path.join(dir, "queue.json");
    // First run: the platform is not reachable at this address; three readings wait in the file.
    const away = createDevice({
      url: `mqtt://127.0.0.1:${await freePort()}`,
      id,
      token,
      queue: { max: 10, store: fileQueueStore(file) },
    });
    for (let seq = 1; seq <= 3; seq += 1) void away.telemetry({ metrics: { seq } });
    await away.close({ graceMs: 0 });

    // Next run: a new process with the same file, and the platform there.
    const back = await connect({ url: t.mqttUrl, id, token, queue: { max: 10, store: fileQueueStore(file) } });
    devices.push(back);
    await waitFor(() => back.queued === 0, "the queue to drain");
    await ingestCaughtUp(t);
    await waitFor(async () => (await seqs(id)).length === 3 && seqs(id), "the three readings in InfluxDB");
    expect(await seqs(id)).toEqual([1, 2, 3]);
  });
});
