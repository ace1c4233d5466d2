import type { LatencySummary } from "./latency.ts";
import type { LoadGenerator, RunPlan, RunResult } from "./load/generator.ts";
import { cpuMeter } from "./machine.ts";
import { judge, type Verdict } from "./steps.ts";

/** One step of load as the report shows it. */
export interface StepRow {
  /** Publishes per second offered. */
  rate: number;
  records: number;
  /** Records (points, deliveries) per second that had to arrive: rate x records x receivers. */
  offered: number;
  seconds: number;
  sent: number;
  delivered: number;
  lost: number;
  duplicates: number;
  /** The step's latency: publish -> PUBACK, or scheduled send -> received. */
  latency: LatencySummary;
  /** Publish -> PUBACK, where the step measured receipt as its latency. */
  ack?: LatencySummary;
  drainMs: number;
  backlogGrowthPerSecond: number;
  maxBacklog: number;
  generatorLagP99: number;
  /** Cores kept busy during the step, per process ("generator": all its workers). */
  cores: Record<string, number>;
  /** CPU-seconds per 10,000 delivered records, per process. */
  cpuPer10k: Record<string, number>;
  verdict: Verdict;
}

export interface StepOptions {
  gen: LoadGenerator;
  plan: RunPlan;
  /** The processes whose CPU the step reports, besides the generator. */
  processes: Record<string, () => number | undefined>;
  latency: "ack" | "receive";
  /** Waits until the system has finished earlier work (a previous step's backlog). */
  settle?(): Promise<void>;
  /** The scenario's own count of what arrived (e.g. points in InfluxDB, per device), from `since` (epoch ms) on. */
  check?(result: RunResult, since: number): Promise<{ lost: number; duplicated: number }>;
}

/** Runs one step of open-loop load and measures it: counts, latency, CPU per process. */
export async function runStep(options: StepOptions): Promise<StepRow> {
  await options.settle?.();
  const since = Date.now();
  const cpu = await cpuMeter(options.processes);
  const r = await options.gen.run(options.plan);
  const used = await cpu.stop();
  const counted = options.check
    ? await options.check(r, since)
    : { lost: Math.max(0, r.expected - r.delivered), duplicated: r.duplicates };
  const delivered = Math.max(1, r.delivered);
  const seconds = { ...used.seconds, generator: r.generatorCpuSeconds };
  return {
    rate: r.rate,
    records: r.records,
    offered: r.expected / r.seconds,
    seconds: r.seconds,
    sent: r.sent,
    delivered: r.delivered,
    lost: counted.lost,
    duplicates: counted.duplicated,
    latency: options.latency === "ack" ? r.ack : r.receive,
    ...(options.latency === "receive" && r.ack.count > 0 ? { ack: r.ack } : {}),
    drainMs: r.drainMs,
    backlogGrowthPerSecond: r.backlogGrowthPerSecond,
    maxBacklog: r.maxBacklog,
    generatorLagP99: r.lag.p99,
    cores: { ...used.cores, generator: r.generatorCpuSeconds / r.wallSeconds },
    cpuPer10k: Object.fromEntries(Object.entries(seconds).map(([name, s]) => [name, (s / delivered) * 10_000])),
    verdict: judge(r, counted.lost),
  };
}

/** Waits until a counter stops moving (for `quietMs`), at most `timeoutMs`. */
export async function quiet(read: () => Promise<number>, quietMs = 500, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = await read();
  let since = Date.now();
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = await read();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return;
  }
}
