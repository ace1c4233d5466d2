import path from "node:path";
import { ADMIN_TOKEN, profileArgs, deviceClient, optIn, rulesDir, sleep, type BenchContext } from "../context.ts";
import { seedDevices } from "../fleet.ts";
import { compareStored, createDatabase, pointsSince, pointsWritten, storedPerDevice } from "../influx.ts";
import { LoadGenerator, type ClientSpec, type RunPlan, type RunResult } from "../load/generator.ts";
import { collectGarbage } from "../inspector.ts";
import { rssBytes } from "../machine.ts";
import { startMosquitto } from "../peers/mosquitto.ts";
import { startRefeed } from "../refeed-process.ts";
import { refeedWritten } from "./ingest.ts";
import { quiet, runStep, type StepRow } from "../scenario.ts";
import { stepUp, type Search } from "../steps.ts";

export interface BrokerRun {
  name: string;
  version: string;
  connections: number;
  connectSeconds: number;
  /**
   * Resident set (and V8 heap, for Refeed) before any device connected, after
   * the first 1,000, and after 1,000 more idle ones: the second difference is
   * the marginal cost, without one-off costs (code, caches, heap growth).
   */
  memory: {
    rss: [number, number, number];
    heap: [number, number, number] | undefined;
    firstMiB: number;
    marginalMiB: number;
    heapMarginalMiB: number | undefined;
  };
  fanInQos0: Search<StepRow>;
  fanInQos1: Search<StepRow>;
  fanOut: Search<StepRow>;
  /** Receivers of each fan-out message. */
  fanOutReceivers: number;
}

export interface BrokerSection {
  publishers: number;
  runs: BrokerRun[];
}

const PUBLISHERS = 1000;
const FANOUT_RULE = `id: bench-fanout
description: One message sets a key for the customer; every touchpoint gets the action
on: telemetry
scope: subject
when: msg.subject == "fan"
then:
  - set: bench.fanout
    expr: "{'r': msg.metrics.r, 'w': msg.metrics.w, 'seq': msg.metrics.seq, 't': msg.metrics.t}"
`;

const ids = Array.from({ length: PUBLISHERS }, (_, i) => `dev-${String(i).padStart(4, "0")}`);
/** A second thousand that only connect and stay idle, for the marginal memory per 1,000 connections. */
const idleIds = Array.from({ length: PUBLISHERS }, (_, i) => `idle-${String(i).padStart(4, "0")}`);
const MiB = 2 ** 20;

/**
 * Refeed's broker against Mosquitto with the same generator: 1,000 device
 * connections (each subscribed to its own actions), resident memory per
 * 1,000 idle connections, fan-in at QoS 0 and QoS 1 from all of them, and
 * fan-out of one message to 1,000 subscribers. Each broker delivers to what
 * it is for: Refeed's broker hands telemetry to ingest (the QoS 1 PUBACK waits
 * until it is durable in InfluxDB); Mosquitto forwards it to a subscriber
 * (`devices/+/telemetry`), as Node-RED or another consumer would take it.
 */
export async function benchBrokers(ctx: BenchContext): Promise<BrokerSection> {
  const runs = [await refeedBroker(ctx), await mosquittoBroker(ctx)];
  return { publishers: PUBLISHERS, runs };
}

interface Target {
  gen: LoadGenerator;
  pid: number;
  /** A full garbage collection before a memory reading (Refeed, through its inspector). */
  collectGarbage?(): Promise<void>;
  processes: Record<string, () => number | undefined>;
  fanIn(qos: 0 | 1, rate: number): Promise<StepRow>;
  fanOut(rate: number): Promise<StepRow>;
}

/** Memory, then the three searches, the same for both brokers. */
async function measure(
  ctx: BenchContext,
  name: string,
  version: string,
  connect: (idle: boolean) => Promise<{ connected: number }>,
  target: Target,
  heap?: () => Promise<number>,
  fanOutReceivers = PUBLISHERS,
): Promise<BrokerRun> {
  const { say } = ctx;
  const reading = async () => {
    await sleep(2000);
    await target.collectGarbage?.();
    return { rss: await rssBytes(target.pid), heap: await heap?.() };
  };
  const r0 = await reading();
  const began = performance.now();
  const { connected } = await connect(false);
  const connectSeconds = (performance.now() - began) / 1000;
  const r1 = await reading();
  await connect(true);
  const r2 = await reading();
  const mib = (bytes: number) => bytes / MiB;
  const memory = {
    rss: [r0.rss, r1.rss, r2.rss] as [number, number, number],
    heap: r0.heap === undefined ? undefined : ([r0.heap, r1.heap!, r2.heap!] as [number, number, number]),
    firstMiB: mib(r1.rss - r0.rss),
    marginalMiB: mib(r2.rss - r1.rss),
    heapMarginalMiB: r0.heap === undefined ? undefined : mib(r2.heap! - r1.heap!),
  };
  say(
    `${name}: ${connected} connections in ${connectSeconds.toFixed(1)} s; resident set +${memory.firstMiB.toFixed(1)} MiB for the first 1,000, +${memory.marginalMiB.toFixed(1)} MiB for 1,000 more`,
  );
  const search = (what: string, start: number, max: number, run: (rate: number) => Promise<StepRow>) => {
    say(`${name}: ${what}`);
    return stepUp({ start, max, refine: ctx.refine, run, judge: (row) => row.verdict, say });
  };
  const fanInQos0 = await search("fan-in, QoS 0", ctx.quick ? 4000 : 2000, 128_000, (rate) => target.fanIn(0, rate));
  const fanInQos1 = await search("fan-in, QoS 1", ctx.quick ? 4000 : 2000, 128_000, (rate) => target.fanIn(1, rate));
  const fanOut = await search(
    `fan-out, one message to ${fanOutReceivers.toLocaleString("en-US")} subscribers`,
    ctx.quick ? 4 : 2,
    256,
    (rate) => target.fanOut(rate),
  );
  return {
    name,
    version,
    connections: connected,
    connectSeconds,
    memory,
    fanInQos0,
    fanInQos1,
    fanOut,
    fanOutReceivers,
  };
}

const step = (ctx: BenchContext, plan: Omit<RunPlan, "durationMs" | "drainTimeoutMs">): RunPlan => ({
  durationMs: ctx.stepSeconds * 1000,
  drainTimeoutMs: ctx.quick ? 5000 : 15_000,
  ...plan,
});

async function refeedBroker(ctx: BenchContext): Promise<BrokerRun> {
  const db = "bench_broker";
  const influx = ctx.influxd();
  await createDatabase(influx.url, db);
  const seeded = await seedDevices(influx.url, db, [
    ...ids.map((id) => ({ id, subject: "fan" })),
    ...idleIds.map((id) => ({ id })),
    { id: "hub", subject: "fan" },
  ]);
  const devices = seeded.filter((d) => ids.includes(d.id));
  const idle = seeded.filter((d) => idleIds.includes(d.id));
  const hub = seeded.find((d) => d.id === "hub")!;
  const refeed = await startRefeed({
    influxUrl: influx.url,
    db,
    dataDir: path.join(ctx.dir, "refeed-broker"),
    adminToken: ADMIN_TOKEN,
    rulesDir: await rulesDir(ctx, "rules-broker", { "fanout.yaml": FANOUT_RULE }),
    inspect: true,
    nodeArgs: profileArgs(ctx, "broker"),
  });
  const gen = await LoadGenerator.start(3);
  try {
    await optIn(refeed, "fan");
    const points = () => pointsWritten(influx.url, db);
    const settle = () => quiet(points);
    const processes = { refeed: () => refeed.pid, influxd: () => influx.pid };
    const perDevice = async (r: RunResult, since: number, qos: 0 | 1) => {
      await refeedWritten(refeed);
      const expected = Object.fromEntries(
        Object.entries(r.perClient).map(([d, c]) => [d, qos === 1 ? c.acked : c.sent]),
      );
      const stored = await storedPerDevice(influx.url, db, since);
      const { lost, duplicated } = compareStored(expected, stored);
      return { lost, duplicated };
    };
    const target: Target = {
      gen,
      pid: refeed.pid,
      processes,
      collectGarbage: () => collectGarbage(refeed.inspector!),
      async fanIn(qos, rate) {
        return runStep({
          gen,
          processes,
          latency: "ack",
          settle,
          // Delivered means in InfluxDB at either QoS (a PUBACK from the spool while InfluxDB falls behind is no sustained rate).
          plan: step(ctx, {
            rate,
            qos,
            stamps: "seq",
            perClient: true,
            delivered: (t) => (qos === 1 ? Math.min(t.acked, t.stored) : t.stored),
            stored: await pointsSince(influx.url, db),
          }),
          check: (r, since) => perDevice(r, since, qos),
        });
      },
      async fanOut(rate) {
        return runStep({
          gen,
          processes,
          latency: "receive",
          settle,
          plan: step(ctx, {
            rate,
            qos: 1,
            group: "hub",
            subject: "fan",
            expected: (sent) => sent * (PUBLISHERS + 1),
            delivered: (t) => t.received,
          }),
        });
      },
    };
    const connect = async (extra: boolean) => {
      const these = extra ? idle.map((d) => deviceClient(d, { group: "idle" })) : devices.map((d) => deviceClient(d));
      const answer = await gen.connect(refeed.mqtt, these, { worker: (i) => i % 2 });
      if (!extra) await gen.connect(refeed.mqtt, [deviceClient(hub, { group: "hub" })], { worker: () => 2 });
      if (answer.failed > 0)
        throw new Error(`Refeed: ${answer.failed} of ${these.length} connections failed: ${answer.firstError}`);
      return answer;
    };
    const heap = () => refeed.metric("nodejs_heap_size_used_bytes");
    return await measure(ctx, "Refeed", "this checkout", connect, target, heap, PUBLISHERS + 1);
  } finally {
    await gen.close();
    await refeed.stop();
  }
}

async function mosquittoBroker(ctx: BenchContext): Promise<BrokerRun> {
  const users = ids.map((id) => ({ username: id, password: `pw-${id}` }));
  const idleUsers = idleIds.map((id) => ({ username: id, password: `pw-${id}` }));
  const mosquitto = await startMosquitto({
    binary: ctx.mosquitto,
    dir: ctx.dir,
    users: [
      ...users,
      ...idleUsers,
      { username: "consumer", password: "consumer-pw" },
      { username: "hub", password: "hub-pw" },
    ],
    acl: "user consumer\ntopic read devices/#\nuser hub\ntopic write fanout/#\n\npattern read fanout/#",
  });
  const gen = await LoadGenerator.start(3);
  try {
    const processes = { mosquitto: () => mosquitto.pid };
    const target: Target = {
      gen,
      pid: mosquitto.pid,
      processes,
      fanIn: (qos, rate) =>
        runStep({
          gen,
          processes,
          latency: "receive",
          plan: step(ctx, { rate, qos, stamps: "full", delivered: (t) => t.received }),
        }),
      fanOut: (rate) =>
        runStep({
          gen,
          processes,
          latency: "receive",
          plan: step(ctx, {
            rate,
            qos: 1,
            group: "hub",
            expected: (sent) => sent * PUBLISHERS,
            delivered: (t) => t.received,
          }),
        }),
    };
    const connect = async (extra: boolean) => {
      const clients: ClientSpec[] = extra
        ? idleUsers.map((u) => ({
            clientId: u.username,
            username: u.username,
            password: u.password,
            topic: `devices/${u.username}/telemetry`,
            group: "idle",
            subscribe: [`devices/${u.username}/actions`],
          }))
        : users.map((u) => ({
            clientId: u.username,
            username: u.username,
            password: u.password,
            topic: `devices/${u.username}/telemetry`,
            subscribe: [`devices/${u.username}/actions`, "fanout/all"],
          }));
      const answer = await gen.connect(mosquitto.url, clients, { worker: (i) => i % 2 });
      if (answer.failed > 0)
        throw new Error(
          `Mosquitto: ${answer.failed} of ${clients.length} connections failed: ${answer.firstError}\n${mosquitto.log}`,
        );
      if (extra) return answer;
      const consumers: ClientSpec[] = [
        { clientId: "consumer", username: "consumer", password: "consumer-pw", subscribe: ["devices/+/telemetry"] },
        { clientId: "hub", username: "hub", password: "hub-pw", topic: "fanout/all", subscribe: [], group: "hub" },
      ];
      await gen.connect(mosquitto.url, consumers, { worker: () => 2 });
      return answer;
    };
    return await measure(ctx, "Mosquitto", mosquitto.version, connect, target);
  } finally {
    await gen.close();
    await mosquitto.stop();
  }
}
