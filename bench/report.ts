import type { LatencySummary } from "./latency.ts";
import type { MachineFacts } from "./machine.ts";
import type { RuleEvalRow } from "./rule-eval.ts";
import { renderRules } from "./rules.ts";
import type { StepRow } from "./scenario.ts";
import type { BrokerSection } from "./sections/broker.ts";
import type { ClusterSection, ClusterThroughput } from "./sections/cluster.ts";
import type { IngestSection, Pipeline } from "./sections/ingest.ts";
import type { LatencySection } from "./sections/latency.ts";
import { renderSdk, type SdkSection } from "./sections/sdk.ts";
import type { SoakSection } from "./sections/soak.ts";
import type { Search } from "./steps.ts";

export interface Results {
  command: string;
  quick: boolean;
  startedAt: string;
  wallSeconds: number;
  machine: MachineFacts;
  /** Load average (1 min) when each section started and when the run ended: how busy the shared machine was. */
  load: Record<string, string>;
  stepSeconds: number;
  generatorWorkers: string;
  broker?: BrokerSection;
  ingest?: IngestSection;
  latency?: LatencySection;
  rules?: RuleEvalRow[];
  sdk?: SdkSection;
  /** The experience-health section, rendered (bench/health.ts). */
  health?: string;
  cluster?: ClusterSection;
  /** The soak (`--only soak`), often from a run of its own: it names its command. */
  soak?: SoakSection;
}

const n = (v: number) => Math.round(v).toLocaleString("en-US");
const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const lat = (l: LatencySummary | undefined) =>
  !l || l.count === 0 ? "-" : `${ms(l.p50)} / ${ms(l.p99)} / ${ms(l.p999)} / ${ms(l.max)}`;
const cores = (row: StepRow) =>
  Object.entries(row.cores)
    .map(([name, c]) => `${name} ${c.toFixed(2)}`)
    .join(", ");
const per10k = (row: StepRow) =>
  Object.entries(row.cpuPer10k)
    .map(([name, s]) => `${name} ${s.toFixed(2)}`)
    .join(", ");
const sustainedRate = (s: Search<StepRow>) => s.sustained?.result.offered ?? 0;
/** The search stopped because the generator could not offer more, not because the system under test failed. */
const generatorBound = (s: Search<StepRow>) => {
  const above = s.steps.filter((step) => !step.verdict.ok && step.rate > (s.sustained?.rate ?? 0));
  return above.length > 0 && above.every((step) => step.verdict.why?.startsWith("the load generator"));
};
const atLeast = (s: Search<StepRow>) => (generatorBound(s) ? "at least " : "");

function stepsTable(title: string, search: Search<StepRow>, unit: string): string {
  const rows = search.steps.map(
    (s) =>
      `| ${n(s.rate)} | ${n(s.result.offered)} ${unit} | ${n(s.result.delivered)} of ${n(s.result.offered * s.result.seconds)} | ${lat(s.result.latency)} | ${n(s.result.drainMs)} | ${s.result.generatorLagP99.toFixed(1)} | ${cores(s.result)} | ${s.verdict.ok ? "**sustained**" : `no: ${s.verdict.why}`} |`,
  );
  return `<details><summary>${title}: every step</summary>

| publishes/s | offered | delivered | latency ms p50 / p99 / p99.9 / max | drain ms | generator late p99 ms | cores busy | verdict |
|---|---|---|---|---|---|---|---|
${rows.join("\n")}

</details>`;
}

function targets(r: Results): string {
  const lines: string[] = [];
  const ingest = r.ingest;
  if (ingest) {
    const best = (name: string) =>
      Math.max(0, ...ingest.pipelines.filter((p) => p.name === name).map((p) => sustainedRate(p.search)));
    const refeed = best("Refeed");
    const nodeRed = best("Mosquitto + Node-RED");
    const share = refeed / ingest.ceiling.pointsPerSecond;
    lines.push(
      `| Refeed's pipeline at >= 80% of the InfluxDB-only ceiling (points/s) | ${n(refeed)} of ${n(ingest.ceiling.pointsPerSecond)} points/s: **${(share * 100).toFixed(0)}%** | ${share >= 0.8 ? "yes" : "**no**"} |`,
    );
    const ratio = nodeRed > 0 ? refeed / nodeRed : Infinity;
    lines.push(
      `| Refeed >= 5x Node-RED's sustained rate | ${n(refeed)} vs ${n(nodeRed)} points/s: **${ratio.toFixed(1)}x** | ${ratio >= 5 ? "yes" : "**no**"} |`,
    );
  }
  const refeedLatency = r.latency?.runs.find((x) => x.name === "Refeed");
  const at1000 = refeedLatency?.points.find((p) => p.label === "1,000 msgs/s")?.row;
  if (at1000)
    lines.push(
      `| telemetry -> action p99 < 10 ms at 1,000 msgs/s | p99 **${ms(at1000.latency.p99)} ms** (p50 ${ms(at1000.latency.p50)} ms) | ${at1000.latency.p99 < 10 && at1000.verdict.ok ? "yes" : "**no**"} |`,
    );
  const memory = r.broker?.runs.find((x) => x.name === "Refeed")?.memory;
  if (memory) {
    // After a full GC the resident set of a Node process may even shrink (freed pages go back): count the larger of the two.
    const mb = Math.max(memory.marginalMiB, memory.heapMarginalMiB ?? 0) * 1.048576;
    lines.push(
      `| < 10 MB of memory per 1,000 idle connections | **${mb.toFixed(1)} MB** for 1,000 more (the larger of resident set ${(memory.marginalMiB * 1.048576).toFixed(1)} MB and V8 heap ${((memory.heapMarginalMiB ?? 0) * 1.048576).toFixed(1)} MB, after a full GC; the first 1,000 with one-off costs: ${(memory.firstMiB * 1.048576).toFixed(1)} MB resident) | ${mb < 10 ? "yes" : "**no**"} |`,
    );
  }
  const cluster = r.cluster;
  const single = cluster?.runs.find((x) => x.nodes === 1);
  if (cluster && single) {
    const worst = Math.max(
      0,
      ...cluster.runs.filter((x) => x.nodes > 1).map((x) => x.fixed.nodesPer10k / single.fixed.nodesPer10k),
    );
    lines.push(
      `| cluster CPU per message at most 1.3x a single node's (nodes' CPU at the same fixed rate) | ${cluster.runs
        .filter((x) => x.nodes > 1)
        .map((x) => `${x.nodes} nodes **${(x.fixed.nodesPer10k / single.fixed.nodesPer10k).toFixed(2)}x**`)
        .join(
          ", ",
        )} (${single.fixed.nodesPer10k.toFixed(2)} CPU-s per 10,000 on 1 node) | ${worst <= 1.3 ? "yes" : "**no**"} |`,
    );
  }
  return `## Targets

| target | measured in this run | met |
|---|---|---|
${lines.join("\n")}
`;
}

function brokerSection(b: BrokerSection, r: Results): string {
  const row = (run: BrokerSection["runs"][number], what: string, search: Search<StepRow>, unit: string) => {
    const s = search.sustained?.result;
    if (!s) return `| ${run.name} | ${what} | none of the steps (${search.steps[0]?.verdict.why ?? ""}) | - | - | - |`;
    return `| ${run.name} | ${what} | **${atLeast(search)}${n(s.offered)} ${unit}**${generatorBound(search) ? " (the generator's limit)" : ""} | ${lat(s.latency)} | ${s.ack ? lat(s.ack) : "-"} | ${cores(s)} |`;
  };
  const rows = b.runs.flatMap((run) => [
    row(run, `fan-in, ${b.publishers.toLocaleString("en-US")} publishers, QoS 0`, run.fanInQos0, "msgs/s"),
    row(run, `fan-in, ${b.publishers.toLocaleString("en-US")} publishers, QoS 1`, run.fanInQos1, "msgs/s"),
    row(
      run,
      `fan-out, 1 message to ${run.fanOutReceivers.toLocaleString("en-US")} subscribers, QoS 1`,
      run.fanOut,
      "deliveries/s",
    ),
  ]);
  const mib = (b: number) => (b / 2 ** 20).toFixed(0);
  const memory = b.runs.map(
    (run) =>
      `| ${run.name} | ${run.memory.rss.map(mib).join(" -> ")} MiB | ${run.memory.firstMiB.toFixed(1)} MiB | **${run.memory.marginalMiB.toFixed(1)} MiB** | ${run.memory.heapMarginalMiB !== undefined ? `${run.memory.heapMarginalMiB.toFixed(1)} MiB` : "-"} | ${run.connectSeconds.toFixed(1)} s |`,
  );
  return `## Broker: Refeed against Mosquitto

The same generator drives both: ${b.publishers.toLocaleString("en-US")} device connections (TCP, TCP_NODELAY), each
subscribed to its own \`devices/{id}/actions\`, publishing its own telemetry (one record of four
fields per publish). Each broker delivers to what it is for. **Refeed** hands every publish to
ingest, which stores it in InfluxDB; a QoS 1 PUBACK is sent once the record is durable, and the
stored points are counted back per device. **Mosquitto** ${r.broker?.runs.find((x) => x.name === "Mosquitto")?.version ?? ""} forwards the telemetry to one subscriber
of \`devices/+/telemetry\` (the consumer Node-RED or a custom ingest would be), which counts every
message; Mosquitto runs with per-device passwords and the same topic ACL as Refeed, no
persistence, \`set_tcp_nodelay true\`, 100 messages in flight and 100,000 queued per client.
Fan-out: Mosquitto forwards one publish on \`fanout/all\` to 1,000 subscribers; in Refeed one
message fires a rule that sets a key for the customer whose ${n(b.publishers)} touchpoints (and
the sender) each get the action on their own topic, QoS 1, logged in the action log and kept until
PUBACK.

Latency is from each message's scheduled send time (open loop): to the PUBACK (Refeed fan-in), or
to receipt by the subscriber. Refeed at QoS 0 has no subscriber to time: its telemetry goes only to
ingest, so the table shows its rate (every point counted in InfluxDB) without a latency.

| broker | load | sustained | latency ms p50 / p99 / p99.9 / max | publish -> PUBACK ms | cores busy (of ${r.machine.cores}) |
|---|---|---|---|---|---|
${rows.join("\n")}

Memory of idle connections (connected, subscribed to their actions, keepalive 60 s): the resident
set from /proc before any device connected, 2 s after the first ${n(b.publishers)} connected, and 2 s after
${n(b.publishers)} more. The second step is the cost of 1,000 more connections; the first also holds one-off
costs (code compiled on first use, caches, heap growth). Before each reading of Refeed's, a full
garbage collection is asked for through its inspector (\`--inspect\`, HeapProfiler.collectGarbage),
so that the reading counts what the connections hold rather than the garbage of their handshakes;
the V8 heap is Refeed's own \`nodejs_heap_size_used_bytes\`.

| broker | resident set | first 1,000 | 1,000 more | V8 heap, 1,000 more | connect time, first 1,000 |
|---|---|---|---|---|---|
${memory.join("\n")}

${b.runs.flatMap((run) => [stepsTable(`${run.name}, fan-in QoS 0`, run.fanInQos0, "msgs/s"), stepsTable(`${run.name}, fan-in QoS 1`, run.fanInQos1, "msgs/s"), stepsTable(`${run.name}, fan-out`, run.fanOut, "deliveries/s")]).join("\n\n")}
`;
}

function ingestSection(i: IngestSection, r: Results): string {
  const ceiling = i.ceiling.pointsPerSecond;
  const row = (p: Pipeline) => {
    const s = p.search.sustained?.result;
    const shape = p.records === 1 ? "1 record per publish" : `${p.records} records per publish`;
    if (!s)
      return `| ${p.name} | ${shape} | none of the steps (${p.search.steps[0]?.verdict.why ?? ""}) | - | - | - | - | - |`;
    return `| ${p.name} | ${shape} | **${atLeast(p.search)}${n(s.offered)} points/s**${generatorBound(p.search) ? " (the generator's limit)" : ""} | ${((s.offered / ceiling) * 100).toFixed(0)}% | ${lat(s.latency)} | ${n(s.drainMs)} ms | ${per10k(s)} | ${s.lost} / ${s.duplicates} |`;
  };
  return `## Ingest into InfluxDB: Refeed against Mosquitto + Node-RED

One InfluxDB (${r.machine.influxd}) for all of them, one pipeline at a time. ${i.devices} devices publish
telemetry at QoS 1 (each record: \`seq\`, \`temp\`, \`hum\`, \`on\`), one record per publish or ${i.pipelines.find((p) => p.records > 1)?.records ?? 100} (a
JSON array, which the contract allows). After every step each device's points are counted back
from InfluxDB (\`count(distinct(seq))\`): sustained means zero loss, a flat backlog, and a drain
within a bound. The ceiling posts pre-built line protocol of the same points straight to \`/write\`
(${n(i.ceiling.batchSize)}-point batches, ${i.ceiling.inFlight} requests in flight: Refeed's defaults).

- **Refeed**: \`refeed start\` as deployed, default settings (batches of 5,000 points or 200 ms, 4
  writes in flight, fsync'd spool). A PUBACK means the record is in InfluxDB or in the spool; when
  InfluxDB falls behind, batches go to the spool and are acknowledged from there, so a step counts
  only what reached InfluxDB during it: a growing spool is a growing backlog, not a sustained rate.
- **Mosquitto + Node-RED** ${i.versions.nodeRed} with node-red-contrib-influxdb: \`mqtt in\` (QoS 1) -> \`json\` ->
  \`function\` (records to points, unique microsecond timestamps) -> \`influxdb batch\`; single records
  pass a \`join\` node (5,000 messages or 200 ms) first. Mosquitto's PUBACK means only that the broker
  has the message: Node-RED holds what InfluxDB has not taken yet in memory.

| pipeline | load | sustained | of the ceiling | publish -> PUBACK ms p50 / p99 / p99.9 / max | drain | CPU-seconds per 10,000 points | lost / duplicated |
|---|---|---|---|---|---|---|---|
| **InfluxDB only** | pre-built line protocol | **${n(ceiling)} points/s** | 100% | ${lat(i.ceiling.latency)} (per write) | - | - | - |
${i.pipelines.map(row).join("\n")}

Drain: from the last scheduled send until every record was acknowledged (Refeed) or stored
(Node-RED). CPU-seconds are per process, measured from /proc over the sustained step.

Refeed's other ways in, same devices' records counted the same way:

| scenario | rate | latency ms p50 / p99 / p99.9 / max | acknowledged but lost | duplicated |
|---|---|---|---|---|
| HTTP \`POST /api/ingest/telemetry\`, ${i.http.batch}-record bodies, ${i.http.devices} clients, closed loop | ${n(i.http.perSecond)} records/s | ${lat(i.http.latency)} (per request) | **${i.http.lost}** | ${i.http.duplicated} |
| MQTT QoS 1 at ${n(i.outage.rate)} msgs/s while InfluxDB is down for ${i.outage.downSeconds} s | ${n(i.outage.ackedWhileDown / i.outage.downSeconds)} msgs/s acknowledged from the spool while it was down | spool of ${n(i.outage.spooledPoints)} points replayed ${i.outage.replaySeconds.toFixed(1)} s after the restart | **${i.outage.lost}** of ${n(i.outage.total)} | ${i.outage.duplicated} |

${i.pipelines.map((p) => stepsTable(`${p.name}, ${p.records === 1 ? "1 record" : `${p.records} records`} per publish`, p.search, "points/s")).join("\n\n")}
`;
}

function latencySection(l: LatencySection): string {
  const rows = l.runs.flatMap((run) => [
    `| ${run.name} | sustained (every message fires the rule) | ${run.search.sustained ? `**${atLeast(run.search)}${n(run.search.sustained.rate)} msgs/s**${generatorBound(run.search) ? " (the generator's limit)" : ""}` : "none of the steps"} | ${lat(run.search.sustained?.result.latency)} | ${run.search.sustained ? cores(run.search.sustained.result) : "-"} |`,
    ...run.points.map(
      (p) =>
        `| ${run.name} | ${p.label} | ${n(p.row.rate)} msgs/s${p.row.verdict.ok ? "" : ` (${p.row.verdict.why})`} | **${lat(p.row.latency)}** | ${cores(p.row)} |`,
    ),
  ]);
  return `## Telemetry in -> action out

${l.devices} devices, each subscribed to its own actions; every message has \`temp\` 31 and fires a
threshold rule (\`msg.metrics.temp > 30\`) whose action, carrying the message's stamps, goes back to
the device that sent it at QoS 1. Latency is from the telemetry's scheduled send time to the
action's receipt. **Refeed** appends the telemetry to its commit log (the rule sees it once it is
written there; the PUBACK waits for the log's fdatasync, InfluxDB gets it moments later), then
evaluates the rule, logs the action to InfluxDB (group commits, off the latency path) and delivers
it until PUBACK. **Node-RED**'s flow (\`mqtt in\` -> \`json\` -> \`switch\` -> \`function\` -> \`mqtt out\`)
evaluates and publishes; it stores nothing. The sustained rate of this path is found in steps
first; then each rate below runs on its own.

| system | load | rate | latency ms p50 / p99 / p99.9 / max | cores busy |
|---|---|---|---|---|
${rows.join("\n")}

${l.runs.map((run) => stepsTable(`${run.name}, telemetry -> action`, run.search, "actions/s")).join("\n\n")}
`;
}

function whereTheTimeGoes(r: Results): string {
  const refeed = r.ingest?.pipelines.filter((p) => p.name === "Refeed" && p.search.sustained);
  if (!refeed?.length || !r.ingest) return "";
  const lines = refeed.map((p) => {
    const s = p.search.sustained!.result;
    return `- ${p.records === 1 ? "one record" : `${p.records} records`} per publish, at ${n(s.offered)} points/s: ${per10k(s)} CPU-seconds per 10,000 points; cores busy: ${cores(s)}.`;
  });
  return `## Where the time goes

Measured in the sustained ingest steps above (CPU from /proc, per process):

${lines.join("\n")}

All of it shares ${r.machine.cores} cores: the load generator's processes, influxd, and Refeed's single
JavaScript thread (plus its GC threads). The InfluxDB-only ceiling is influxd alone with the whole
machine; any CPU the pipeline in front of it needs comes out of the same two cores, so a pipeline
that parses, validates and re-encodes every record cannot reach the ceiling here, only approach it
as its own CPU per point falls. [performance.md](performance.md) has the profile of Refeed's hot
path, what was changed, and what is left.
`;
}

function clusterSection(c: ClusterSection, r: Results): string {
  const single = c.runs.find((x) => x.nodes === 1);
  const spread = (xs: number[], f: (v: number) => string = n) => {
    const s = [...xs].sort((a, b) => a - b);
    return `${f(s[0]!)} / **${f(s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2)}** / ${f(s[s.length - 1]!)}`;
  };
  const perNode = (t: ClusterThroughput, nodes: number) =>
    Array.from({ length: nodes }, (_, i) => `node-${i + 1} ${(t.per10k[`node-${i + 1}`] ?? 0).toFixed(2)}`).join(", ");
  const coresOf = (t: ClusterThroughput) =>
    Object.entries(t.cores)
      .map(([name, v]) => `${name} ${v.toFixed(2)}`)
      .join(", ");
  const rows = c.runs.map((x) => {
    const sat = x.saturation.map((s) => s.msgsPerSecond);
    const ratio = single ? x.fixed.nodesPer10k / single.fixed.nodesPer10k : NaN;
    const spreadOver = Object.entries(x.connections)
      .map(([id, c]) => `${id} ${c}`)
      .join(", ");
    return `| ${x.nodes} | ${spreadOver} | ${spread(sat)} | ${spread(
      x.saturation.map((s) => s.nodesPer10k),
      (v) => v.toFixed(2),
    )} | ${n(x.fixed.acked)} of ${n(x.fixed.sent + x.fixed.skipped)}${x.fixed.skipped > 0 ? ` (${n(x.fixed.skipped)} not sent: window full)` : ""} | ${x.stored ? `${n(x.stored.distinct)} (${n(x.stored.missing)} missing, ${n(x.stored.duplicates)} twice)` : "-"} | **${x.fixed.nodesPer10k.toFixed(2)}** (${ratio.toFixed(2)}x) | ${perNode(x.fixed, x.nodes)} | ${(x.fixed.per10k.redis ?? 0).toFixed(2)} | ${(x.fixed.per10k.haproxy ?? 0).toFixed(2)} | ${(x.fixed.per10k.influxd ?? 0).toFixed(2)} |`;
  });
  const busy = c.runs.flatMap((x) =>
    x.saturation
      .map((s, i) => `| ${x.nodes} | saturation ${i + 1} | ${n(s.msgsPerSecond)} | ${lat(s.ack)} | ${coresOf(s)} |`)
      .concat([
        `| ${x.nodes} | fixed ${n(x.fixed.rate)}/s | ${n(x.fixed.msgsPerSecond)} | ${lat(x.fixed.ack)} | ${coresOf(x.fixed)} |`,
      ]),
  );
  // A node's CPU per message of its own equals the nodes' sum per message of the cluster (each took 1/N of them).
  const shareRows = c.runs.flatMap((x) => {
    const share = single?.shares?.find((s) => s.nodes === x.nodes);
    return share
      ? [
          `| ${x.nodes} | ${n(share.rate)} | ${share.per10k.toFixed(2)} | ${x.fixed.nodesPer10k.toFixed(2)} | **${(x.fixed.nodesPer10k / share.per10k).toFixed(2)}x** |`,
        ]
      : [];
  });
  const across = c.runs
    .filter((x) => x.propagation || x.action)
    .map((x) => `| ${x.nodes} | ${lat(x.propagation)} | ${lat(x.action)} |`);
  const failover = c.runs.find((x) => x.failover)?.failover;
  return `## Cluster: 1, 2 and 3 nodes behind HAProxy

${c.command ? `Measured with \`${c.command}\` on ${c.at?.slice(0, 10) ?? "?"}. ` : ""}\`refeed cluster --nodes N\` as an operator starts it (a redis-server, N \`refeed start\` nodes and HAProxy in
front, front ports picked free), on the benchmark's InfluxDB, one size after another in the same run.
**This machine has ${r.machine.cores} cores**, shared by every node, Redis, HAProxy, influxd and the load generator: more
nodes cannot add CPU here, so the question is what a message costs in a cluster, not how far it scales.
${c.devices} devices, provisioned through the HTTP front with the admin token, connect through the MQTT
front (HAProxy \`leastconn\` spreads them) and publish telemetry at QoS 1 with at most ${c.window} publishes
unacknowledged each (per-device publish rate limit set out of the way). **Saturation**: ${n(c.offered)} msgs/s offered for
${c.stepSeconds} s (sends beyond the window are skipped), PUBACKs per second counted over the step and its drain, ${c.runs[0]?.saturation.length ?? 0}
repetitions (min / median / max) after a discarded ${c.warmupSeconds} s warm-up. Connections per node: each
node's \`refeed_mqtt_connected_clients\` once the devices had connected. **Fixed rate**: half the single node's median, the same for every size,
where CPU per message compares like with like (paced publishes cost more per message than a saturated
stream, whose writes and fsyncs batch more). CPU-seconds from /proc (utime + stime) of each node process,
of redis-server, haproxy and influxd, per 10,000 acknowledged messages.

| nodes | connections per node | saturation msgs/s min / median / max | node CPU-s per 10,000 at saturation min / median / max | fixed rate: acked of scheduled | stored once (InfluxDB) | nodes' CPU-s per 10,000 (vs 1 node) | per node | redis | haproxy | influxd |
|---|---|---|---|---|---|---|---|---|---|---|
${rows.join("\n")}

What clustering itself costs, apart from splitting the load: each node of an N-node cluster carries 1/N
of the devices (at the fixed rate / N), and a node's CPU per message grows as its own rate falls (part of
it is paid per wakeup and per batch: socket reads, timers, group commits, InfluxDB writes). So the single
node also ran with each size's share: 30 / N other devices of its own, at the same rate per device; a
cluster node's CPU per message of its own is compared with that.

| nodes | one node alone with 1/N of the devices, msgs/s | its CPU-s per 10,000 | a cluster node's CPU-s per 10,000 of its own messages | cluster node vs one node alone at its share |
|---|---|---|---|---|
${shareRows.join("\n")}

| nodes | step | acked msgs/s | publish -> PUBACK ms p50 / p99 / p99.9 / max | cores busy (of ${r.machine.cores}) |
|---|---|---|---|---|
${busy.join("\n")}

Across nodes (each on its own address, not through HAProxy): a consent change made through node-1's HTTP
until every other node's HTTP answers it (each polled every millisecond, 100 changes, while the devices
publish ${n(c.runs.find((x) => x.propagationLoad)?.propagationLoad?.rate ?? 0)} msgs/s through the front), and telemetry from a device
connected to node-1 until the action of a subject-scoped rule (\`POST /api/rules\`) reaches the same
customer's other device, connected to node-2 (publish -> receipt, 100 messages one after another).

| nodes | change node-1 -> every other node ms p50 / p99 / p99.9 / max | telemetry (node-1) -> action (node-2) ms p50 / p99 / p99.9 / max |
|---|---|---|
${across.join("\n")}
${failover ? `\nPartition failover, 3 nodes: node-3 (owning ${failover.partitionsOfDead} of the 32 rule partitions) killed with SIGKILL; **${n(failover.ms)} ms** until \`GET /api/rules/partitions\` on node-1 showed none owned by node-3 and none without an owner (the leases last 6 s).\n` : ""}`;
}

function soakSection(s: SoakSection): string {
  const mib = (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(2)} MiB/min`;
  const first = s.samples.find((x) => x.atSeconds >= s.warmupMinutes * 60) ?? s.samples[0];
  const last = s.samples[s.samples.length - 1];
  const every = Math.max(1, Math.round(s.samples.length / 12));
  const rows = s.samples
    .filter((_, i) => i % every === 0 || i === s.samples.length - 1)
    .map((x) => `| ${(x.atSeconds / 60).toFixed(1)} | ${x.rssMiB.toFixed(1)} | ${x.heapMiB.toFixed(1)} |`);
  const warnings = Object.entries(s.warnings)
    .map(([w, c]) => `${w}: ${n(c)}`)
    .join("; ");
  return `## Soak

Measured with \`${s.command}\` on ${s.startedAt.slice(0, 10)} (${n(s.wallSeconds)} s wall time; load average ${Object.entries(
    s.load,
  )
    .map(([at, l]) => `${l} ${at}`)
    .join(
      ", ",
    )}). One Refeed (\`refeed start\`, its own process) for **${s.minutes} minute${s.minutes === 1 ? "" : "s"}** at
**${n(s.rate)} telemetry publishes/s** (${s.rateSource}) from ${s.devices} devices, QoS 1, every
one firing the threshold rule whose action comes back to its device; beside it ${s.churn.devices} shared
devices that connect, run one customer's session (\`session_start\`, three taps that a subject-scoped
count rule reads, a feedback with text, \`session_end\`), disconnect and come back for the next
customer, and one customer erased through \`DELETE /api/subjects/{id}\` at a time. Memory is read
every ${s.sampleSeconds} s after a full garbage collection (through the inspector): the resident set
and V8's used heap; the slopes are least squares over the samples after a ${s.warmupMinutes}-minute warm-up,
and the soak fails above ${s.limitMiBPerMinute} MiB/min or with any acknowledged record missing from InfluxDB.

| | |
|---|---|
| verdict | ${s.verdict.ok ? "**passed**" : `**failed**: ${s.verdict.why}`} |
| resident set after warm-up | ${first ? `${first.rssMiB.toFixed(0)} -> ${last!.rssMiB.toFixed(0)} MiB` : "-"}, slope **${mib(s.rssSlope)}** |
| V8 heap after warm-up | ${first ? `${first.heapMiB.toFixed(0)} -> ${last!.heapMiB.toFixed(0)} MiB` : "-"}, slope **${mib(s.heapSlope)}** |
| telemetry | ${n(s.telemetry.sent)} sent, ${n(s.telemetry.acked)} acknowledged, **${n(s.telemetry.missing)} acknowledged but missing** in InfluxDB, ${n(s.telemetry.duplicated)} stored twice; publish -> PUBACK ms p50 / p99 / p99.9 / max ${lat(s.telemetry.ack)} |
| actions | ${n(s.actions.received)} of ${n(s.actions.expected)} received; telemetry -> action ms p50 / p99 / p99.9 / max ${lat(s.actions.latency)} |
| shared devices | ${n(s.churn.connects)} connects, ${n(s.churn.sessions)} sessions, ${n(s.churn.acked)} event and feedback records acknowledged about customers not erased, **${n(s.churn.missing)} missing**; ${n(s.churn.connectErrors)} sessions cut by an error${s.churn.firstError ? ` (first: ${s.churn.firstError})` : ""}; ${n(s.churn.actionsReceived)} actions received |
| erasures | ${n(s.erasures.done)} done (${n(s.erasures.retried)} retries after a 503, ${n(s.erasures.failed)} failed${s.erasures.first ? `: ${s.erasures.first}` : ""}); ms p50 / p99 / p99.9 / max ${lat(s.erasures.ms)} |
| Refeed's warnings and errors | ${warnings || "none"} |

Where the committed soak's memory goes, and what erasure's time grows with: [performance.md](performance.md#soak).

<details><summary>Memory over the run</summary>

| minute | resident MiB | heap MiB |
|---|---|---|
${rows.join("\n")}

</details>
`;
}

export function renderReport(r: Results): string {
  const m = r.machine;
  const sections = [
    targets(r),
    r.broker ? brokerSection(r.broker, r) : "",
    r.ingest ? ingestSection(r.ingest, r) : "",
    r.latency ? latencySection(r.latency) : "",
    whereTheTimeGoes(r),
    r.rules ? renderRules(r.rules) : "",
    r.sdk ? renderSdk(r.sdk) : "",
    r.health ?? "",
    r.cluster ? clusterSection(r.cluster, r) : "",
    r.soak ? soakSection(r.soak) : "",
  ].filter(Boolean);
  return `# Benchmarks

Measured with \`${r.command}\` on ${r.startedAt.slice(0, 10)} (${n(r.wallSeconds)} s wall time); the numbers
of this page and of [benchmarks.json](benchmarks.json) are from that one run, with every peer in the
same run on the same machine. **Its ${m.cores} cores are shared with other work (other sessions and
their test suites: load average ${Object.entries(r.load)
    .map(([at, l]) => `${l} ${at}`)
    .join(", ")}), so the numbers are noisy; they are reported as measured.** The load generator
(${r.generatorWorkers}) runs on the same cores and its CPU is shown beside the others'.

Method: open-loop load from the benchmark's own generator (\`bench/load/\`: mqtt.js in worker
processes). Each record carries its run, worker, sequence number and scheduled send time, so a
stall shows up as latency instead of slowing the sender; latencies go into HDR histograms. Load
comes in steps of ${r.stepSeconds} s, doubling, then ${r.quick ? "no" : "two"} refinement steps; **sustained** is the highest step
with zero loss, a flat backlog (it did not grow over the step's second half, or drained at once)
and a generator that kept its schedule (p99 at most 100 ms late). Where the only steps above the
sustained one failed because the generator fell behind, the rate is marked "at least": the
generator, on the same cores, was the limit, not the system under test. Every step of every
search is listed under its table.

${sections.join("\n")}
## Machine

| | |
|---|---|
| CPU | ${m.cpu}, ${m.cores} cores (shared) |
| memory | ${m.memoryGiB} GiB |
| OS | ${m.os} |
| Node.js | ${m.node} |
| InfluxDB | ${m.influxd} |

## Reproduce

\`\`\`sh
npm run bench -- --quick            # under 5 minutes; prints this report
npm run bench -- --quick --write    # and writes docs/benchmarks.md and docs/benchmarks.json
npm run bench -- --write            # the full run (10 s steps, refined): what this page holds when it says so above
npm run bench -- --only ingest,latency --profile /tmp/prof   # some sections; CPU profiles of Refeed
\`\`\`

The first run installs the peers: Debian's \`mosquitto\` (apt-get) and Node-RED with
node-red-contrib-influxdb from the npm registry into \`~/.cache/refeed-bench\` (\`REFEED_BENCH_CACHE\`),
outside the project's dependencies.
`;
}
