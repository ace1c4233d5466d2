import { fork, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as hdr from "hdr-histogram-js";
import { track } from "../children.ts";
import type { LatencySummary } from "../latency.ts";
import { cpuSeconds } from "../machine.ts";
import { micros, type ClientSpec, type Command, type Progress, type Reply, type RunStats } from "./protocol.ts";

export type { ClientSpec } from "./protocol.ts";

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), "worker.ts");

/** Counts across all workers at one moment of a run. */
export interface Totals {
  sent: number;
  acked: number;
  received: number;
  /** From the run's `stored` sampler (points in InfluxDB), when it has one. */
  stored: number;
}

export interface RunPlan {
  /** Publishes per second, all workers together. */
  rate: number;
  /** The group of clients that publish (default "default"). */
  group?: string;
  durationMs: number;
  qos: 0 | 1;
  records?: number;
  hot?: boolean;
  /** Default `full` (receivers need it); `seq` for ingest runs (see RunCommand). */
  stamps?: "full" | "seq";
  subject?: string;
  maxOutstanding?: number;
  perClient?: boolean;
  /** What has reached the consumer the run measures: acks, receipts or stored points. */
  delivered(t: Totals): number;
  /** What should reach it once `sent` records were sent (fan-out: times the subscribers). */
  expected?(sent: number): number;
  /** Samples a server-side count (e.g. points in InfluxDB) while the run goes on. */
  stored?(): Promise<number>;
  /** How long to wait after the last scheduled send for everything to arrive. */
  drainTimeoutMs: number;
  /** Runs beside the load once sending has begun (an outage, say); the run waits for it before collecting. */
  during?(live: () => Totals): Promise<void>;
}

export interface RunResult {
  rate: number;
  seconds: number;
  records: number;
  sent: number;
  acked: number;
  skipped: number;
  errors: number;
  received: number;
  duplicates: number;
  stale: number;
  stored: number;
  expected: number;
  delivered: number;
  /** Publish -> PUBACK. */
  ack: LatencySummary;
  /** Scheduled send -> received by a subscriber. */
  receive: LatencySummary;
  /** Scheduled send -> actually handed to mqtt.js: how late the generator itself was. */
  lag: LatencySummary;
  /** Everything expected arrived within the drain timeout. */
  drained: boolean;
  /** From the last scheduled send until everything expected arrived (or the timeout). */
  drainMs: number;
  /** Least-squares growth of the backlog (expected - delivered) over the second half of the sending window, records/s. */
  backlogGrowthPerSecond: number;
  /** The largest backlog seen while sending. */
  maxBacklog: number;
  /** CPU-seconds the generator's processes used during the run (sending and draining). */
  generatorCpuSeconds: number;
  wallSeconds: number;
  perClient: Record<string, { sent: number; acked: number }>;
  /** The first client error or lost connection, if any worker had one. */
  firstError: string | undefined;
}

interface Worker {
  index: number;
  child: ChildProcess;
  /** Publishing clients per group. */
  publishers: Map<string, number>;
  latest: Progress | undefined;
  waiters: Array<{ match(reply: Reply): boolean; resolve(reply: Reply): void; reject(err: Error): void }>;
}

const summarize = (h: hdr.Histogram): LatencySummary => {
  const at = (p: number) => (h.totalCount === 0 ? 0 : h.getValueAtPercentile(p) / 1000);
  return {
    count: h.totalCount,
    p50: at(50),
    p90: at(90),
    p99: at(99),
    p999: at(99.9),
    max: h.totalCount === 0 ? 0 : h.maxValue / 1000,
  };
};

/**
 * The benchmark's MQTT load generator: a few worker processes (worker.ts),
 * each with a share of the connections. The same generator drives Refeed and
 * the peers. Runs are open loop at a fixed rate with every record stamped
 * (run, worker, sequence number, scheduled time); the parent follows their
 * progress every 100 ms to see the backlog, and merges the workers' HDR
 * histograms at the end.
 */
export class LoadGenerator {
  private runId = 0;

  private constructor(private readonly workers: Worker[]) {}

  static async start(count: number): Promise<LoadGenerator> {
    const workers = await Promise.all(
      Array.from({ length: count }, async (_, index) => {
        const child = fork(WORKER, [], {
          execArgv: ["--import", "tsx"],
          env: { ...process.env, BENCH_WORKER: String(index) },
          stdio: ["ignore", "inherit", "inherit", "ipc"],
        });
        track(child);
        const worker: Worker = { index, child, publishers: new Map(), latest: undefined, waiters: [] };
        child.on("message", (message: Reply) => {
          if (message.op === "progress") worker.latest = message;
          for (const waiter of [...worker.waiters]) {
            if (message.op === "error") waiter.reject(new Error(`load worker ${index}: ${message.message}`));
            else if (!waiter.match(message)) continue;
            else waiter.resolve(message);
            worker.waiters.splice(worker.waiters.indexOf(waiter), 1);
          }
        });
        child.once("exit", (code) => {
          for (const waiter of worker.waiters.splice(0))
            waiter.reject(new Error(`load worker ${index} exited (${code})`));
        });
        await LoadGenerator.await(worker, (r) => r.op === "ready", 60_000);
        return worker;
      }),
    );
    return new LoadGenerator(workers);
  }

  private static await<T extends Reply>(
    worker: Worker,
    match: (reply: Reply) => boolean,
    timeoutMs: number,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`load worker ${worker.index}: no answer in ${timeoutMs} ms`)),
        timeoutMs,
      );
      worker.waiters.push({
        match,
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply as T);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
    });
  }

  private send(worker: Worker, command: Command) {
    worker.child.send(command);
  }

  get pids(): number[] {
    return this.workers.map((w) => w.child.pid!);
  }

  get size(): number {
    return this.workers.length;
  }

  /** CPU-seconds used so far by all worker processes. */
  async cpuSeconds(): Promise<number> {
    let total = 0;
    for (const pid of this.pids) total += await cpuSeconds(pid);
    return total;
  }

  /**
   * Opens connections; `worker(i)` places client i (default: in turn over all
   * workers). Resolves once every worker has connected its share (and
   * subscribed); failures are counted, not thrown.
   */
  async connect(
    url: string,
    clients: ClientSpec[],
    options: { subscribeQos?: 0 | 1; keepaliveSeconds?: number; concurrency?: number; worker?(i: number): number } = {},
  ) {
    const shares: ClientSpec[][] = this.workers.map(() => []);
    clients.forEach((c, i) => shares[(options.worker?.(i) ?? i) % this.workers.length]!.push(c));
    const answers = await Promise.all(
      this.workers.map(async (worker, i) => {
        const share = shares[i]!;
        for (const c of share)
          if (c.topic !== undefined)
            worker.publishers.set(c.group ?? "default", (worker.publishers.get(c.group ?? "default") ?? 0) + 1);
        if (share.length === 0) return { connected: 0, failed: 0, firstError: undefined };
        const answer = LoadGenerator.await<Extract<Reply, { op: "connected" }>>(
          worker,
          (r) => r.op === "connected",
          600_000,
        );
        this.send(worker, {
          op: "connect",
          url,
          clients: share,
          subscribeQos: options.subscribeQos ?? 1,
          keepaliveSeconds: options.keepaliveSeconds ?? 60,
          concurrency: options.concurrency ?? 50,
        });
        return answer;
      }),
    );
    return {
      connected: answers.reduce((a, b) => a + b.connected, 0),
      failed: answers.reduce((a, b) => a + b.failed, 0),
      firstError: answers.find((a) => a.firstError)?.firstError,
    };
  }

  async run(plan: RunPlan): Promise<RunResult> {
    const runId = (this.runId += 1);
    const records = plan.records ?? 1;
    const group = plan.group ?? "default";
    const publishersOf = (w: Worker) => w.publishers.get(group) ?? 0;
    const allPublishers = this.workers.reduce((a, w) => a + publishersOf(w), 0);
    if (allPublishers === 0) throw new Error(`no publishing clients connected in group ${group}`);
    const share = (w: Worker) => plan.rate * (publishersOf(w) / allPublishers);
    const totals = this.workers.map((w) => Math.round((share(w) * plan.durationMs) / 1000));
    const senders = totals.map((t) => t * records);
    const startAt = micros() + 300_000;
    const cpuBefore = await this.cpuSeconds();
    const wallStart = performance.now();
    for (const w of this.workers) w.latest = undefined;
    const sentAll = Promise.all(
      this.workers.map((w) =>
        LoadGenerator.await<Extract<Reply, { op: "sent" }>>(
          w,
          (r) => r.op === "sent" && r.runId === runId,
          plan.durationMs + 600_000,
        ),
      ),
    );
    for (const w of this.workers) {
      this.send(w, {
        op: "run",
        runId,
        startAt,
        group,
        rate: Math.max(share(w), 1e-9),
        total: totals[w.index]!,
        qos: plan.qos,
        records,
        hot: plan.hot ?? false,
        stamps: plan.stamps ?? "full",
        ...(plan.subject !== undefined ? { subject: plan.subject } : {}),
        maxOutstanding: plan.maxOutstanding ?? 20_000,
        perClient: plan.perClient ?? false,
        senders,
      });
    }

    let stored = 0;
    const expected = (sent: number) => (plan.expected ? plan.expected(sent) : sent);
    const now = (): Totals => {
      const t = { sent: 0, acked: 0, received: 0, stored };
      for (const w of this.workers) {
        if (w.latest?.runId !== runId) continue;
        t.sent += w.latest.sent;
        t.acked += w.latest.acked;
        t.received += w.latest.received;
      }
      return t;
    };
    const series: Array<{ at: number; backlog: number }> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        if (plan.stored) stored = await plan.stored().catch(() => stored);
        const t = now();
        series.push({ at: micros(), backlog: expected(t.sent) - plan.delivered(t) });
        await sleep(100);
      }
    })();

    const beside = plan.during
      ? sleep(Math.max(0, (startAt - micros()) / 1000)).then(() => plan.during!(now))
      : Promise.resolve();
    const done = await sentAll;
    const endAt = startAt + plan.durationMs * 1000;
    // Skipped sends never arrive (they fail the run on their own): wait for what was sent.
    const finalExpected = expected(done.reduce((a, d) => a + d.sent, 0));
    const deadline = performance.now() + plan.drainTimeoutMs;
    let drained = false;
    for (;;) {
      if (plan.stored) stored = await plan.stored().catch(() => stored);
      if (plan.delivered(now()) >= finalExpected) {
        drained = true;
        break;
      }
      if (performance.now() > deadline) break;
      await sleep(20);
    }
    const drainMs = Math.max(0, (micros() - endAt) / 1000);
    await beside;
    sampling = false;
    await sampler;

    const stats = await Promise.all(
      this.workers.map((w) => {
        const answer = LoadGenerator.await<Extract<Reply, { op: "stats" }>>(
          w,
          (r) => r.op === "stats" && r.runId === runId,
          60_000,
        );
        this.send(w, { op: "collect", runId });
        return answer;
      }),
    );
    const generatorCpuSeconds = (await this.cpuSeconds()) - cpuBefore;
    if (plan.stored) stored = await plan.stored().catch(() => stored);
    const sum = (
      key: keyof Pick<RunStats, "sent" | "acked" | "skipped" | "errors" | "received" | "duplicates" | "stale">,
    ) => stats.reduce((a, s) => a + s[key], 0);
    const merge = (key: "ack" | "receive" | "lag") => {
      const into = hdr.build({
        lowestDiscernibleValue: 1,
        highestTrackableValue: 3_600_000_000,
        numberOfSignificantValueDigits: 3,
      });
      for (const s of stats) {
        const h = hdr.decodeFromCompressedBase64(s[key]);
        into.add(h);
        h.destroy();
      }
      const summary = summarize(into);
      into.destroy();
      return summary;
    };
    const final: Totals = { sent: sum("sent"), acked: sum("acked"), received: sum("received"), stored };
    const sending = series.filter((s) => s.at >= startAt && s.at <= endAt);
    return {
      rate: plan.rate,
      seconds: plan.durationMs / 1000,
      records,
      sent: final.sent,
      acked: final.acked,
      skipped: sum("skipped"),
      errors: sum("errors"),
      received: final.received,
      duplicates: sum("duplicates"),
      stale: sum("stale"),
      stored,
      expected: finalExpected,
      delivered: plan.delivered(final),
      ack: merge("ack"),
      receive: merge("receive"),
      lag: merge("lag"),
      drained,
      drainMs,
      backlogGrowthPerSecond: growth(sending.slice(Math.floor(sending.length / 2))),
      maxBacklog: Math.max(0, ...sending.map((s) => s.backlog)),
      generatorCpuSeconds,
      wallSeconds: (performance.now() - wallStart) / 1000,
      perClient: Object.fromEntries(stats.flatMap((s) => Object.entries(s.perClient ?? {}))),
      firstError: stats.find((s) => s.firstError)?.firstError,
    };
  }

  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.child.exitCode !== null) return resolve();
            const timer = setTimeout(() => w.child.kill("SIGKILL"), 10_000);
            w.child.once("exit", () => {
              clearTimeout(timer);
              resolve();
            });
            this.send(w, { op: "close" });
          }),
      ),
    );
  }
}

/** Slope of a least-squares line through the samples, per second. */
function growth(samples: Array<{ at: number; backlog: number }>): number {
  if (samples.length < 3) return 0;
  const n = samples.length;
  const mx = samples.reduce((a, s) => a + s.at, 0) / n;
  const my = samples.reduce((a, s) => a + s.backlog, 0) / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.at - mx) * (s.backlog - my);
    den += (s.at - mx) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 1e6;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
