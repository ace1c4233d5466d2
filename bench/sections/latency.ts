import path from "node:path";
import { ADMIN_TOKEN, profileArgs, deviceClient, rulesDir, type BenchContext } from "../context.ts";
import { seedDevices, type BenchDevice } from "../fleet.ts";
import { createDatabase } from "../influx.ts";
import { LoadGenerator } from "../load/generator.ts";
import { startMosquitto } from "../peers/mosquitto.ts";
import { startNodeRed, thresholdFlow } from "../peers/node-red.ts";
import { startRefeed } from "../refeed-process.ts";
import { runStep, type StepRow } from "../scenario.ts";
import { stepUp, type Search } from "../steps.ts";

export interface LatencyPoint {
  /** What the rate is: idle, 50% or 80% of the sustained rate, or the target's 1,000 msgs/s. */
  label: string;
  row: StepRow;
}

export interface LatencyRun {
  name: string;
  search: Search<StepRow>;
  points: LatencyPoint[];
}

export interface LatencySection {
  devices: number;
  runs: LatencyRun[];
}

const DEVICES = 20;
export const THRESHOLD_RULE = `id: bench-threshold
description: The benchmark's threshold rule; Node-RED runs the same as a flow
on: telemetry
when: msg.metrics.temp > 30
then:
  - set: bench.last
    expr: "{'r': msg.metrics.r, 'w': msg.metrics.w, 'seq': msg.metrics.seq, 't': msg.metrics.t}"
`;

/**
 * Telemetry in -> action out: every message is hot and fires the threshold
 * rule, whose action comes back to the device that sent it. The sustained
 * rate of this path is found in steps first; then the latency at idle, at
 * 50% and 80% of it, and at 1,000 msgs/s. Refeed stores the telemetry,
 * evaluates the rule on it, logs the action and delivers it (QoS 1); the
 * Node-RED flow only evaluates and publishes.
 */
export async function benchLatency(ctx: BenchContext): Promise<LatencySection> {
  return { devices: DEVICES, runs: [await refeedLatency(ctx), await nodeRedLatency(ctx)] };
}

const ids = Array.from({ length: DEVICES }, (_, i) => ({ id: `lat-${String(i).padStart(2, "0")}` }));

/**
 * The search ends with overloaded steps, which leave backlogs behind (queued
 * actions, redeliveries); so the sustained rate is found on one system, and
 * the latency points run on a fresh one (`fresh`), each from a drained state.
 */
async function measure(ctx: BenchContext, name: string, system: () => Promise<System>): Promise<LatencyRun> {
  ctx.say(`${name}: telemetry -> action, sustained rate`);
  let current = await system();
  let search: Search<StepRow>;
  try {
    search = await stepUp({
      start: ctx.quick ? 2000 : 500,
      max: 64_000,
      refine: ctx.refine,
      run: (rate) => current.run(rate, ctx.stepSeconds),
      judge: (row) => row.verdict,
      say: ctx.say,
    });
  } finally {
    await current.stop();
  }
  const sustained = search.sustained?.rate ?? 0;
  const seconds = ctx.quick ? 3 : 20;
  const points: LatencyPoint[] = [];
  const at = [
    { label: "idle (20 msgs/s)", rate: 20 },
    ...(sustained > 0
      ? [
          { label: "50% of sustained", rate: Math.round(sustained * 0.5) },
          { label: "80% of sustained", rate: Math.round(sustained * 0.8) },
        ]
      : []),
    { label: "1,000 msgs/s", rate: 1000 },
  ];
  current = await system();
  try {
    for (const { label, rate } of at) {
      const row = await current.run(rate, seconds);
      ctx.say(
        `  ${label}, ${rate.toLocaleString("en-US")}/s: p50 ${row.latency.p50} ms, p99 ${row.latency.p99} ms, p99.9 ${row.latency.p999} ms${row.verdict.ok ? "" : ` (${row.verdict.why})`}`,
      );
      points.push({ label, row });
    }
  } finally {
    await current.stop();
  }
  return { name, search, points };
}

/** One step of hot telemetry at `rate`, timed from publish to the action's receipt: the same for every system. */
function hotStep(
  ctx: BenchContext,
  gen: LoadGenerator,
  processes: Record<string, () => number | undefined>,
): System["run"] {
  return (rate, seconds) =>
    runStep({
      gen,
      processes,
      latency: "receive",
      plan: {
        rate,
        qos: 1,
        hot: true,
        durationMs: seconds * 1000,
        drainTimeoutMs: ctx.quick ? 5000 : 15_000,
        delivered: (t) => t.received,
      },
    });
}

export interface System {
  run(rate: number, seconds: number): Promise<StepRow>;
  stop(): Promise<void>;
}

let systems = 0;

async function refeedLatency(ctx: BenchContext): Promise<LatencyRun> {
  return measure(ctx, "Refeed", () => refeedSystem(ctx));
}

/** A fresh Refeed with the threshold rule and its 20 devices connected, on a database of its own. */
export async function refeedSystem(ctx: BenchContext): Promise<System> {
  const db = `bench_latency_${(systems += 1)}`;
  const influx = ctx.influxd();
  await createDatabase(influx.url, db);
  const devices = await seedDevices(influx.url, db, ids);
  const refeed = await startRefeed({
    influxUrl: influx.url,
    db,
    dataDir: path.join(ctx.dir, `refeed-latency-${systems}`),
    adminToken: ADMIN_TOKEN,
    rulesDir: await rulesDir(ctx, "rules-latency", { "threshold.yaml": THRESHOLD_RULE }),
    nodeArgs: profileArgs(ctx, "latency"),
  });
  const gen = await LoadGenerator.start(2);
  await gen.connect(
    refeed.mqtt,
    devices.map((d) => deviceClient(d)),
  );
  const processes = { refeed: () => refeed.pid, influxd: () => ctx.influxd().pid };
  return {
    run: hotStep(ctx, gen, processes),
    async stop() {
      await gen.close();
      await refeed.stop();
    },
  };
}

async function nodeRedLatency(ctx: BenchContext): Promise<LatencyRun> {
  const devices: BenchDevice[] = ids.map((d) => ({ id: d.id, token: `pw-${d.id}` }));
  return measure(ctx, "Mosquitto + Node-RED", async () => {
    const mosquitto = await startMosquitto({
      binary: ctx.mosquitto,
      dir: ctx.dir,
      users: [
        ...devices.map((d) => ({ username: d.id, password: d.token })),
        { username: "node-red", password: "node-red-pw" },
      ],
      acl: "user node-red\ntopic read devices/+/telemetry\ntopic write devices/+/actions\n",
    });
    const mqtt = { port: Number(new URL(mosquitto.url).port), username: "node-red", password: "node-red-pw" };
    const nodeRed = await startNodeRed({
      install: ctx.nodeRed,
      dir: path.join(ctx.dir, `node-red-latency-${(systems += 1)}`),
      flow: thresholdFlow(mqtt),
      mqtt,
    });
    const gen = await LoadGenerator.start(2);
    await gen.connect(
      mosquitto.url,
      devices.map((d) => deviceClient(d)),
    );
    const processes = { "node-red": () => nodeRed.pid, mosquitto: () => mosquitto.pid };
    return {
      run: hotStep(ctx, gen, processes),
      async stop() {
        await gen.close();
        await nodeRed.stop();
        await mosquitto.stop();
      },
    };
  });
}
