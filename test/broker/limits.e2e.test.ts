import { writeFile } from "node:fs/promises";
import { connect as tcpConnect, type Socket } from "node:net";
import path from "node:path";
import mqttPacket from "mqtt-packet";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxQuery, rowsOnce } from "../support/influx.ts";
import { connectDevice, logLine, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { run } from "../support/process.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

const closed = (client: MqttClient) =>
  new Promise<void>((resolve) => (client.disconnected ? resolve() : client.once("close", () => resolve())));

function rawSocket(port: number): Promise<Socket & { closedByServer: boolean; received: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, "127.0.0.1") as Socket & { closedByServer: boolean; received: Buffer[] };
    socket.closedByServer = false;
    socket.received = [];
    socket.on("data", (chunk) => socket.received.push(chunk));
    socket.on("error", () => undefined); // a reset from the server is an expected answer here
    socket.on("close", () => (socket.closedByServer = true));
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

/**
 * Each limit refuses the misbehaving client, logs the device and the reason,
 * and leaves another device working. The limits are small so the tests are fast.
 */
describe("broker limits", () => {
  let t: TestPlatform;
  let port: number;
  let good: { id: string; token: string };
  let goodClient: MqttClient;

  /**
   * Device `good` keeps working: a QoS 1 publish is acknowledged and stored
   * (the PUBACK means durable on disk; InfluxDB has it moments later). Its
   * point in InfluxDB is the evidence that ingest got through what came before.
   */
  const goodStillWorks = async (n: number) => {
    await goodClient.publishAsync(`devices/${good.id}/telemetry`, JSON.stringify({ metrics: { n } }), { qos: 1 });
    const rows = await rowsOnce(t.db, influxql`SELECT n FROM telemetry WHERE device = ${good.id} AND n = ${n}`);
    expect(rows).toHaveLength(1);
  };

  beforeAll(async () => {
    t = await startTestPlatform(
      {},
      {
        logs: true,
        limits: {
          maxPayloadBytes: 1024,
          publishRate: 5,
          publishBurst: 20,
          connectTimeoutMs: 400,
          maxKeepaliveSeconds: 120,
          maxSubscriptions: 1,
        },
      },
    );
    port = Number(new URL(t.mqttUrl).port);
    await writeFile(
      path.join(t.rulesDir, "hot.yaml"),
      "id: hot\non: telemetry\nwhen: msg.metrics.temp > 30\nthen:\n  - set: ui.theme\n    value: cool\n",
    );
    await t.restart();
    port = Number(new URL(t.mqttUrl).port);
    good = await provision(t, { id: "good" });
    goodClient = await connectDevice(t.mqttUrl, good.id, good.token);
  });
  afterAll(async () => {
    await goodClient?.endAsync(true);
    await t?.close();
  });

  it("refuses a payload over the limit (mqtt.js and mosquitto_pub) and stores nothing of it", async () => {
    const big = await provision(t, { id: "big" });
    const client = await connectDevice(t.mqttUrl, big.id, big.token);
    const gone = closed(client);
    client.publish(`devices/${big.id}/telemetry`, JSON.stringify({ metrics: { blob: "x".repeat(2000) } }), { qos: 1 });
    await gone;
    const line = await logLine(t, (l) => l.msg === "publish refused" && l.device === big.id, "the payload refusal");
    expect(line).toMatchObject({ reason: "payload_too_large", limit: 1024 });
    expect(line.bytes).toBeGreaterThan(1024);

    const pub = await run("mosquitto_pub", [
      "-p",
      String(port),
      "-i",
      big.id,
      "-u",
      big.id,
      "-P",
      big.token,
      "-q",
      "1",
      "-t",
      `devices/${big.id}/telemetry`,
      "-m",
      JSON.stringify({ metrics: { blob: "y".repeat(1500) } }),
    ]);
    expect(pub.stderr).toMatch(/connection was lost/i);
    // Good's point in InfluxDB first: then nothing of big's is on its way there.
    await goodStillWorks(1);
    expect(await influxQuery(t.db, influxql`SELECT * FROM telemetry WHERE device = ${big.id}`)).toEqual([]);
  });

  it("cuts a connection whose packet announces more than the limit before buffering it, over TCP and WebSocket", async () => {
    const huge = await provision(t, { id: "huge" });
    for (const [url, transport] of [
      [t.mqttUrl, "tcp"],
      [t.wsUrl, "ws"],
    ] as const) {
      const client = await connectDevice(url, huge.id, huge.token);
      const gone = closed(client);
      client.publish(`devices/${huge.id}/telemetry`, "z".repeat(64 * 1024), { qos: 0 });
      await gone;
      const line = await logLine(
        t,
        (l) =>
          l.msg === "connection closed: packet refused before buffering" &&
          l.device === huge.id &&
          l.transport === transport,
        `the packet refusal over ${transport}`,
      );
      expect(line).toMatchObject({ reason: "packet_too_large", limit: 1024 + 4096 });
    }
    await goodStillWorks(2);
  });

  it("refuses a publish flood beyond the rate (mqtt.js and mosquitto_pub --repeat)", async () => {
    const noisy = await provision(t, { id: "noisy" });
    const client = await connectDevice(t.mqttUrl, noisy.id, noisy.token);
    const gone = closed(client);
    for (let i = 0; i < 200 && client.connected; i += 1)
      client.publish(`devices/${noisy.id}/telemetry`, JSON.stringify({ metrics: { i } }), { qos: 0 });
    await gone;
    const line = await logLine(t, (l) => l.msg === "publish refused" && l.device === noisy.id, "the rate refusal");
    expect(line).toMatchObject({ reason: "rate_limited", rate: 5, burst: 20 });
    // The burst was accepted; what came after was not (the bucket refills by 5 a second meanwhile).
    const stored = async () =>
      ((await influxQuery(t.db, influxql`SELECT count(i) FROM telemetry WHERE device = ${noisy.id}`))[0]?.count as
        number | undefined) ?? 0;
    await waitFor(async () => (await stored()) >= 20, "the burst in InfluxDB");

    const flood = await run("mosquitto_pub", [
      "-p",
      String(port),
      "-i",
      noisy.id,
      "-u",
      noisy.id,
      "-P",
      noisy.token,
      "-q",
      "1",
      "-t",
      `devices/${noisy.id}/telemetry`,
      "-m",
      '{"metrics":{"j":1}}',
      "--repeat",
      "200",
    ]);
    expect(flood.code).not.toBe(0);
    expect(flood.stderr).toMatch(/connection was lost/i);
    await goodStillWorks(3);
    expect(await stored()).toBeLessThanOrEqual(25);
  });

  it("drops a slow-loris connection that does not finish CONNECT in time, while a device connects and works", async () => {
    const connectPacket = mqttPacket.generate({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clientId: "good",
      clean: true,
      keepalive: 60,
      username: good.id,
      password: Buffer.from(good.token),
    });
    const opened = Date.now();
    const slow = await rawSocket(port);
    slow.write(connectPacket.subarray(0, 3)); // a header and one byte, then nothing
    const idle = await rawSocket(port); // and one that sends nothing at all
    const other = await connectDevice(t.mqttUrl, good.id, good.token, { clientId: `${good.id}:while-slow` });
    await other.publishAsync(`devices/${good.id}/telemetry`, JSON.stringify({ metrics: { n: 4 } }), { qos: 1 });
    await waitFor(() => slow.closedByServer && idle.closedByServer, "the broker to drop both", 5000);
    // Dropped by the connect timeout (400 ms here), not at once.
    expect(Date.now() - opened).toBeGreaterThanOrEqual(390);
    expect(slow.received).toEqual([]); // never a CONNACK
    await logLine(
      t,
      (l) => l.msg === "connection refused" && l.reason === "connect_timeout",
      "the connect timeout in the log",
    );
    await other.endAsync();
    await goodStillWorks(5);
  });

  it("closes a connection whose first packet is not CONNECT, before the broker takes it", async () => {
    const socket = await rawSocket(port);
    socket.write(mqttPacket.generate({ cmd: "pingreq" }));
    await waitFor(() => socket.closedByServer, "the broker to close it");
    expect(socket.received).toEqual([]);
    await logLine(
      t,
      (l) => l.reason === "not_connect" && l.msg === "connection closed: packet refused before buffering",
      "the refusal",
    );
  });

  it("refuses keepalive 0 and keepalive over the maximum (mqtt.js and mosquitto_sub)", async () => {
    await expect(
      connectDevice(t.mqttUrl, good.id, good.token, { clientId: `${good.id}:k0`, keepalive: 0 }),
    ).rejects.toThrow(/Not authorized/i);
    await expect(
      connectDevice(t.mqttUrl, good.id, good.token, { clientId: `${good.id}:k1`, keepalive: 121 }),
    ).rejects.toThrow(/Not authorized/i);
    const sub = await run("mosquitto_sub", [
      "-p",
      String(port),
      "-i",
      `${good.id}:k2`,
      "-u",
      good.id,
      "-P",
      good.token,
      "-k",
      "600",
      "-t",
      `devices/${good.id}/actions`,
      "-W",
      "5",
    ]);
    expect(sub.stderr).toMatch(/not authorised/i);
    const line = await logLine(
      t,
      (l) => l.reason === "keepalive_out_of_range" && l.keepalive === 600,
      "the keepalive refusal",
    );
    expect(line).toMatchObject({ device: good.id, clientId: `${good.id}:k2` });
    const ok = await connectDevice(t.mqttUrl, good.id, good.token, { clientId: `${good.id}:k3`, keepalive: 120 });
    await ok.endAsync();
  });

  it("refuses subscriptions beyond the per-connection maximum", async () => {
    const client = await connectDevice(t.mqttUrl, good.id, good.token, { clientId: `${good.id}:subs` });
    expect((await client.subscribeAsync(`devices/${good.id}/actions`, { qos: 1 })).map((g) => g.qos)).toEqual([1]);
    const refused = await client
      .subscribeAsync(`devices/${good.id}/state`, { qos: 1 })
      .catch((err: { packet?: { granted?: number[] } }) => err);
    expect(refused).toMatchObject({ packet: { granted: [128] } });
    await logLine(
      t,
      (l) =>
        l.msg === "subscription refused" && l.reason === "too_many_subscriptions" && l.clientId === `${good.id}:subs`,
      "the subscription refusal",
    );
    // Unsubscribing frees the slot.
    await client.unsubscribeAsync(`devices/${good.id}/actions`);
    expect((await client.subscribeAsync(`devices/${good.id}/state`, { qos: 1 })).map((g) => g.qos)).toEqual([1]);
    await client.endAsync();
  });

  it("speaks QoS 0 and 1 only: a QoS 2 publish is refused, a QoS 2 subscription is served at QoS 1", async () => {
    const client = await connectDevice(t.mqttUrl, good.id, good.token, { clientId: `${good.id}:q2` });
    const qos: number[] = [];
    client.on("message", (_topic, _payload, packet) => qos.push(packet.qos));
    await client.subscribeAsync(`devices/${good.id}/actions`, { qos: 2 });
    await goodClient.publishAsync(`devices/${good.id}/telemetry`, JSON.stringify({ metrics: { temp: 31 } }), {
      qos: 1,
    });
    await waitFor(() => qos.length > 0, "the action");
    expect(qos).toEqual([1]);
    const gone = closed(client);
    client.publish(`devices/${good.id}/telemetry`, JSON.stringify({ metrics: { q: 2 } }), { qos: 2 });
    await gone;
    await logLine(
      t,
      (l) => l.msg === "publish refused" && l.reason === "qos2_refused" && l.clientId === `${good.id}:q2`,
      "the QoS 2 refusal",
    );
  });

  it("refuses an empty client id with clean session off (MQTT-3.1.3-8) and names one after the device otherwise", async () => {
    const connackOf = async (clean: boolean) => {
      const socket = await rawSocket(port);
      const connect = mqttPacket.generate({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId: "",
        clean: true,
        keepalive: 30,
        username: good.id,
        password: Buffer.from(good.token),
      });
      // mqtt-packet will not build this invalid packet, so clear the clean-session flag by hand:
      // fixed header (2) + protocol name (6) + level (1), then the connect flags.
      if (!clean) connect[9] = connect[9]! & ~0x02;
      socket.write(connect);
      const bytes = await waitFor(
        () => (socket.received.length > 0 ? Buffer.concat(socket.received) : undefined),
        "a CONNACK",
      );
      socket.destroy();
      return bytes;
    };
    // CONNACK: 0x20, length 2, session present, return code.
    expect([...(await connackOf(false))]).toEqual([0x20, 2, 0, 2]);
    expect([...(await connackOf(true))]).toEqual([0x20, 2, 0, 0]);
    await logLine(t, (l) => l.reason === "empty_client_id" && l.device === good.id, "the refusal");
    const named = await logLine(
      t,
      (l) => l.msg === "device connected" && typeof l.clientId === "string" && /^good:[0-9a-f-]{36}$/.test(l.clientId),
      "the named session",
    );
    expect(named.device).toBe(good.id);
  });
});

describe("maximum connections", () => {
  it("refuses connections over the maximum at once, and accepts again when one closes", async () => {
    const t = await startTestPlatform({}, { logs: true, limits: { maxConnections: 5 } });
    try {
      // Authenticated connections fill the maximum: idle pre-auth ones would give way instead (test/broker/pre-auth.test.ts).
      const devices = await Promise.all(Array.from({ length: 6 }, (_, i) => provision(t, { id: `d${i}` })));
      const clients = await Promise.all(devices.slice(0, 5).map((d) => connectDevice(t.mqttUrl, d.id, d.token)));
      const extra = await rawSocket(mqttPort(t));
      await waitFor(() => extra.closedByServer, "the sixth connection to be refused");
      expect(clients.some((c) => c.disconnected)).toBe(false);
      await logLine(
        t,
        (l) => l.msg === "connection refused" && l.reason === "max_connections" && l.limit === 5,
        "the refusal in the log",
      );
      const device = devices[5]!;
      await expect(connectDevice(t.mqttUrl, device.id, device.token, { connectTimeout: 2000 })).rejects.toThrow();
      await clients[0]!.endAsync();
      const client = await waitFor(
        () => connectDevice(t.mqttUrl, device.id, device.token).catch(() => undefined),
        "a free slot",
      );
      await client.endAsync();
      for (const c of clients.slice(1)) await c.endAsync();
    } finally {
      await t.close();
    }
  });

  it("closes the oldest idle pre-auth socket, not a device, when the maximum is reached", async () => {
    const t = await startTestPlatform({}, { logs: true, limits: { maxConnections: 5 } });
    try {
      const device = await provision(t, { id: "d" });
      const sockets = await Promise.all(Array.from({ length: 5 }, () => rawSocket(mqttPort(t))));
      const client = await connectDevice(t.mqttUrl, device.id, device.token, { connectTimeout: 2000 });
      await waitFor(() => sockets.filter((s) => s.closedByServer).length === 1, "one idle socket to give way");
      await logLine(
        t,
        (l) =>
          l.msg === "pre-auth connection closed for a newer one" && l.reason === "max_connections" && l.limit === 5,
        "the idle socket giving way in the log",
      );
      await client.endAsync();
      for (const s of sockets) s.destroy();
    } finally {
      await t.close();
    }
  });
});

const mqttPort = (t: TestPlatform) => Number(new URL(t.mqttUrl).port);
