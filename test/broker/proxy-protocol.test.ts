import { connect as tcpConnect, type Socket } from "node:net";
import { MqttClient } from "mqtt";
import { WebSocket } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseProxyLine } from "../../broker/proxy-protocol.ts";
import { logLine, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";

type Raw = Socket & { closedByServer: boolean };

/** A TCP connection from 127.0.0.1 (the trusted balancer here) that sends `first`, then nothing. */
function rawSocket(port: number, first: string, from = "127.0.0.1"): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ port, host: "127.0.0.1", localAddress: from }) as Raw;
    socket.closedByServer = false;
    socket.on("error", () => undefined);
    socket.on("close", () => (socket.closedByServer = true));
    socket.once("connect", () => {
      if (first) socket.write(first);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/**
 * Behind a balancer every connection comes from the balancer's address: the
 * per-address pre-auth budget would then be one budget for every device. A
 * trusted balancer names each client in a PROXY protocol v1 header (HAProxy's
 * `send-proxy`); the broker takes the address from it, and only from a
 * balancer it trusts.
 */
describe("PROXY protocol from a trusted balancer", () => {
  let t: TestPlatform;
  let port: number;
  const sockets: Raw[] = [];
  beforeAll(async () => {
    t = await startTestPlatform(
      {
        mqtt: {
          port: 0,
          host: "127.0.0.1",
          tls: { port: 0 },
          limits: { connectTimeoutMs: 60_000 },
          preAuth: { perAddress: 2 },
          trustedProxies: ["127.0.0.1"],
        },
        http: { port: 0, host: "127.0.0.1", trustedProxies: ["127.0.0.1"] },
      } as never,
      { logs: true },
    );
    port = Number(new URL(t.mqttUrl).port);
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await t.close();
  });

  it("counts idle sockets per client address the header names, so one client's flood leaves the others be", async () => {
    const header = (src: string) => `PROXY TCP4 ${src} 10.0.0.1 40000 1883\r\n`;
    const flood: Raw[] = [];
    for (let i = 0; i < 3; i++) flood.push(await rawSocket(port, header("203.0.113.7")));
    sockets.push(...flood);
    // The third socket of 203.0.113.7 made its oldest give way; the log names the client, not the balancer.
    await waitFor(() => flood[0]!.closedByServer, "the flooding client's oldest socket to give way");
    await logLine(
      t,
      (l) => l.reason === "pre_auth_per_address" && l.address === "203.0.113.7",
      "the refusal naming the client's address",
    );
    const other = await rawSocket(port, header("198.51.100.9"));
    sockets.push(other);
    expect([flood[1]!.closedByServer, flood[2]!.closedByServer, other.closedByServer]).toEqual([false, false, false]);
  });

  it("a device behind the balancer connects and publishes; what follows the header is its MQTT stream", async () => {
    const device = await provision(t, { id: "proxied-device" });
    // The balancer's part: a header, then the client's own bytes.
    const client = new MqttClient(
      () => {
        const socket = tcpConnect({ port, host: "127.0.0.1" });
        socket.write("PROXY TCP4 192.0.2.44 10.0.0.1 51000 1883\r\n");
        return socket;
      },
      { clientId: device.id, username: device.id, password: device.token, reconnectPeriod: 0, protocolVersion: 4 },
    );
    await new Promise<void>((resolve, reject) => {
      client.once("connect", () => resolve());
      client.once("error", reject);
    });
    await client.publishAsync(`devices/${device.id}/telemetry`, JSON.stringify({ metrics: { n: 1 } }), { qos: 1 });
    await logLine(t, (l) => l.msg === "device connected" && l.device === device.id, "the device's connection");
    await client.endAsync();
  });

  it("refuses a malformed header from the balancer, and takes no header from anyone else", async () => {
    const bad = await rawSocket(port, "PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n");
    await waitFor(() => bad.closedByServer, "the malformed header's connection closed");
    await logLine(t, (l) => typeof l.reason === "string" && l.reason.includes("not-an-address"), "the reason logged");
    // 127.0.0.2 is not trusted: a PROXY line is not MQTT from it, and it cannot borrow an address.
    const spoof = await rawSocket(port, "PROXY TCP4 203.0.113.8 10.0.0.1 1 2\r\n", "127.0.0.2");
    await waitFor(() => spoof.closedByServer, "the untrusted sender's connection closed");
  });

  it("over WebSocket, takes the client's address from a trusted balancer's X-Forwarded-For", async () => {
    const open = () =>
      new Promise<WebSocket & { closedByServer?: boolean }>((resolve, reject) => {
        const ws = new WebSocket(`${t.wsUrl}`, "mqtt", {
          headers: { "x-forwarded-for": "203.0.113.50" },
        }) as WebSocket & {
          closedByServer?: boolean;
        };
        ws.on("close", () => (ws.closedByServer = true));
        ws.once("open", () => resolve(ws));
        ws.once("error", reject);
      });
    const idle = [await open(), await open(), await open()];
    await waitFor(() => idle[0]!.closedByServer, "the forwarded client's oldest socket to give way");
    await logLine(
      t,
      (l) => l.reason === "pre_auth_per_address" && l.address === "203.0.113.50",
      "the refusal naming the forwarded address",
    );
    for (const ws of idle) ws.terminate();
  });

  it("parses what HAProxy sends, and nothing else", () => {
    expect(parseProxyLine("PROXY TCP6 2001:db8::1 2001:db8::2 1 2")).toEqual({
      kind: "proxied",
      source: "2001:db8::1",
    });
    expect(parseProxyLine("PROXY UNKNOWN")).toEqual({ kind: "proxied", source: undefined });
    expect(parseProxyLine("PROXY TCP4 2001:db8::1 10.0.0.1 1 2").kind).toBe("invalid");
    expect(parseProxyLine("PROXY TCP4 10.0.0.1 10.0.0.2 1").kind).toBe("invalid");
  });
});
