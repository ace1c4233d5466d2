import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { freePort, startInfluxd, type ManagedInfluxd } from "../store/influxd.ts";
import { killAll, trackGroup } from "./children.ts";
import type { BenchContext } from "./context.ts";
import { machineFacts } from "./machine.ts";
import { ensureMosquitto } from "./peers/mosquitto.ts";
import { ensureNodeRed } from "./peers/node-red.ts";
import { renderReport, type Results } from "./report.ts";
import { benchRuleEvaluation } from "./rule-eval.ts";
import { healthReport } from "./health.ts";
import { benchBrokers } from "./sections/broker.ts";
import { benchCluster } from "./sections/cluster.ts";
import { benchIngest } from "./sections/ingest.ts";
import { benchLatency } from "./sections/latency.ts";
import { benchSdk } from "./sections/sdk.ts";
import { benchSoak } from "./sections/soak.ts";

/**
 * `npm run bench [-- --quick] [-- --write] [-- --only broker,ingest,latency,rules,sdk,health,cluster,soak] [-- --profile DIR]`:
 * Refeed beside the tools users would pick instead (Mosquitto, Node-RED), in one run on this machine.
 */
const SECTIONS = ["broker", "ingest", "latency", "rules", "sdk", "health", "cluster", "soak"] as const;
/** Sections that, run on their own with --write, join the committed page (they name their own command). */
const JOINING: readonly Section[] = ["soak", "cluster"];
/** The soak lasts 30 minutes (3 with --quick): only when asked for with --only. */
const FULL_SECTIONS: readonly Section[] = ["broker", "ingest", "latency", "rules", "sdk", "health", "cluster"];
/**
 * Experience health loads 10,000 devices (about 3 minutes) and the cluster section starts 1, 2 and 3 nodes
 * behind HAProxy (about 3 minutes): in the full run, or asked for with --only.
 */
const QUICK_SECTIONS: readonly Section[] = ["broker", "ingest", "latency", "rules", "sdk"];
type Section = (typeof SECTIONS)[number];
const usage = `usage: npm run bench [-- --quick] [-- --write] [-- --only ${SECTIONS.join(",")}] [-- --profile DIR]\n       npm run bench -- --only soak [--quick] [--soak-minutes N] [--soak-rate N] [--write]   (the soak: 30 min, --quick 3 min)\n       npm run bench -- --render docs/benchmarks.json [--write]   (the report of an earlier run, again)`;

function parseArgs(argv: string[]) {
  const options = {
    quick: false,
    write: false,
    only: undefined as Set<Section> | undefined,
    profile: undefined as string | undefined,
    render: undefined as string | undefined,
    soakMinutes: undefined as number | undefined,
    soakRate: undefined as number | undefined,
  };
  const positive = (name: string, text: string | undefined) => {
    const v = Number(text);
    if (!text || !Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`);
    return v;
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    const [name, inline] = arg.split("=", 2) as [string, string | undefined];
    const value = () => inline ?? argv[(i += 1)];
    if (arg === "--quick") options.quick = true;
    else if (arg === "--write") options.write = true;
    else if (name === "--only") {
      const list = (value() ?? "").split(",").filter(Boolean);
      const bad = list.filter((s) => !(SECTIONS as readonly string[]).includes(s));
      if (list.length === 0 || bad.length > 0)
        throw new Error(
          `--only: unknown section ${bad.join(", ") || "(none given)"}; sections are ${SECTIONS.join(", ")}`,
        );
      options.only = new Set(list as Section[]);
    } else if (name === "--profile") {
      const dir = value();
      if (!dir) throw new Error("--profile needs a directory");
      options.profile = path.resolve(dir);
    } else if (name === "--render") {
      const file = value();
      if (!file) throw new Error("--render needs the JSON file of a run");
      options.render = path.resolve(file);
    } else if (name === "--soak-minutes") options.soakMinutes = positive(name, value());
    else if (name === "--soak-rate") options.soakRate = positive(name, value());
    else throw new Error(`unknown option ${arg}`);
  }
  return { ...options, only: options.only ?? new Set<Section>(options.quick ? QUICK_SECTIONS : FULL_SECTIONS) };
}

const started = performance.now();
const say = (text: string) =>
  process.stderr.write(`bench [${Math.round((performance.now() - started) / 1000)} s]: ${text}\n`);

async function main() {
  let options: ReturnType<typeof parseArgs>;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${usage}\n`);
    process.exit(2);
  }
  const docs = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../docs");
  const publish = async (fresh: Results) => {
    // The soak and the cluster section, run on their own, join the committed run's page instead of replacing it.
    const joining = !options.render && [...options.only].every((s) => JOINING.includes(s));
    const results: Results =
      joining && options.write
        ? {
            ...(JSON.parse(await readFile(path.join(docs, "benchmarks.json"), "utf8")) as Results),
            ...Object.fromEntries([...options.only].map((s) => [s, fresh[s]])),
          }
        : fresh;
    const report = renderReport(results);
    process.stdout.write(`${report}\n`);
    if (!options.write) return;
    await writeFile(path.join(docs, "benchmarks.md"), report);
    await writeFile(path.join(docs, "benchmarks.json"), `${JSON.stringify(results, null, 2)}\n`);
    say("wrote docs/benchmarks.md and docs/benchmarks.json");
  };
  if (options.render) {
    await publish(JSON.parse(await readFile(options.render, "utf8")) as Results);
    return;
  }
  const { quick, only } = options;
  const began = Date.now();
  const machine = await machineFacts();
  const load: Record<string, string> = {};
  const mark = (at: string) => (load[at] = os.loadavg()[0]!.toFixed(1));
  mark("at start");
  if (options.profile) await mkdir(options.profile, { recursive: true });
  const needPeers = only.has("broker") || only.has("ingest") || only.has("latency");
  const mosquitto = needPeers ? await ensureMosquitto(say) : "";
  const nodeRed = only.has("ingest") || only.has("latency") ? await ensureNodeRed(say) : "";

  const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-bench-"));
  const influxDir = path.join(dir, "influx");
  const port = await freePort();
  const log = pino({ level: "silent" });
  const start = async () => {
    const started = await startInfluxd({ dataDir: influxDir, log, port });
    const untrack = trackGroup(started.pid);
    return {
      ...started,
      url: started.url,
      pid: started.pid,
      close: () => started.close().finally(untrack),
    } as ManagedInfluxd;
  };
  let influxd: ManagedInfluxd = await start();
  const ctx: BenchContext = {
    quick,
    dir,
    influxd: () => influxd,
    async restartInfluxd(whileDown) {
      await influxd.close();
      await whileDown();
      influxd = await start();
    },
    mosquitto,
    nodeRed,
    stepSeconds: quick ? 2 : 10,
    refine: quick ? 0 : 2,
    profileDir: options.profile,
    say,
  };
  const defaults = quick ? QUICK_SECTIONS : FULL_SECTIONS;
  const asDefault = only.size === defaults.length && defaults.every((s) => only.has(s));
  const soakArgs = `${options.soakMinutes !== undefined ? ` --soak-minutes ${options.soakMinutes}` : ""}${options.soakRate !== undefined ? ` --soak-rate ${options.soakRate}` : ""}`;
  const command =
    `npm run bench --${quick ? " --quick" : ""}${asDefault ? "" : ` --only ${[...only].join(",")}`}${only.has("soak") ? soakArgs : ""}`.replace(
      / --$/,
      "",
    );
  const results: Results = {
    command,
    quick,
    startedAt: new Date(began).toISOString(),
    wallSeconds: 0,
    machine,
    load,
    stepSeconds: ctx.stepSeconds,
    generatorWorkers: "2-3 worker processes",
  };
  try {
    if (only.has("broker")) {
      mark("at the broker section");
      results.broker = await benchBrokers(ctx);
    }
    if (only.has("ingest")) {
      mark("at the ingest section");
      results.ingest = await benchIngest(ctx);
    }
    if (only.has("latency")) {
      mark("at the latency section");
      results.latency = await benchLatency(ctx);
    }
    if (only.has("rules")) {
      say("rules: evaluation cost with 1, 100 and 1,000 rules");
      results.rules = benchRuleEvaluation({ quick });
    }
    if (only.has("sdk")) {
      mark("at the sdk section");
      results.sdk = await benchSdk(ctx);
    }
    if (only.has("health")) {
      mark("at the health section");
      say("experience health: 10,000 devices, the whole fleet scored and the fleet view under news");
      results.health = await healthReport({ quick });
    }
    if (only.has("cluster")) {
      mark("at the cluster section");
      say("cluster: 1, 2 and 3 nodes of refeed cluster behind HAProxy");
      results.cluster = { ...(await benchCluster(ctx)), command, at: new Date().toISOString() };
    }
    if (only.has("soak")) {
      mark("at the soak section");
      results.soak = await benchSoak(ctx, {
        command,
        ...(options.soakMinutes !== undefined ? { minutes: options.soakMinutes } : {}),
        ...(options.soakRate !== undefined ? { rate: options.soakRate } : {}),
        ...sustainedFor(results),
      });
    }
  } finally {
    await influxd.close();
    await rm(dir, { recursive: true, force: true });
  }
  mark("at the end");
  results.wallSeconds = Math.round((Date.now() - began) / 1000);
  await publish(results);
  // Acknowledged means durable: a Refeed run that lost an acknowledged record fails the benchmark.
  const lostAcked = [
    ...(results.broker?.runs
      .filter((b) => b.name === "Refeed")
      .flatMap((b) => b.fanInQos1.steps.map((s) => s.result.lost)) ?? []),
    ...(results.ingest?.pipelines
      .filter((p) => p.name === "Refeed")
      .flatMap((p) => p.search.steps.map((s) => s.result.lost)) ?? []),
    results.ingest?.http.lost ?? 0,
    results.ingest?.outage.lost ?? 0,
    results.soak?.telemetry.missing ?? 0,
    results.soak?.churn.missing ?? 0,
  ].reduce((a, b) => a + b, 0);
  if (lostAcked > 0) {
    say(`REFEED LOST ${lostAcked} ACKNOWLEDGED RECORDS: see the tables`);
    process.exitCode = 1;
  }
  if (results.soak && !results.soak.verdict.ok) {
    say(`THE SOAK FAILED: ${results.soak.verdict.why}`);
    process.exitCode = 1;
  }
}

type Sustained = { rate: number; source: string };

/** Refeed's sustained telemetry -> action rate, when this run's latency section measured it (else the soak searches it). */
function sustainedFor(results: Results): { sustained?: Sustained } {
  const here = results.latency?.runs.find((r) => r.name === "Refeed")?.search.sustained?.rate;
  return here ? { sustained: { rate: here, source: "measured by this run's latency section" } } : {};
}

// Interrupted or failed: nothing the benchmark started stays behind.
process.once("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    say(`${signal}: stopping`);
    killAll();
    process.exit(130);
  });
}
process.stderr.on("error", () => undefined);

main().catch((err: Error) => {
  process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
