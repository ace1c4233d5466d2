import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { influxql } from "../../store/influxql.ts";
import { checkAnswersOf } from "../support/contract-every-answer.ts";
import { connectDevice } from "../support/platform.ts";
import { influxQuery } from "../support/influx.ts";
import { runCli, type Running } from "../support/process.ts";
import { nodeCount } from "../../cluster/run.ts";
import { waitFor } from "../support/wait.ts";

interface Listening {
  mqtt: string;
  http: string;
  ws: string;
  redis: string;
  influx: string;
  nodes: Array<{ id: string; mqtt: string; http: string; ws: string; pid: number }>;
}

/** The processes whose parent is `pid`, with their command lines, read from /proc. */
async function childrenOf(pid: number): Promise<Array<{ pid: number; cmd: string }>> {
  const found: Array<{ pid: number; cmd: string }> = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      // The fourth field, after the command in parentheses (which may hold spaces), is the parent's pid.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== pid) continue;
      const cmd = (await readFile(`/proc/${entry}/cmdline`, "utf8")).split("\0").join(" ").trim();
      found.push({ pid: Number(entry), cmd });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** What the cluster, its nodes and haproxy said, when a test fails: a failed test or a failed cluster? */
function dumpOnFailure(): void {
  onTestFailed(() => {
    process.stderr.write(`${[...cluster.stdout.slice(-60), ...cluster.stderr.slice(-20)].join("\n")}\n`);
  });
}

let cluster: Running;

/** `refeed cluster --nodes 2` as a user runs it: redis-server, influxd, two nodes and haproxy on free ports. */
describe("refeed cluster", () => {
  let dir: string;
  let listening: Listening;
  /** The cluster's child processes, read while all of them ran. */
  let children: Array<{ pid: number; cmd: string }> = [];
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-test-cluster-"));
    cluster = runCli(["cluster", "--nodes", "2", "--data-dir", dir], {
      REFEED_MQTT_PORT: "0",
      REFEED_HTTP_PORT: "0",
      REFEED_LOG_LEVEL: process.env.REFEED_TEST_LOG ?? "info",
    });
    listening = (await cluster.logLine(
      (l) => l.msg === "refeed cluster listening",
      "the cluster's addresses",
    )) as unknown as Listening;
    // Answers that come through haproxy are checked against the document as the nodes' own are.
    checkAnswersOf(listening.http);
  });
  afterAll(async () => {
    if (cluster && cluster.child.exitCode === null) {
      cluster.child.kill("SIGTERM");
      await cluster.exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("serves a device through haproxy (HTTP, MQTT over TCP and WebSocket), and each node on its own address", async () => {
    // The generated admin token is printed once, on stderr, and never logged.
    const token = /Refeed admin token \(shown once, keep it safe\): (rfa_\S+)/.exec(cluster.stderr.join("\n"))?.[1];
    expect(token).toBeDefined();
    expect(cluster.stdout.join("\n")).not.toContain(token);

    dumpOnFailure();
    expect(listening.nodes.map((n) => n.id)).toEqual(["node-1", "node-2"]);
    expect(new Set(listening.nodes.map((n) => n.http)).size).toBe(2);
    for (const n of listening.nodes) {
      const res = await fetch(`${n.http}/healthz`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: "ok", influx: "reachable", redis: "reachable" });
    }

    const made = await fetch(`${listening.http}/api/devices`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ id: "tv-front", kind: "tv" }),
    });
    expect(made.status).toBe(201);
    const device = (await made.json()) as { id: string; token: string };

    const client = await connectDevice(listening.mqtt, device.id, device.token);
    const pubacks: number[] = [];
    client.on("packetreceive", (packet) => packet.cmd === "puback" && pubacks.push(packet.messageId!));
    // mqtt.js settles a QoS 1 publish on its PUBACK; the packet seen on the wire says so too.
    const sent = await client.publishAsync(
      `devices/${device.id}/telemetry`,
      JSON.stringify({ metrics: { temp: 21.5 } }),
      { qos: 1 },
    );
    expect(pubacks).toEqual([sent!.messageId]);
    await client.endAsync();
    // What was acknowledged reaches the one InfluxDB every node writes to.
    await waitFor(
      async () => (await influxQuery("refeed", influxql`SELECT temp FROM telemetry`, listening.influx))[0],
      "the telemetry in InfluxDB",
    );

    // MQTT over WebSocket through haproxy's HTTP front: the /mqtt upgrade is tunnelled.
    const ws = mqtt.connect(listening.ws, {
      clientId: `${device.id}:ws`,
      username: device.id,
      password: device.token,
      reconnectPeriod: 0,
    });
    await new Promise<void>((resolve, reject) => (ws.once("connect", () => resolve()), ws.once("error", reject)));
    await ws.endAsync();
  });

  it("logs a node that dies with its id and exit code, and keeps serving through the other", async () => {
    dumpOnFailure();
    const pid = cluster.child.pid!;
    children = await childrenOf(pid);
    const kind = (cmd: string) =>
      /haproxy/.test(cmd)
        ? "haproxy"
        : /redis-server/.test(cmd)
          ? "redis"
          : /influxd/.test(cmd)
            ? "influxd"
            : cmd.includes("refeed.js start")
              ? "node"
              : cmd;
    // tsx's esbuild service may be there too: it is the cluster's own compiler, and must go with it.
    const kinds = children.map((c) => kind(c.cmd)).filter((k) => !/\/esbuild --service/.test(k));
    expect(kinds.sort()).toEqual(["haproxy", "influxd", "node", "node", "redis"]);

    const node2 = listening.nodes.find((n) => n.id === "node-2")!;
    process.kill(node2.pid, "SIGKILL");
    const logged = await cluster.logLine(
      (l) => l.node === "node-2" && l.level === 50 && String(l.msg).includes("exited unexpectedly"),
      "the log line of node-2's exit",
    );
    expect(logged).toMatchObject({ part: "cluster", signal: "SIGKILL", nodesLeft: ["node-1"] });
    // The front answers through node-1, whether haproxy's check has marked node-2 down yet or not.
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${listening.http}/healthz`);
      expect(res.status).toBe(200);
      await res.body?.cancel();
    }
    expect(cluster.child.exitCode).toBeNull();
  });

  it("stops haproxy, the nodes, influxd and redis-server on SIGINT, in that order, and exits 0", async () => {
    dumpOnFailure();
    cluster.child.kill("SIGINT");
    expect(await cluster.exited).toBe(0);
    await waitFor(() => children.every((c) => !alive(c.pid)), "every child process gone");
    const at = (match: (l: Record<string, unknown>) => boolean, what: string) => {
      const i = cluster.stdout.findIndex(
        (line) => line.startsWith("{") && match(JSON.parse(line) as Record<string, unknown>),
      );
      expect(i, what).toBeGreaterThan(-1);
      return i;
    };
    const order = [
      at((l) => l.msg === "stopping the cluster: haproxy, nodes, influxd, redis-server", "the stop"),
      at((l) => l.msg === "haproxy stopped", "haproxy stopped"),
      at((l) => l.node === "node-1" && l.msg === "refeed stopped", "node-1 flushed and stopped"),
      at((l) => l.msg === "managed influxd stopped", "influxd stopped"),
      at((l) => l.msg === "redis-server stopped", "redis-server stopped"),
    ];
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    // (Its place among the last lines is not asserted: once in a while it reaches the pipe before the one above.)
    at((l) => l.msg === "refeed cluster stopped", "the end");
  });
});

describe("refeed cluster without its binaries", () => {
  it("names the missing binary and npm run setup, and starts nothing", async () => {
    const dataDir = path.join(os.tmpdir(), `refeed-test-cluster-none-${process.pid}`);
    const haproxy = runCli(["cluster", "--nodes", "1", "--data-dir", dataDir], {
      REFEED_HAPROXY_PATH: "/nonexistent/haproxy",
    });
    const redis = runCli(["cluster", "--nodes", "1"], { REFEED_REDIS_SERVER_PATH: "/nonexistent/redis-server" });
    expect(await haproxy.exited).toBe(3);
    expect(haproxy.stderr.join("\n")).toContain(
      "refeed cluster: /nonexistent/haproxy not found (REFEED_HAPROXY_PATH): run 'npm run setup', which installs Debian's haproxy package",
    );
    await expect(stat(dataDir)).rejects.toThrow(/ENOENT/);
    expect(await redis.exited).toBe(3);
    expect(redis.stderr.join("\n")).toContain(
      "refeed cluster: /nonexistent/redis-server not found (REFEED_REDIS_SERVER_PATH): run 'npm run setup', which installs Debian's redis-server package",
    );
  });

  it("refuses a wrong --nodes, naming it", async () => {
    const bad = runCli(["cluster", "--nodes", "zero"], {});
    expect(await bad.exited).toBe(2);
    expect(bad.stderr.join("\n")).toContain(
      "refeed cluster: --nodes: expected a whole number from 1 to 16, or auto (got 'zero')",
    );
  });
});

describe("refeed cluster --nodes auto", () => {
  it("runs one node per core, within what the clock slots allow", () => {
    expect(nodeCount("auto", 2)).toBe(2);
    expect(nodeCount("auto", 1)).toBe(1);
    expect(nodeCount("auto", 64)).toBe(16);
    expect(nodeCount("5", 2)).toBe(5);
    expect(nodeCount("17", 2)).toBeUndefined();
    expect(nodeCount("two", 2)).toBeUndefined();
  });
});
