import path from "node:path";
import mqtt from "mqtt";
import { connect } from "../../sdk/index.ts";
import { ADMIN_TOKEN, type BenchContext } from "../context.ts";
import { startRefeed } from "../refeed-process.ts";

/** One client's cost over one round: the benchmark process's CPU per publish, and the rate it reached. */
export interface ClientRound {
  cpuMicrosPerPublish: number;
  publishesPerSecond: number;
}

export interface SdkSection {
  publishes: number;
  rounds: number;
  window: number;
  bare: ClientRound[];
  sdk: ClientRound[];
  /** Median SDK CPU per publish over median bare mqtt.js CPU per publish. */
  ratio: number;
}

/** QoS 1 publishes with `window` waiting for their PUBACK at once; the CPU of this process per publish. */
async function measure(
  publishes: number,
  window: number,
  publish: (seq: number) => Promise<void>,
): Promise<ClientRound> {
  const cpu = process.cpuUsage();
  const began = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < publishes) await publish(next++);
  };
  await Promise.all(Array.from({ length: window }, lane));
  const seconds = (performance.now() - began) / 1000;
  const used = process.cpuUsage(cpu);
  return { cpuMicrosPerPublish: (used.user + used.system) / publishes, publishesPerSecond: publishes / seconds };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function provision(http: string, id: string): Promise<string> {
  const res = await fetch(`${http}/api/devices`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ id }),
  });
  if (res.status !== 201) throw new Error(`provisioning ${id}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

/**
 * What the device SDK costs a device per publish, against the same publish made with bare mqtt.js:
 * the same telemetry record (with `ts`), QoS 1, the same window in flight, TCP_NODELAY on both, to
 * the same Refeed (a process of its own, so its CPU is not counted). The SDK adds the contract check
 * with ingest's zod schemas, the `ts` stamp, the offline-queue and PUBACK bookkeeping and a promise.
 * Rounds alternate between the two clients, so a busy moment of the shared machine hits both.
 */
export async function benchSdk(ctx: BenchContext): Promise<SdkSection> {
  const publishes = ctx.quick ? 5000 : 20_000;
  const rounds = ctx.quick ? 3 : 5;
  const window = 50;
  ctx.say(`sdk: ${rounds} rounds of ${publishes.toLocaleString("en-US")} QoS 1 publishes, SDK and bare mqtt.js`);
  const refeed = await startRefeed({
    influxUrl: ctx.influxd().url,
    db: "bench_sdk",
    dataDir: path.join(ctx.dir, "refeed-sdk"),
    adminToken: ADMIN_TOKEN,
    // The per-device publish rate (50/s) would refuse a benchmark; the cost per publish is the question here.
    env: { REFEED_MQTT_PUBLISH_RATE: "1000000", REFEED_MQTT_PUBLISH_BURST: "1000000" },
  });
  try {
    const bareToken = await provision(refeed.http, "bench-bare");
    const sdkToken = await provision(refeed.http, "bench-sdk");
    const bare = await mqtt.connectAsync(refeed.mqtt, {
      clientId: "bench-bare",
      username: "bench-bare",
      password: bareToken,
      protocolVersion: 4,
      clean: false,
      reconnectPeriod: 0,
    });
    (bare.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    const device = await connect({ url: refeed.mqtt, id: "bench-sdk", token: sdkToken });
    let lastTs = 0;
    const bareOne = async (seq: number) => {
      const ts = Math.max(Date.now(), lastTs + 1);
      lastTs = ts;
      await bare.publishAsync("devices/bench-bare/telemetry", JSON.stringify({ ts, metrics: { temp: 21.5, seq } }), {
        qos: 1,
      });
    };
    const sdkOne = (seq: number) => device.telemetry({ metrics: { temp: 21.5, seq } });
    // Warm up both (JIT, the platform's first batches), then alternate.
    await measure(2000, window, bareOne);
    await measure(2000, window, sdkOne);
    const results: SdkSection = { publishes, rounds, window, bare: [], sdk: [], ratio: 0 };
    for (let i = 0; i < rounds; i += 1) {
      results.bare.push(await measure(publishes, window, bareOne));
      results.sdk.push(await measure(publishes, window, sdkOne));
    }
    results.ratio =
      median(results.sdk.map((r) => r.cpuMicrosPerPublish)) / median(results.bare.map((r) => r.cpuMicrosPerPublish));
    ctx.say(`sdk: ${results.ratio.toFixed(2)}x the CPU per publish of bare mqtt.js`);
    await device.close();
    await bare.endAsync();
    return results;
  } finally {
    await refeed.stop();
  }
}

/** The section of the report. */
export function renderSdk(s: SdkSection): string {
  const row = (name: string, rounds: ClientRound[]) => {
    const cpu = rounds.map((r) => r.cpuMicrosPerPublish);
    const rate = rounds.map((r) => r.publishesPerSecond);
    return `| ${name} | ${median(cpu).toFixed(1)} (${Math.min(...cpu).toFixed(1)}-${Math.max(...cpu).toFixed(1)}) | ${Math.round(median(rate)).toLocaleString("en-US")} |`;
  };
  return `## Device SDK: cost per publish

What \`refeed/device\` costs a device per QoS 1 telemetry publish, against bare mqtt.js sending the same
record (with \`ts\`) to the same Refeed: ${s.rounds} alternating rounds of ${s.publishes.toLocaleString("en-US")} publishes each,
${s.window} in flight, TCP_NODELAY on both; CPU of the client process only (Refeed runs in its own).

| client | CPU µs per publish, median (min-max) | publishes/s, median |
|---|---|---|
${row("bare mqtt.js", s.bare)}
${row("device SDK", s.sdk)}

**The SDK costs ${s.ratio.toFixed(2)}x bare mqtt.js per publish** (target: at most 1.2x): the contract check with
ingest's own zod schemas, the \`ts\` stamp, queue and PUBACK bookkeeping and a promise per publish.
`;
}
