import { spawn } from "node:child_process";
import { connect as tcpConnect, type Socket } from "node:net";
import path from "node:path";
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import type { MqttConfig } from "../../config/schema.ts";
import { influxql } from "../../store/influxql.ts";
import { rowsOnce } from "../support/influx.ts";
import { connectDevice, logLine, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { ROOT } from "../support/process.ts";
import { waitFor } from "../support/wait.ts";

type Raw = Socket & { closedByServer: boolean };

/** A TCP connection that never sends CONNECT, from `from` (any 127/8 address is this machine). */
function idleSocket(port: number, from = "127.0.0.1"): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ port, host: "127.0.0.1", localAddress: from }) as Raw;
    socket.closedByServer = false;
    socket.on("error", () => undefined); // a reset from the server is an expected answer here
    socket.on("close", () => (socket.closedByServer = true));
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** `count` idle sockets from 127.0.0.1, held by a child process (its descriptors are not the broker's). */
function idleFlood(port: number, count: number) {
  const child = spawn(process.execPath, [path.join(ROOT, "test/support/idle-flood.mjs"), String(port), String(count)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines: Array<Record<string, number>> = [];
  let rest = "";
  child.stdout.on("data", (chunk: Buffer) => {
    const parts = (rest + chunk.toString()).split("\n");
    rest = parts.pop() ?? "";
    for (const line of parts) if (line) lines.push(JSON.parse(line) as Record<string, number>);
  });
  return {
    /** Resolves once every socket has connected (TCP), whatever the broker did with it since. */
    connected: () =>
      waitFor(() => lines.find((l) => l.connected !== undefined), `${count} idle sockets to connect`, 60_000),
    stop: () => child.kill(),
  };
}

/** One series of the platform's /metrics, 0 when it has no sample yet. */
async function metric(t: TestPlatform, series: string): Promise<number> {
  const text = await (await fetch(`${t.http}/metrics`)).text();
  const escaped = series.replace(/[{}"=]/g, (c) => `\\${c}`);
  return Number(new RegExp(`^${escaped} (\\S+)$`, "m").exec(text)?.[1] ?? 0);
}

function mqttWith(preAuth: Partial<MqttConfig["preAuth"]>, limits: Partial<MqttConfig["limits"]> = {}) {
  return { mqtt: { port: 0, host: "127.0.0.1", tls: { port: 0 }, limits, preAuth } } as never;
}

const opened: Array<{ stop(): void }> = [];
const platforms: TestPlatform[] = [];
afterEach(async () => {
  for (const o of opened.splice(0)) o.stop();
  for (const t of platforms.splice(0)) await t.close();
});

/**
 * Sockets that never finish CONNECT have budgets of their own (in total and
 * per source address); when one is full, or the connection limit is, the
 * oldest of them gives way, so they never lock an authenticated device out.
 * The connect timeout is long here: it is not what makes room.
 */
describe("pre-auth connection budgets", () => {
  const start = async (overrides: object, logs = false) => {
    const t = await startTestPlatform(overrides, { logs });
    platforms.push(t);
    return { t, port: Number(new URL(t.mqttUrl).port) };
  };
  const works = async (t: TestPlatform, client: MqttClient, device: string, n: number) => {
    await client.publishAsync(`devices/${device}/telemetry`, JSON.stringify({ metrics: { n } }), { qos: 1 });
    await waitFor(
      async () =>
        (await rowsOnce(t.db, influxql`SELECT n FROM telemetry WHERE device = ${device} AND n = ${n}`)).length === 1,
      "the device's telemetry in InfluxDB",
    );
  };

  it("a real device connects within a second while 10,000 idle sockets from its own address are open (default budgets)", async () => {
    const { t, port } = await start(mqttWith({}, { connectTimeoutMs: 120_000 }), true);
    const device = await provision(t, { id: "real" });
    (await connectDevice(t.mqttUrl, device.id, device.token)).end(true); // warm the token cache and the code paths
    const flood = idleFlood(port, 10_000);
    opened.push(flood);
    expect((await flood.connected()).failed).toBe(0);

    const started = performance.now();
    const client = await connectDevice(t.mqttUrl, device.id, device.token);
    const connectMs = performance.now() - started;
    expect(connectMs).toBeLessThan(1000);
    await works(t, client, device.id, 1);
    await client.endAsync();

    // The address keeps its newest 256 pre-auth sockets; the rest gave way as newer ones came.
    expect(await metric(t, "refeed_mqtt_pre_auth_connections")).toBeLessThanOrEqual(256);
    await waitFor(
      async () => (await metric(t, 'refeed_mqtt_pre_auth_closed_total{reason="pre_auth_per_address"}')) >= 10_000 - 256,
      "the broker to have accepted the whole flood",
      30_000,
    );
    const line = await logLine(
      t,
      (l) => l.msg === "pre-auth connection closed for a newer one" && l.reason === "pre_auth_per_address",
      "the burst in the log",
    );
    expect(line).toMatchObject({ address: "127.0.0.1", limit: 256, transport: "tcp" });
    // One line per burst, not one per socket.
    const lines = t.logs.filter((l) => l.reason === "pre_auth_per_address").length;
    expect(lines).toBeLessThan(5);
    console.info(`real device connected in ${connectMs.toFixed(0)} ms beside 10,000 idle sockets from its address`);
  }, 120_000);

  it("when 10,000 idle sockets fill max_connections, the oldest gives way and a device connects within a second", async () => {
    const { t, port } = await start(
      mqttWith({ max: 20_000, perAddress: 20_000 }, { connectTimeoutMs: 120_000, maxConnections: 10_000 }),
    );
    const device = await provision(t, { id: "real" });
    (await connectDevice(t.mqttUrl, device.id, device.token)).end(true);
    await waitFor(async () => (await metric(t, "refeed_mqtt_pre_auth_connections")) === 0, "the warm-up to close");
    const flood = idleFlood(port, 10_000);
    opened.push(flood);
    expect((await flood.connected()).failed).toBe(0);
    await waitFor(
      async () => {
        const open = await metric(t, "refeed_mqtt_pre_auth_connections");
        if (open !== 10_000) throw new Error(`${open} pre-auth connections`);
        return true;
      },
      "10,000 idle sockets to fill max_connections",
      30_000,
    );

    const started = performance.now();
    const client = await connectDevice(t.mqttUrl, device.id, device.token);
    expect(performance.now() - started).toBeLessThan(1000);
    await works(t, client, device.id, 2);
    // Exactly one idle socket made room; the others stay open, and nothing authenticated was refused.
    expect(await metric(t, 'refeed_mqtt_pre_auth_closed_total{reason="max_connections"}')).toBe(1);
    expect(await metric(t, "refeed_mqtt_pre_auth_connections")).toBe(9_999);
    expect(await metric(t, 'refeed_mqtt_connections_refused_total{reason="max_connections"}')).toBe(0);
    await client.endAsync();
  }, 120_000);

  it("per address and in total, the oldest pre-auth socket gives way to a new one, and the log names the address", async () => {
    const { t, port } = await start(mqttWith({ max: 4, perAddress: 2 }, { connectTimeoutMs: 120_000 }), true);
    const device = await provision(t, { id: "real" });
    const a1 = await idleSocket(port, "127.0.0.2");
    const a2 = await idleSocket(port, "127.0.0.2");
    const a3 = await idleSocket(port, "127.0.0.2");
    await waitFor(() => a1.closedByServer, "the address's oldest socket to give way");
    expect([a2.closedByServer, a3.closedByServer]).toEqual([false, false]);
    await logLine(
      t,
      (l) => l.reason === "pre_auth_per_address" && l.address === "127.0.0.2" && l.limit === 2,
      "the per-address refusal in the log",
    );

    const b = [await idleSocket(port, "127.0.0.3"), await idleSocket(port, "127.0.0.3")];
    const c1 = await idleSocket(port, "127.0.0.4");
    // Four pre-auth sockets at most, over all addresses: the oldest (a2) went for c1.
    await waitFor(() => a2.closedByServer, "the oldest pre-auth socket to give way");
    expect([a3, ...b, c1].map((s) => s.closedByServer)).toEqual([false, false, false, false]);
    // The line names the address whose socket was closed.
    await logLine(t, (l) => l.reason === "pre_auth_max" && l.address === "127.0.0.2", "the total budget in the log");

    const client = await connectDevice(t.mqttUrl, device.id, device.token);
    await waitFor(() => a3.closedByServer, "the next oldest to give way to the device");
    await works(t, client, device.id, 3);
    expect(await metric(t, "refeed_mqtt_pre_auth_connections")).toBe(3);
    await client.endAsync();
    for (const s of [a3, ...b, c1]) s.destroy();
  });
});
