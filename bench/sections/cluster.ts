import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import mqtt from "mqtt";
import { trackGroup } from "../children.ts";
import { ADMIN_TOKEN, deviceClient, sleep, type BenchContext } from "../context.ts";
import type { BenchDevice } from "../fleet.ts";
import { createDatabase, storedPerDevice } from "../influx.ts";
import { latencyHistogram, type LatencySummary } from "../latency.ts";
import { LoadGenerator } from "../load/generator.ts";
import { cpuMeter } from "../machine.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** One QoS 1 fan-in measure through HAProxy: what was acknowledged, and the CPU it took. */
export interface ClusterThroughput {
  /** PUBACKs per second over the step (sending and draining). */
  msgsPerSecond: number;
  sent: number;
  /** Sends skipped because the device already had its window of publishes unacknowledged. */
  skipped: number;
  acked: number;
  seconds: number;
  /** CPU-seconds per 10,000 acknowledged messages: all nodes together, and each process. */
  nodesPer10k: number;
  per10k: Record<string, number>;
  /** Cores kept busy, per process ("generator": all its workers). */
  cores: Record<string, number>;
  ack: LatencySummary;
}

export interface ClusterRun {
  nodes: number;
  startSeconds: number;
  /** Device connections each node had once HAProxy spread them (refeed_mqtt_connected_clients). */
  connections: Record<string, number>;
  /** Saturation: offered beyond what the cluster takes, each device with a bounded window of unacknowledged publishes. */
  saturation: ClusterThroughput[];
  /** The same fixed rate for every cluster size (half the single node's median saturation rate): the cost of a message. */
  fixed: ClusterThroughput & { rate: number; lost: number };
  /**
   * One node only: its CPU with each cluster size's share of the devices (1/N of them, at the same rate each:
   * the fixed rate / N in all), for N > 1; what one node of an N-node cluster carries.
   */
  shares?: Array<{ nodes: number; rate: number; per10k: number }>;
  /** The fixed-rate step's acknowledged records against what InfluxDB holds of them: each stored once. */
  stored: { acked: number; stored: number; distinct: number; missing: number; duplicates: number };
  /** Consent changed through node 1's address until node 2's address answers it. */
  propagation?: LatencySummary;
  /** What the devices published through the front while `propagation` was measured. */
  propagationLoad?: { rate: number; acked: number; seconds: number };
  /** Telemetry from a device on node 1 until the subject-scoped rule's action reaches the customer's device on node 2. */
  action?: LatencySummary;
  /** kill -9 of a node owning partitions until no partition is owned by it or by no one (3 nodes only). */
  failover?: { ms: number; partitionsOfDead: number };
}

export interface ClusterSection {
  /** The run that measured it (the section is often run on its own, joining the committed page). */
  command?: string;
  at?: string;
  devices: number;
  window: number;
  offered: number;
  stepSeconds: number;
  warmupSeconds: number;
  runs: ClusterRun[];
}

const DEVICES = 30;
const WINDOW = 16;
const OFFERED = 25_000;
const STEP_SECONDS = 6;
const REPETITIONS = 3;
/** Discarded: the first seconds of load on fresh nodes (code not yet optimised, new series in InfluxDB) cost more. */
const WARMUP_SECONDS = 3;
const SIZES = [1, 2, 3];
/** msgs/s the devices publish while a change's propagation is measured (the target is for a cluster under load). */
const PROPAGATION_LOAD = 1000;

const ACTION_RULE = `id: bench-cluster-action
description: Any hot telemetry of the customer sets a key on every touchpoint
on: telemetry
scope: subject
when: msg.metrics.hot == 1
then:
  - set: bench.cluster
    expr: "{'seq': msg.metrics.seq}"
`;

interface Addresses {
  mqtt: string;
  http: string;
  nodes: Array<{ id: string; mqtt: string; http: string; pid: number }>;
}

interface RunningCluster extends Addresses {
  pid: number;
  redisPid: number | undefined;
  haproxyPid: number | undefined;
  logFile: string;
  stop(): Promise<void>;
}

/** The pids of a process's children (Linux), with their command names. */
async function children(pid: number): Promise<Array<{ pid: number; comm: string }>> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
  const pids = text.split(" ").filter(Boolean).map(Number);
  return Promise.all(
    pids.map(async (p) => ({ pid: p, comm: (await readFile(`/proc/${p}/comm`, "utf8").catch(() => "")).trim() })),
  );
}

/** `refeed cluster --nodes N` as an operator runs it, on the benchmark's InfluxDB, front ports picked free. */
async function startCluster(ctx: BenchContext, nodes: number): Promise<RunningCluster> {
  const db = `bench_cluster_${nodes}`;
  const influx = ctx.influxd();
  await createDatabase(influx.url, db);
  const dataDir = path.join(ctx.dir, `cluster-${nodes}`);
  await mkdir(dataDir, { recursive: true });
  const logFile = path.join(dataDir, "cluster.log");
  const log = createWriteStream(logFile);
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("REFEED_")));
  const child = spawn(
    process.execPath,
    [path.join(ROOT, "bin/refeed.js"), "cluster", "--nodes", String(nodes), "--data-dir", dataDir],
    {
      env: {
        ...clean,
        REFEED_INFLUX_URL: influx.url,
        REFEED_INFLUX_DB: db,
        REFEED_ADMIN_TOKEN: ADMIN_TOKEN,
        REFEED_MQTT_PORT: "0",
        REFEED_HTTP_PORT: "0",
        REFEED_MQTT_HOST: "127.0.0.1",
        REFEED_HTTP_HOST: "127.0.0.1",
        REFEED_LOG_LEVEL: "info",
        // A few busy devices: the per-device publish rate limit would measure itself, not the cluster.
        REFEED_MQTT_PUBLISH_RATE: "1000000",
        REFEED_MQTT_PUBLISH_BURST: "1000000",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  // Every part of the cluster runs in its own process group: each is killed if the benchmark is interrupted.
  const untrack = [trackGroup(child.pid)];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
    log.write(c);
  });
  const began = performance.now();
  const addresses = await new Promise<Addresses>((resolve, reject) => {
    let rest = "";
    let found = false;
    child.stdout.on("data", (chunk: Buffer) => {
      log.write(chunk);
      if (found) return;
      const lines = (rest + chunk.toString()).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.includes("refeed cluster listening")) continue;
        try {
          const entry = JSON.parse(line) as Addresses & { msg?: string };
          if (entry.msg !== "refeed cluster listening") continue;
          found = true;
          resolve(entry);
        } catch {
          // not a log line
        }
      }
    });
    void exited.then((code) => reject(new Error(`refeed cluster exited (${code}) before listening: ${stderr}`)));
    setTimeout(() => reject(new Error(`refeed cluster: not listening after 120 s; its log: ${logFile}`)), 120_000);
  });
  ctx.say(`cluster: ${nodes} node(s) listening after ${((performance.now() - began) / 1000).toFixed(1)} s`);
  for (const n of addresses.nodes) untrack.push(trackGroup(n.pid));
  const kids = await children(child.pid!);
  const redisPid = kids.find((k) => k.comm.startsWith("redis-server"))?.pid;
  const haproxyPid = kids.find((k) => k.comm.startsWith("haproxy"))?.pid;
  for (const p of [redisPid, haproxyPid]) if (p) untrack.push(trackGroup(p));
  return {
    ...addresses,
    pid: child.pid!,
    redisPid,
    haproxyPid,
    logFile,
    async stop() {
      child.kill("SIGTERM");
      await exited;
      for (const u of untrack) u();
      await new Promise<void>((resolve) => log.end(() => resolve()));
    },
  };
}

async function call(base: string, method: string, url: string, body?: unknown, type = "application/json") {
  const res = await fetch(`${base}${url}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(body !== undefined ? { "content-type": type } : {}),
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
}

async function provision(base: string, id: string, subject?: string): Promise<BenchDevice> {
  const res = await call(base, "POST", "/api/devices", { id, kind: "bench", ...(subject ? { subject } : {}) });
  if (res.status !== 201) throw new Error(`provisioning ${id}: ${res.status} ${JSON.stringify(res.body)}`);
  return { id, token: (res.body as { token: string }).token, ...(subject ? { subject } : {}) };
}

const consent = (base: string, subject: string, analytics: boolean) =>
  call(base, "PUT", `/api/subjects/${subject}/consent`, { analytics, personalization: true, feedback: true });

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | false>, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => false as const);
    if (value !== false) return value;
    if (Date.now() > deadline) throw new Error(`cluster bench: ${what} not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

interface PartitionView {
  partition: number;
  owner: string | null;
}

const partitions = async (base: string) => {
  const res = await call(base, "GET", "/api/rules/partitions");
  if (res.status !== 200) throw new Error(`GET /api/rules/partitions: ${res.status}`);
  return res.body as PartitionView[];
};

async function connectedClients(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("refeed_mqtt_connected_clients "));
  return line ? Number(line.split(" ")[1]) : NaN;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * 1, 2 and 3 nodes of `refeed cluster` behind its HAProxy, on this machine,
 * one after another in the same run: QoS 1 fan-in through the front, the CPU
 * per message of the nodes and of Redis, how fast a change made on one node
 * is seen on another, telemetry -> action across nodes, and partition
 * failover after a kill -9.
 */
export async function benchCluster(ctx: BenchContext): Promise<ClusterSection> {
  const runs: ClusterRun[] = [];
  let fixedRate = 0;
  for (const nodes of SIZES) {
    const began = performance.now();
    const cluster = await startCluster(ctx, nodes);
    const startSeconds = (performance.now() - began) / 1000;
    const gen = await LoadGenerator.start(2);
    try {
      const devices: BenchDevice[] = [];
      for (let i = 0; i < DEVICES; i += 1)
        devices.push(await provision(cluster.http, `cl${nodes}-${String(i).padStart(2, "0")}`));
      const connected = await gen.connect(
        cluster.mqtt,
        devices.map((d) => deviceClient(d)),
      );
      if (connected.failed > 0)
        throw new Error(`cluster: ${connected.failed} connections failed: ${connected.firstError}`);
      const processes: Record<string, () => number | undefined> = Object.fromEntries(
        cluster.nodes.map((n) => [n.id, () => n.pid]),
      );
      processes.redis = () => cluster.redisPid;
      processes.haproxy = () => cluster.haproxyPid;
      processes.influxd = () => ctx.influxd().pid;
      const connections: Record<string, number> = {};
      for (const n of cluster.nodes) connections[n.id] = await connectedClients(n.http);
      const measure = async (
        rate: number,
        stepSeconds = STEP_SECONDS,
        group?: string,
      ): Promise<ClusterThroughput & { lost: number }> => {
        const cpu = await cpuMeter(processes);
        const r = await gen.run({
          rate,
          ...(group ? { group } : {}),
          qos: 1,
          durationMs: stepSeconds * 1000,
          drainTimeoutMs: 10_000,
          maxOutstanding: WINDOW,
          stamps: "seq",
          delivered: (t) => t.acked,
        });
        const used = await cpu.stop();
        const acked = Math.max(1, r.acked);
        const seconds = r.seconds + r.drainMs / 1000;
        const nodeSeconds = cluster.nodes.reduce((sum, n) => sum + used.seconds[n.id]!, 0);
        return {
          msgsPerSecond: r.acked / seconds,
          sent: r.sent,
          skipped: r.skipped,
          acked: r.acked,
          seconds,
          nodesPer10k: (nodeSeconds / acked) * 10_000,
          per10k: Object.fromEntries(
            Object.entries({ ...used.seconds, generator: r.generatorCpuSeconds }).map(([k, s]) => [
              k,
              (s / acked) * 10_000,
            ]),
          ),
          cores: { ...used.cores, generator: r.generatorCpuSeconds / r.wallSeconds },
          ack: r.ack,
          lost: Math.max(0, r.sent - r.acked),
        };
      };
      const saturation: ClusterThroughput[] = [];
      await measure(OFFERED, WARMUP_SECONDS);
      for (let rep = 1; rep <= REPETITIONS; rep += 1) {
        const { lost: _lost, ...t } = await measure(OFFERED);
        ctx.say(
          `cluster ${nodes}: QoS 1 fan-in, saturation ${rep}: ${Math.round(t.msgsPerSecond)} msgs/s, ${t.nodesPer10k.toFixed(2)} node CPU-s per 10,000 (${Object.entries(
            t.cores,
          )
            .map(([k, c]) => `${k} ${c.toFixed(2)}`)
            .join(", ")} cores)`,
        );
        saturation.push(t);
      }
      if (nodes === 1)
        fixedRate = Math.max(500, Math.round(median(saturation.map((s) => s.msgsPerSecond)) / 2 / 100) * 100);
      const fixedFrom = Date.now();
      const fixed = { rate: fixedRate, ...(await measure(fixedRate)) };
      const stored = await storedOnce(ctx, `bench_cluster_${nodes}`, fixedFrom, fixed.acked);
      ctx.say(
        `cluster ${nodes}: fixed step: ${stored.acked} acknowledged, ${stored.stored} stored (${stored.missing} missing, ${stored.duplicates} twice)`,
      );
      if (stored.missing > 0 || stored.duplicates > 0)
        throw new Error(`cluster ${nodes}: acknowledged records missing or stored twice: ${JSON.stringify(stored)}`);
      ctx.say(
        `cluster ${nodes}: fixed ${fixedRate} msgs/s: ${Math.round(fixed.msgsPerSecond)} acked/s, ${fixed.nodesPer10k.toFixed(2)} node CPU-s per 10,000, redis ${fixed.per10k.redis?.toFixed(2)}`,
      );
      const run: ClusterRun = { nodes, startSeconds, connections, saturation, fixed, stored };
      if (nodes === 1) {
        run.shares = [];
        for (const of of SIZES.filter((s) => s > 1)) {
          // A node of an N-node cluster has 1/N of the devices, each at the same rate: so does this node here.
          const group = `share-${of}`;
          const sharers: BenchDevice[] = [];
          for (let i = 0; i < DEVICES / of; i += 1)
            sharers.push(await provision(cluster.http, `cl1-s${of}-${String(i).padStart(2, "0")}`));
          const joined = await gen.connect(
            cluster.mqtt,
            sharers.map((d) => deviceClient(d, { group })),
          );
          if (joined.failed > 0) throw new Error(`cluster: ${joined.failed} connections failed: ${joined.firstError}`);
          const rate = Math.round(fixedRate / of);
          const share = await measure(rate, STEP_SECONDS, group);
          run.shares.push({ nodes: of, rate, per10k: share.nodesPer10k });
          ctx.say(
            `cluster 1: at ${rate} msgs/s (a ${of}-node cluster's share): ${share.nodesPer10k.toFixed(2)} node CPU-s per 10,000`,
          );
        }
      }
      if (nodes >= 2) {
        // The target is for a loaded cluster: the devices publish 1,000 msgs/s through the front meanwhile.
        const background = gen.run({
          rate: PROPAGATION_LOAD,
          qos: 1,
          durationMs: 10_000,
          drainTimeoutMs: 10_000,
          maxOutstanding: WINDOW,
          stamps: "seq",
          delivered: (t) => t.acked,
        });
        await sleep(1000);
        run.propagation = await propagation(cluster);
        const load = await background;
        run.propagationLoad = { rate: PROPAGATION_LOAD, acked: load.acked, seconds: load.seconds };
        ctx.say(
          `cluster ${nodes}: change node-1 -> every other node p50 ${run.propagation.p50} ms, p99 ${run.propagation.p99} ms`,
        );
        run.action = await actionAcross(cluster, nodes);
        ctx.say(
          `cluster ${nodes}: telemetry node-1 -> action node-2 p50 ${run.action.p50} ms, p99 ${run.action.p99} ms`,
        );
      }
      if (nodes === 3) {
        run.failover = await failover(cluster);
        ctx.say(`cluster 3: partitions of the killed node all owned again after ${run.failover.ms} ms`);
      }
      runs.push(run);
    } finally {
      await gen.close();
      await cluster.stop();
    }
  }
  return {
    devices: DEVICES,
    window: WINDOW,
    offered: OFFERED,
    stepSeconds: STEP_SECONDS,
    warmupSeconds: WARMUP_SECONDS,
    runs,
  };
}

/** Waits (up to 30 s) until InfluxDB holds the step's acknowledged records, then counts them and their distinct sequence numbers. */
async function storedOnce(
  ctx: BenchContext,
  db: string,
  sinceMs: number,
  acked: number,
): Promise<ClusterRun["stored"]> {
  const url = ctx.influxd().url;
  const count = async () => {
    let stored = 0;
    let distinct = 0;
    for (const d of (await storedPerDevice(url, db, sinceMs)).values()) {
      stored += d.count;
      distinct += d.distinct;
    }
    return { stored, distinct };
  };
  const until = Date.now() + 30_000;
  let seen = await count();
  while (seen.stored < acked && Date.now() < until) {
    await sleep(250);
    seen = await count();
  }
  return { acked, ...seen, missing: Math.max(0, acked - seen.distinct), duplicates: seen.stored - seen.distinct };
}

const SAMPLES = 100;

/** A consent change through node 1's own address, until every other node's own address answers it: SAMPLES times. */
async function propagation(cluster: RunningCluster): Promise<LatencySummary> {
  const [n1, ...others] = cluster.nodes as [Addresses["nodes"][number], ...Addresses["nodes"]];
  const subject = "cl-prop";
  const histogram = latencyHistogram();
  for (let i = 0; i < SAMPLES; i += 1) {
    const analytics = i % 2 === 0;
    const res = await consent(n1.http, subject, analytics);
    if (res.status !== 200) throw new Error(`consent on node-1: ${res.status}`);
    const changed = performance.now();
    await Promise.all(
      others.map((n) =>
        waitFor(
          `a consent change on ${n.id}`,
          10_000,
          async () => {
            const seen = await call(n.http, "GET", `/api/subjects/${subject}/consent`);
            const now = (seen.body as { consent?: { analytics?: boolean } } | undefined)?.consent?.analytics;
            return seen.status === 200 && now === analytics;
          },
          1,
        ),
      ),
    );
    histogram.recordMs(performance.now() - changed);
  }
  return histogram.summary();
}

/** Device A on node 1 publishes hot telemetry; its customer's device B on node 2 gets the rule's action. */
async function actionAcross(cluster: RunningCluster, nodes: number): Promise<LatencySummary> {
  const [n1, n2] = cluster.nodes as [Addresses["nodes"][number], Addresses["nodes"][number]];
  const subject = `cl-act-${nodes}`;
  const posted = await call(cluster.http, "POST", "/api/rules", ACTION_RULE, "application/yaml");
  if (posted.status !== 201) throw new Error(`POST /api/rules: ${posted.status} ${JSON.stringify(posted.body)}`);
  if ((await consent(cluster.http, subject, true)).status !== 200) throw new Error("consent for the action customer");
  const a = await provision(n1.http, `${subject}-a`, subject);
  const b = await provision(n2.http, `${subject}-b`, subject);
  // The rule and the links, on every node.
  for (const n of cluster.nodes)
    await waitFor(`the rule on ${n.id}`, 15_000, async () => {
      const rules = await call(n.http, "GET", "/api/rules");
      return (rules.body as Array<{ id: string }>).some((r) => r.id === "bench-cluster-action");
    });
  const connect = (url: string, d: BenchDevice) =>
    mqtt.connectAsync(url, { clientId: d.id, username: d.id, password: d.token, reconnectPeriod: 0 });
  const onA = await connect(n1.mqtt, a);
  const onB = await connect(n2.mqtt, b);
  try {
    const waiting = new Map<number, () => void>();
    onB.on("message", (_topic, payload) => {
      const action = JSON.parse(payload.toString()) as { value?: { seq?: number } };
      const seq = action.value?.seq;
      if (seq !== undefined) waiting.get(Number(seq))?.();
    });
    await onB.subscribeAsync(`devices/${b.id}/actions`, { qos: 1 });
    const send = async (seq: number, timeoutMs: number) => {
      const received = new Promise<boolean>((resolve) => {
        waiting.set(seq, () => resolve(true));
        setTimeout(() => resolve(false), timeoutMs);
      });
      const at = performance.now();
      await onA.publishAsync(`devices/${a.id}/telemetry`, JSON.stringify({ subject, metrics: { hot: 1, seq } }), {
        qos: 1,
      });
      const ok = await received;
      waiting.delete(seq);
      return ok ? performance.now() - at : undefined;
    };
    // Until the first action comes through: the rule, the consent and both links are in place everywhere.
    let seq = 0;
    await waitFor("a first action across nodes", 20_000, async () => (await send((seq += 1), 1000)) !== undefined, 0);
    const histogram = latencyHistogram();
    let missed = 0;
    for (let i = 0; i < SAMPLES; i += 1) {
      const ms = await send((seq += 1), 5000);
      if (ms === undefined) missed += 1;
      else histogram.recordMs(ms);
      await sleep(10);
    }
    if (missed > 0)
      process.stderr.write(`bench: cluster ${nodes}: ${missed} of ${SAMPLES} actions did not arrive within 5 s\n`);
    return histogram.summary();
  } finally {
    await Promise.all([onA.endAsync(), onB.endAsync()]);
  }
}

/** kill -9 of node 3 once it owns its share, until node 1 answers every partition owned by a live node. */
async function failover(cluster: RunningCluster): Promise<{ ms: number; partitionsOfDead: number }> {
  const [n1, , n3] = cluster.nodes as [Addresses["nodes"][number], unknown, Addresses["nodes"][number]];
  const owned = await waitFor("node-3 owning partitions", 30_000, async () => {
    const now = await partitions(n1.http);
    const mine = now.filter((p) => p.owner === n3.id).length;
    return now.every((p) => p.owner !== null) && mine >= 8 && mine;
  });
  const killed = performance.now();
  process.kill(n3.pid, "SIGKILL");
  await waitFor(
    "the killed node's partitions owned again",
    60_000,
    async () => (await partitions(n1.http)).every((p) => p.owner !== null && p.owner !== n3.id),
    25,
  );
  return { ms: Math.round(performance.now() - killed), partitionsOfDead: owned };
}
