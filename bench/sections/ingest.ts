import path from "node:path";
import { ADMIN_TOKEN, profileArgs, deviceClient, sleep, type BenchContext } from "../context.ts";
import { seedDevices, type BenchDevice } from "../fleet.ts";
import { httpLoad } from "../http-load.ts";
import { influxCeiling, type PeerResult } from "../influx-peer.ts";
import { compareStored, createDatabase, pointsSince, pointsWritten, storedPerDevice } from "../influx.ts";
import type { LatencySummary } from "../latency.ts";
import { LoadGenerator, type RunResult } from "../load/generator.ts";
import { startMosquitto } from "../peers/mosquitto.ts";
import { ingestFlow, startNodeRed } from "../peers/node-red.ts";
import { startRefeed, type RunningRefeed } from "../refeed-process.ts";
import { quiet, runStep, type StepRow } from "../scenario.ts";
import { stepUp, type Search } from "../steps.ts";

/** One pipeline into InfluxDB under one shape of load. */
export interface Pipeline {
  name: string;
  /** Records per publish. */
  records: number;
  search: Search<StepRow>;
}

export interface IngestSection {
  devices: number;
  ceiling: PeerResult & { batchSize: number; inFlight: number };
  pipelines: Pipeline[];
  http: {
    records: number;
    seconds: number;
    perSecond: number;
    latency: LatencySummary;
    lost: number;
    duplicated: number;
    devices: number;
    batch: number;
  };
  outage: {
    rate: number;
    downSeconds: number;
    ackedWhileDown: number;
    spooledPoints: number;
    replaySeconds: number;
    total: number;
    lost: number;
    duplicated: number;
  };
  versions: { nodeRed: string; mosquitto: string };
}

const DEVICES = 50;
const BATCH = 100;

/**
 * Ingest into the same InfluxDB, one pipeline after the other: the
 * InfluxDB-only ceiling, Refeed, and Mosquitto + Node-RED, each under
 * single-record publishes and 100-record publishes (the contract's batch),
 * at QoS 1 from 50 devices. Every point is counted back from InfluxDB.
 */
export async function benchIngest(ctx: BenchContext): Promise<IngestSection> {
  const { say } = ctx;
  const influx = ctx.influxd();
  const batchSize = 5000;
  const inFlight = 4;
  say(`InfluxDB-only ceiling: pre-built line protocol, ${batchSize}-point batches, ${inFlight} in flight`);
  const ceiling = await influxCeiling({
    url: influx.url,
    db: "bench_ceiling",
    batchSize,
    inFlight,
    durationMs: (ctx.quick ? 4 : 20) * 1000,
    devices: DEVICES,
  });
  say(`  ${Math.round(ceiling.pointsPerSecond).toLocaleString("en-US")} points/s`);

  const refeed = await refeedPipelines(ctx);
  const peers = await nodeRedPipelines(ctx);
  return {
    devices: DEVICES,
    ceiling: { ...ceiling, batchSize, inFlight },
    pipelines: [...refeed.pipelines, ...peers.pipelines],
    http: refeed.http,
    outage: refeed.outage,
    versions: peers.versions,
  };
}

const ids = (prefix: string) =>
  Array.from({ length: DEVICES }, (_, i) => ({ id: `${prefix}-${String(i).padStart(2, "0")}` }));

/** Sustained points/s for both shapes of load; starting rates are publishes/s. */
async function searchBoth(
  ctx: BenchContext,
  name: string,
  run: (records: number, rate: number) => Promise<StepRow>,
): Promise<Pipeline[]> {
  const out: Pipeline[] = [];
  for (const records of [1, BATCH]) {
    ctx.say(`${name}: ${records === 1 ? "one record" : `${records} records`} per publish, QoS 1`);
    const start = records === 1 ? (ctx.quick ? 8000 : 2000) : ctx.quick ? 400 : 100;
    const search = await stepUp({
      start,
      max: records === 1 ? 128_000 : 4000,
      refine: ctx.refine,
      run: (rate) => run(records, rate),
      judge: (row) => row.verdict,
      say: ctx.say,
    });
    out.push({ name, records, search });
  }
  return out;
}

async function refeedPipelines(ctx: BenchContext) {
  const db = "bench_ingest";
  const influx = ctx.influxd();
  await createDatabase(influx.url, db);
  const devices = await seedDevices(influx.url, db, [...ids("mqtt"), ...ids("http"), ...ids("outage")]);
  const group = (prefix: string) => devices.filter((d) => d.id.startsWith(`${prefix}-`));
  let refeed: RunningRefeed | undefined = await startRefeed({
    influxUrl: influx.url,
    db,
    dataDir: path.join(ctx.dir, "refeed-ingest"),
    adminToken: ADMIN_TOKEN,
    nodeArgs: profileArgs(ctx, "ingest"),
  });
  const gen = await LoadGenerator.start(2);
  try {
    const r = refeed;
    await gen.connect(
      r.mqtt,
      group("mqtt").map((d) => deviceClient(d, { subscribe: [] })),
    );
    await gen.connect(
      r.mqtt,
      group("outage").map((d) => deviceClient(d, { subscribe: [], group: "outage" })),
    );
    const processes = { refeed: () => r.pid, influxd: () => ctx.influxd().pid };
    const settle = () => quiet(() => pointsWritten(ctx.influxd().url, db));
    // Delivered means in InfluxDB, as for Node-RED: when InfluxDB falls behind, Refeed acknowledges from its
    // spool, which takes the load for a while but is no sustained rate into InfluxDB.
    const pipelines = await searchBoth(ctx, "Refeed", async (records, rate) =>
      runStep({
        gen,
        processes,
        latency: "ack",
        settle,
        plan: {
          rate,
          records,
          qos: 1,
          stamps: "seq",
          perClient: true,
          durationMs: ctx.stepSeconds * 1000,
          drainTimeoutMs: ctx.quick ? 5000 : 15_000,
          delivered: (t) => Math.min(t.acked, t.stored),
          stored: await pointsSince(ctx.influxd().url, db),
        },
        // A PUBACK may mean "in the spool" (InfluxDB slower than the load): count once it is replayed.
        check: async (run, since) => {
          await refeedWritten(r);
          return checkAcked(ctx.influxd().url, db, run, since);
        },
      }),
    );

    ctx.say(`Refeed: HTTP ingest, ${DEVICES} devices posting ${BATCH}-record batches`);
    const httpRun = await httpLoad({
      http: r.http,
      devices: group("http"),
      batch: BATCH,
      warmupMs: 1000,
      durationMs: (ctx.quick ? 3 : 15) * 1000,
    });
    // An answer means durable in the commit log: count once InfluxDB has everything.
    await refeedWritten(r);
    const httpStored = await storedPerDevice(ctx.influxd().url, db, 0);
    const httpCheck = compareStored(new Map([...httpRun.acked].filter(([d]) => d.startsWith("http-"))), httpStored);

    const outage = await outageRun(ctx, gen, r, db, pipelines);
    return {
      pipelines,
      http: { ...httpRun, lost: httpCheck.lost, duplicated: httpCheck.duplicated, devices: DEVICES, batch: BATCH },
      outage,
    };
  } finally {
    await gen.close();
    await refeed?.stop();
    refeed = undefined;
  }
}

/** Waits until Refeed has nothing in its spool or its write queue: what it acknowledged is all in InfluxDB. */
export async function refeedWritten(refeed: RunningRefeed, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (
    (await refeed.metric("refeed_ingest_spooling")) !== 0 ||
    (await refeed.metric("refeed_ingest_pending_points")) !== 0
  ) {
    if (Date.now() > deadline) throw new Error(`Refeed did not finish writing its spool within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/** Every acknowledged record of the run stored exactly once, per device. */
async function checkAcked(url: string, db: string, run: RunResult, since: number) {
  const acked = Object.fromEntries(Object.entries(run.perClient).map(([d, c]) => [d, c.acked]));
  const { lost, duplicated } = compareStored(acked, await storedPerDevice(url, db, since));
  return { lost, duplicated };
}

/**
 * InfluxDB is stopped for a while under QoS 1 load at half the sustained
 * single-record rate: PUBACKs go on from the fsync'd spool, and once InfluxDB
 * is back the spool is replayed; every acknowledged record is then stored once.
 */
async function outageRun(
  ctx: BenchContext,
  gen: LoadGenerator,
  refeed: RunningRefeed,
  db: string,
  pipelines: Pipeline[],
) {
  const sustained = pipelines.find((p) => p.records === 1)?.search.sustained?.rate ?? 2000;
  const rate = Math.max(500, Math.round(sustained / 2));
  const downSeconds = ctx.quick ? 3 : 15;
  const seconds = downSeconds + (ctx.quick ? 2 : 10);
  ctx.say(
    `Refeed: InfluxDB stopped for ${downSeconds} s under ${rate.toLocaleString("en-US")} publishes/s at QoS 1, then restarted`,
  );
  await quiet(() => pointsWritten(ctx.influxd().url, db));
  const since = Date.now();
  let ackedWhileDown = 0;
  let spooledPoints = 0;
  let restartedAt = 0;
  const run = await gen.run({
    rate,
    qos: 1,
    group: "outage",
    stamps: "seq",
    perClient: true,
    durationMs: seconds * 1000,
    drainTimeoutMs: 60_000,
    delivered: (t) => t.acked,
    async during(live) {
      await sleep(1000);
      await ctx.restartInfluxd(async () => {
        const before = live().acked;
        await sleep(downSeconds * 1000);
        ackedWhileDown = live().acked - before;
        spooledPoints = await refeed.metric("refeed_ingest_spool_points");
        restartedAt = performance.now();
      });
    },
  });
  await refeedWritten(refeed);
  const replaySeconds = (performance.now() - restartedAt) / 1000;
  const check = await checkAcked(ctx.influxd().url, db, run, since);
  return { rate, downSeconds, ackedWhileDown, spooledPoints, replaySeconds, total: run.acked, ...check };
}

async function nodeRedPipelines(ctx: BenchContext) {
  const db = "bench_nodered";
  const influx = ctx.influxd();
  await createDatabase(influx.url, db);
  const devices: BenchDevice[] = ids("nr").map((d) => ({ id: d.id, token: `pw-${d.id}` }));
  const mosquitto = await startMosquitto({
    binary: ctx.mosquitto,
    dir: ctx.dir,
    users: [
      ...devices.map((d) => ({ username: d.id, password: d.token })),
      { username: "node-red", password: "node-red-pw" },
    ],
    acl: "user node-red\ntopic read devices/+/telemetry\ntopic write devices/+/actions\n",
  });
  const gen = await LoadGenerator.start(2);
  let nodeRedVersion = "unknown";
  try {
    await gen.connect(
      mosquitto.url,
      devices.map((d) => deviceClient(d, { subscribe: [] })),
    );
    const mqtt = { port: Number(new URL(mosquitto.url).port), username: "node-red", password: "node-red-pw" };
    const pipelines: Pipeline[] = [];
    for (const records of [1, BATCH]) {
      // A flow per shape of load: single records go through a join node (see ingestFlow).
      const nodeRed = await startNodeRed({
        install: ctx.nodeRed,
        dir: path.join(ctx.dir, `node-red-${records}`),
        flow: ingestFlow(mqtt, { port: Number(new URL(influx.url).port), db }, { join: records === 1 }),
        mqtt,
      });
      nodeRedVersion = nodeRed.version;
      try {
        const processes = {
          "node-red": () => nodeRed.pid,
          mosquitto: () => mosquitto.pid,
          influxd: () => ctx.influxd().pid,
        };
        const settle = () => quiet(() => pointsWritten(ctx.influxd().url, db));
        ctx.say(`Mosquitto + Node-RED: ${records === 1 ? "one record" : `${records} records`} per publish, QoS 1`);
        const start = records === 1 ? (ctx.quick ? 2000 : 1000) : ctx.quick ? 400 : 25;
        const search = await stepUp<StepRow>({
          start,
          max: records === 1 ? 128_000 : 4000,
          refine: ctx.refine,
          say: ctx.say,
          judge: (row) => row.verdict,
          run: async (rate) =>
            runStep({
              gen,
              processes,
              latency: "ack",
              settle,
              plan: {
                rate,
                records,
                qos: 1,
                stamps: "seq",
                perClient: true,
                durationMs: ctx.stepSeconds * 1000,
                drainTimeoutMs: ctx.quick ? 5000 : 15_000,
                delivered: (t) => t.stored,
                stored: await pointsSince(ctx.influxd().url, db),
              },
              check: async (run, since) => {
                const sent = Object.fromEntries(Object.entries(run.perClient).map(([d, c]) => [d, c.sent]));
                return compareStored(sent, await storedPerDevice(ctx.influxd().url, db, since));
              },
            }),
        });
        pipelines.push({ name: "Mosquitto + Node-RED", records, search });
      } finally {
        await nodeRed.stop();
      }
    }
    return { pipelines, versions: { nodeRed: nodeRedVersion, mosquitto: mosquitto.version } };
  } finally {
    await gen.close();
    await mosquitto.stop();
  }
}
