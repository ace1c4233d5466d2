import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { freePort, startInfluxd, type ManagedInfluxd } from "../store/influxd.ts";
import { httpLoad } from "./http-load.ts";
import { influxCeiling } from "./influx-peer.ts";
import { cpuMeter, machineFacts, rssSampler } from "./machine.ts";
import { startMqttLoad, type Device } from "./mqtt-load.ts";
import { startRefeed } from "./refeed-process.ts";
import { renderReport, type Results } from "./report.ts";
import { rulesReport } from "./rules.ts";
import { healthReport } from "./health.ts";

/**
 * `npm run bench [-- --quick] [-- --write]`: ingest throughput with zero loss
 * and latency percentiles, beside the InfluxDB-only ceiling, on this machine.
 */
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const write = args.includes("--write");
const unknown = args.filter((a) => a !== "--quick" && a !== "--write");
if (unknown.length > 0) {
  process.stderr.write(`bench: unknown option ${unknown.join(" ")}\nusage: npm run bench [-- --quick] [-- --write]\n`);
  process.exit(2);
}
const seconds = quick ? { peer: 8, warmup: 2, mqtt: 12, http: 8, outage: 5 } : { peer: 30, warmup: 5, mqtt: 40, http: 20, outage: 15 };
const DEVICES = 8;
const WINDOW = 64;
const ADMIN = "bench-admin-token-0123456789";
const log = pino({ level: "silent" });
const say = (text: string) => process.stderr.write(`bench: ${text}\n`);

async function main() {
  const began = Date.now();
  const machine = await machineFacts();
  const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-bench-"));
  const influxDir = path.join(dir, "influx");
  const port = await freePort();
  let influxd: ManagedInfluxd = await startInfluxd({ dataDir: influxDir, log, port });
  const influxRss = rssSampler(() => influxd.pid);
  /** Stops the Refeed process whatever happens, so a failed run leaves nothing behind. */
  let stopRefeed: (() => Promise<unknown>) | undefined;
  try {
    say(`InfluxDB-only ceiling: ${seconds.peer} s of pre-built 5000-line batches, 4 in flight`);
    const peer = await influxCeiling({ url: influxd.url, db: "bench_peer", batchSize: 5000, inFlight: 4, durationMs: seconds.peer * 1000, devices: DEVICES });
    const peerInfluxRss = influxRss.peak;

    const refeed = await startRefeed({ influxUrl: influxd.url, db: "bench_refeed", dataDir: path.join(dir, "refeed"), adminToken: ADMIN });
    stopRefeed = () => refeed.stop();
    const refeedRss = rssSampler(() => refeed.pid);
    const provision = async (id: string): Promise<Device> => {
      const res = await fetch(`${refeed.http}/api/devices`, { method: "POST", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body: JSON.stringify({ id }) });
      if (res.status !== 201) throw new Error(`provision ${id}: ${res.status}`);
      return (await res.json()) as Device;
    };
    const count = async (device: string): Promise<{ count: number; distinct: number }> => {
      const q = `SELECT count(seq), count(distinct(seq)) FROM telemetry WHERE device = '${device}'`;
      const body = (await (await fetch(`${influxd.url}/query?${new URLSearchParams({ db: "bench_refeed", q })}`)).json()) as { results: Array<{ series?: Array<{ values: number[][] }> }> };
      const row = body.results[0]?.series?.[0]?.values[0];
      return { count: row?.[1] ?? 0, distinct: row?.[2] ?? 0 };
    };
    /** Every acknowledged message stored exactly once: counts equal, no duplicates. */
    const verify = async (acked: Map<string, number>) => {
      let lost = 0;
      let duplicated = 0;
      for (const [device, n] of acked) {
        const { count: stored, distinct } = await count(device);
        lost += Math.max(0, n - distinct);
        duplicated += stored - distinct;
      }
      return { lost, duplicated };
    };

    say(`MQTT QoS 1: ${DEVICES} devices x ${WINDOW} in flight, ${seconds.warmup} s warm-up, ${seconds.mqtt} s measured`);
    const mqttDevices = await Promise.all(Array.from({ length: DEVICES }, (_, i) => provision(`mqtt-${i}`)));
    influxRss.reset();
    const load = await startMqttLoad({ url: refeed.mqtt, devices: mqttDevices, window: WINDOW });
    await sleep(seconds.warmup * 1000);
    load.measure();
    refeedRss.reset();
    const cpu = await cpuMeter({ refeed: () => refeed.pid, influxd: () => influxd.pid, generator: () => process.pid });
    await sleep(seconds.mqtt * 1000);
    const mqttCpu = await cpu.stop();
    const mqttRun = await load.stop();
    const mqttMemory = { refeed: refeedRss.peak, influxd: influxRss.peak, heap: await refeed.metric("nodejs_heap_size_used_bytes") };
    const writeSum = await refeed.metric('refeed_ingest_write_seconds_sum{from="direct"}');
    const writeCount = await refeed.metric('refeed_ingest_write_seconds_count{from="direct"}');
    const batchSum = await refeed.metric('refeed_ingest_batch_points_sum{from="direct"}');
    const mqttCheck = await verify(load.acked);

    say(`HTTP ingest: ${DEVICES} devices posting 100-record batches, ${seconds.http} s measured`);
    const httpDevices = await Promise.all(Array.from({ length: DEVICES }, (_, i) => provision(`http-${i}`)));
    const httpRun = await httpLoad({ http: refeed.http, devices: httpDevices, batch: 100, warmupMs: seconds.warmup * 1000, durationMs: seconds.http * 1000 });
    const httpCheck = await verify(httpRun.acked);

    say(`outage: InfluxDB stopped for ${seconds.outage} s under MQTT QoS 1 load, then restarted`);
    const outageDevices = await Promise.all(Array.from({ length: DEVICES }, (_, i) => provision(`outage-${i}`)));
    const outage = await startMqttLoad({ url: refeed.mqtt, devices: outageDevices, window: WINDOW });
    await sleep(seconds.warmup * 1000);
    await influxd.close();
    outage.measure();
    await sleep(seconds.outage * 1000);
    const duringOutage = outage.measured;
    const spooledPoints = await refeed.metric("refeed_ingest_spool_points");
    const restartAt = performance.now();
    influxd = await startInfluxd({ dataDir: influxDir, log, port });
    await waitUntil(async () => (await refeed.metric("refeed_ingest_spooling")) === 0, 600_000);
    const replaySeconds = (performance.now() - restartAt) / 1000;
    const outageRun = await outage.stop();
    const outageCheck = await verify(outage.acked);
    stopRefeed = undefined;
    await refeed.stop();
    refeedRss.stop();

    const results: Results = {
      quick,
      machine,
      wallSeconds: 0,
      peer: { ...peer, influxdRss: peerInfluxRss },
      mqtt: { ...mqttRun, ...mqttCheck, memory: mqttMemory, cpu: mqttCpu, devices: DEVICES, window: WINDOW, influxWriteMeanMs: (writeSum / writeCount) * 1000, meanBatch: batchSum / writeCount },
      http: { ...httpRun, ...httpCheck, devices: DEVICES, batch: 100 },
      outage: { ...outageCheck, downSeconds: seconds.outage, ackedWhileDown: duringOutage, perSecondWhileDown: duringOutage / seconds.outage, spooledPoints, replaySeconds, total: [...outage.acked.values()].reduce((a, b) => a + b, 0) },
    };
    say("rules: evaluation cost with 1, 100 and 1,000 rules; telemetry -> action latency");
    const rules = await rulesReport({ quick });
    say("experience health: 10,000 devices, the whole fleet scored and the fleet view under news");
    const health = await healthReport({ quick });
    results.wallSeconds = Math.round((Date.now() - began) / 1000);
    const report = `${renderReport(results)}\n${rules}\n${health}`;
    process.stdout.write(`${report}\n`);
    if (write) {
      const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../docs/benchmarks.md");
      await writeFile(file, report);
      say(`wrote ${path.relative(process.cwd(), file)}`);
    }
    if (mqttCheck.lost + mqttCheck.duplicated + httpCheck.lost + httpCheck.duplicated + outageCheck.lost + outageCheck.duplicated > 0) {
      say("LOSS OR DUPLICATES: see the table");
      process.exitCode = 1;
    }
  } finally {
    await stopRefeed?.();
    influxRss.stop();
    await influxd.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
async function waitUntil(check: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(100);
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
