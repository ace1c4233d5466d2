import type { LatencySummary } from "./latency.ts";
import type { MachineFacts } from "./machine.ts";

export interface Results {
  quick: boolean;
  machine: MachineFacts;
  wallSeconds: number;
  peer: { points: number; seconds: number; pointsPerSecond: number; latency: LatencySummary; influxdRss: number };
  mqtt: {
    messages: number;
    seconds: number;
    perSecond: number;
    latency: LatencySummary;
    lost: number;
    duplicated: number;
    devices: number;
    window: number;
    memory: { refeed: number; influxd: number; heap: number };
    /** Cores kept busy during the measured window, by process. */
    cpu: Record<string, number>;
    influxWriteMeanMs: number;
    meanBatch: number;
  };
  http: { records: number; seconds: number; perSecond: number; latency: LatencySummary; lost: number; duplicated: number; devices: number; batch: number };
  outage: { downSeconds: number; ackedWhileDown: number; perSecondWhileDown: number; spooledPoints: number; replaySeconds: number; total: number; lost: number; duplicated: number };
}

const n = (v: number) => Math.round(v).toLocaleString("en-US");
const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const lat = (l: LatencySummary) => `${ms(l.p50)} / ${ms(l.p90)} / ${ms(l.p99)} / ${ms(l.p999)} / ${ms(l.max)}`;

export function renderReport(r: Results): string {
  const m = r.machine;
  return `# Benchmarks

Measured with \`npm run bench${r.quick ? " -- --quick" : ""}\` (${r.wallSeconds} s wall time). Every number below comes from one
run on one machine, with the peer in the same run. **This machine's 2 cores are shared with other
work (other sessions, their test suites), so the numbers are noisy; they are reported as measured.**
Load generators run on the same machine too, and compete with Refeed and influxd for those cores.

What runs: a private \`influxd\` (${m.influxd}); Refeed started as \`refeed start\` in its own process
with its default settings (batches of 5,000 points or 200 ms, 4 writes in flight, fsync'd spool);
devices are mqtt.js clients (QoS 1, ${r.mqtt.devices} connections, ${r.mqtt.window} publishes in flight each: the next
publish goes out when a PUBACK comes back, so the rate is what Refeed sustains while acknowledging
only durable data). One message = one telemetry record = one point with 4 fields. After each run the
stored points are counted per device and compared with the acknowledged messages.

## Results

| scenario | sustained rate | latency ms p50 / p90 / p99 / p99.9 / max | acknowledged but lost | duplicates |
|---|---|---|---|---|
| **peer:** InfluxDB only, pre-built line protocol, 5,000-point batches, 4 in flight | ${n(r.peer.pointsPerSecond)} points/s | ${lat(r.peer.latency)} (per write request) | - | - |
| Refeed, MQTT QoS 1, publish to PUBACK | **${n(r.mqtt.perSecond)} messages/s** (${n(r.mqtt.messages)} in ${r.mqtt.seconds.toFixed(1)} s) | ${lat(r.mqtt.latency)} | **${r.mqtt.lost}** | ${r.mqtt.duplicated} |
| Refeed, HTTP ingest, 100-record batches, ${r.http.devices} clients | ${n(r.http.perSecond)} records/s | ${lat(r.http.latency)} (per request) | **${r.http.lost}** | ${r.http.duplicated} |
| Refeed, MQTT QoS 1 while InfluxDB is down (${r.outage.downSeconds} s, spool) | ${n(r.outage.perSecondWhileDown)} messages/s acknowledged from the spool | replay of ${n(r.outage.spooledPoints)} spooled points done ${r.outage.replaySeconds.toFixed(1)} s after the restart | **${r.outage.lost}** of ${n(r.outage.total)} | ${r.outage.duplicated} |

Refeed's own InfluxDB writes during the MQTT run: mean ${ms(r.mqtt.influxWriteMeanMs)} ms per request, mean
batch ${n(r.mqtt.meanBatch)} points (from its \`/metrics\` histograms). Refeed reaches
${((r.mqtt.perSecond / r.peer.pointsPerSecond) * 100).toFixed(0)}% of the InfluxDB-only ceiling in points/s; the difference is the cost of MQTT,
parsing and validation, consent, and waiting for durability before each PUBACK, on the same 2 cores
as the load generator and influxd.

CPU during the measured MQTT window, in cores kept busy (of ${r.machine.cores}, shared): Refeed ${r.mqtt.cpu.refeed!.toFixed(2)},
influxd ${r.mqtt.cpu.influxd!.toFixed(2)}, the mqtt.js load generator ${r.mqtt.cpu.generator!.toFixed(2)}.

Memory (resident set, peak during the MQTT run): Refeed ${mib(r.mqtt.memory.refeed)} (V8 heap used at the end
${mib(r.mqtt.memory.heap)}), influxd ${mib(r.mqtt.memory.influxd)}; influxd during the peer run ${mib(r.peer.influxdRss)}.

## Machine

| | |
|---|---|
| CPU | ${m.cpu}, ${m.cores} cores (shared) |
| memory | ${m.memoryGiB} GiB |
| OS | ${m.os} |
| Node.js | ${m.node} |
| InfluxDB | ${m.influxd} |
| load average at start | ${m.loadAverage} |

## Reproduce

\`\`\`sh
npm run bench -- --quick            # about 5 minutes (10,000 devices for health); prints this report
npm run bench -- --quick --write    # and writes it to docs/benchmarks.md
npm run bench                       # longer runs (about 10 minutes)
\`\`\`
`;
}
