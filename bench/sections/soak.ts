import { loadavg } from "node:os";
import path from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { EVENTS, FEEDBACK } from "../../ingest/queries.ts";
import { ident, influxql } from "../../store/influxql.ts";
import { ADMIN_TOKEN, deviceClient, optIn, rulesDir, sleep, type BenchContext } from "../context.ts";
import { seedDevices, type BenchDevice } from "../fleet.ts";
import { compareStored, createDatabase, storedPerDevice } from "../influx.ts";
import { collectGarbage } from "../inspector.ts";
import { latencyHistogram, type LatencySummary } from "../latency.ts";
import { LoadGenerator } from "../load/generator.ts";
import { rssBytes } from "../machine.ts";
import { startRefeed, type RunningRefeed } from "../refeed-process.ts";
import { stepUp } from "../steps.ts";
import { refeedSystem, THRESHOLD_RULE } from "./latency.ts";

/**
 * The soak: one Refeed for `minutes` at half the sustained telemetry -> action rate, with a second fleet of
 * shared devices that connect, run a customer's session (events, feedback), disconnect and come back all the
 * time, and customers erased now and then. It asks two questions a short step cannot: does memory keep
 * growing (the slope of the resident set and of the V8 heap after a full GC, after a warm-up), and is
 * anything acknowledged missing from InfluxDB at the end.
 */
export interface SoakSection {
  /** The command of the run that measured it (the soak is often run on its own). */
  command: string;
  startedAt: string;
  wallSeconds: number;
  load: Record<string, string>;
  minutes: number;
  warmupMinutes: number;
  /** Telemetry publishes per second, and where that rate came from. */
  rate: number;
  rateSource: string;
  devices: number;
  /** Memory after a full GC, every `sampleSeconds`. */
  sampleSeconds: number;
  samples: Array<{ atSeconds: number; rssMiB: number; heapMiB: number }>;
  /** Least-squares slopes over the samples after the warm-up, MiB per minute. */
  rssSlope: number;
  heapSlope: number;
  limitMiBPerMinute: number;
  telemetry: { sent: number; acked: number; missing: number; duplicated: number; ack: LatencySummary };
  actions: { received: number; expected: number; latency: LatencySummary };
  churn: {
    devices: number;
    connects: number;
    sessions: number;
    /** Event and feedback records acknowledged (QoS 1) about customers never erased, and how many of them InfluxDB lacks. */
    acked: number;
    missing: number;
    connectErrors: number;
    firstError?: string;
    actionsReceived: number;
  };
  erasures: { done: number; retried: number; failed: number; ms: LatencySummary; first?: string };
  warnings: Record<string, number>;
  verdict: { ok: boolean; why?: string };
}

export interface SoakOptions {
  /** Overrides the duration (default 30 min, --quick 3 min). */
  minutes?: number;
  /** Overrides the telemetry rate (publishes/s). */
  rate?: number;
  /** The sustained telemetry -> action rate, from this run's latency section; else it is searched first. */
  sustained?: { rate: number; source: string };
  command: string;
}

const DEVICES = 20;
const CHURN_DEVICES = 40;
const SUBJECTS = 400;
const LIMIT_MIB_PER_MINUTE = 1;
const MiB = 2 ** 20;
/** What the soak uses when no sustained rate is known: the committed full run's half, rounded down. */
const FALLBACK_RATE = 2000;

/** A subject-scoped rule over a count window, so the soak also exercises windows, sessions and the erasure of both. */
const TAPS_RULE = `id: soak-taps
description: "The soak's subject-scoped rule: three taps in the hour set a key on every device of the customer"
on: event:tap
scope: subject
aggregates:
  taps: { fn: count, of: "event:tap", window: 1h }
when: agg.taps >= 3
then:
  - set: soak.taps
    expr: agg.taps
`;

const FEEDBACK_TEXTS = [
  "Quick and easy, thanks.",
  "The screen keeps freezing, terrible.",
  "Fine.",
  "Love the new layout!",
  "Too slow today.",
];

export async function benchSoak(ctx: BenchContext, options: SoakOptions): Promise<SoakSection> {
  const began = Date.now();
  const load: Record<string, string> = {};
  const mark = (at: string) => (load[at] = loadavg()[0]!.toFixed(1));
  mark("at start");
  const minutes = options.minutes ?? (ctx.quick ? 3 : 30);
  const warmupMinutes = ctx.quick ? 1 : Math.min(5, Math.max(1, minutes / 5));
  const sampleSeconds = minutes <= 5 ? 5 : 15;
  const sustained = options.rate !== undefined ? undefined : (options.sustained ?? (await measureSustained(ctx)));
  const rate = options.rate ?? (sustained ? Math.max(1, Math.round(sustained.rate * 0.5)) : FALLBACK_RATE);
  const rateSource =
    options.rate !== undefined
      ? "--soak-rate"
      : sustained
        ? `50% of ${Math.round(sustained.rate).toLocaleString("en-US")} msgs/s, ${sustained.source}`
        : "no rate was sustained in the search: a fixed rate";

  const db = "bench_soak";
  const influx = ctx.influxd();
  await createDatabase(influx.url, db);
  const ids = Array.from({ length: DEVICES }, (_, i) => ({ id: `soak-${String(i).padStart(2, "0")}` }));
  const churnIds = Array.from({ length: CHURN_DEVICES }, (_, i) => ({ id: `kiosk-${String(i).padStart(2, "0")}` }));
  const seeded = await seedDevices(influx.url, db, [...ids, ...churnIds]);
  const devices = seeded.filter((d) => d.id.startsWith("soak-"));
  const kiosks = seeded.filter((d) => d.id.startsWith("kiosk-"));
  const refeed = await startRefeed({
    influxUrl: influx.url,
    db,
    dataDir: path.join(ctx.dir, "refeed-soak"),
    adminToken: ADMIN_TOKEN,
    rulesDir: await rulesDir(ctx, "rules-soak", { "threshold.yaml": THRESHOLD_RULE, "taps.yaml": TAPS_RULE }),
    inspect: true,
  });
  const gen = await LoadGenerator.start(2);
  try {
    const subjects = Array.from({ length: SUBJECTS }, (_, i) => `soak-cust-${i}`);
    for (const s of subjects) await optIn(refeed, s);
    await gen.connect(
      refeed.mqtt,
      devices.map((d) => deviceClient(d)),
    );
    ctx.say(
      `soak: ${minutes} min at ${rate.toLocaleString("en-US")} telemetry/s (${rateSource}), ${CHURN_DEVICES} shared devices coming and going, erasures; warm-up ${warmupMinutes} min`,
    );
    const churn = new Churn(refeed, kiosks, subjects);
    const samples: SoakSection["samples"] = [];
    const durationMs = minutes * 60_000;
    const run = await gen.run({
      rate,
      qos: 1,
      hot: true,
      durationMs,
      perClient: true,
      drainTimeoutMs: 60_000,
      delivered: (t) => t.received,
      during: async () => {
        const started = Date.now();
        const end = started + durationMs;
        const churning = churn.run(end);
        const erasing = churn.erase(end, ctx.quick ? 20_000 : 30_000);
        let next = started;
        while (Date.now() < end) {
          next += sampleSeconds * 1000;
          await sleep(Math.max(0, next - Date.now()));
          await collectGarbage(refeed.inspector!);
          const [rss, heap] = await Promise.all([rssBytes(refeed.pid), refeed.metric("nodejs_heap_size_used_bytes")]);
          const atSeconds = Math.round((Date.now() - started) / 1000);
          samples.push({ atSeconds, rssMiB: rss / MiB, heapMiB: heap / MiB });
          if (samples.length % Math.max(1, Math.round(60 / sampleSeconds)) === 0)
            ctx.say(
              `  soak ${Math.round(atSeconds / 60)} min: RSS ${(rss / MiB).toFixed(0)} MiB, heap ${(heap / MiB).toFixed(0)} MiB, ${churn.connects} connects, ${churn.erasures.done} erasures, load ${loadavg()[0]!.toFixed(1)}`,
            );
        }
        await Promise.all([churning, erasing]);
      },
    });
    mark("at the end of the load");
    ctx.say("soak: counting what was acknowledged against InfluxDB");
    await settled(refeed);
    const acked = Object.fromEntries(Object.entries(run.perClient).map(([d, c]) => [d, c.acked]));
    const stored = compareStored(acked, await storedPerDevice(influx.url, db, began - 60_000));
    const churnMissing = await churn.missing(influx.url, db);
    const after = samples.filter((s) => s.atSeconds >= warmupMinutes * 60);
    const rssSlope = slope(after.map((s) => [s.atSeconds / 60, s.rssMiB]));
    const heapSlope = slope(after.map((s) => [s.atSeconds / 60, s.heapMiB]));
    const problems = [
      rssSlope > LIMIT_MIB_PER_MINUTE ? `RSS grew ${rssSlope.toFixed(2)} MiB/min` : "",
      heapSlope > LIMIT_MIB_PER_MINUTE ? `the heap grew ${heapSlope.toFixed(2)} MiB/min` : "",
      stored.lost + churnMissing > 0 ? `${stored.lost + churnMissing} acknowledged records missing` : "",
      run.errors > 0 || run.firstError ? `${run.errors} client errors (first: ${run.firstError ?? "?"})` : "",
      run.skipped > 0 ? `${run.skipped} telemetry records not sent (too many unacknowledged)` : "",
    ].filter(Boolean);
    const section: SoakSection = {
      command: options.command,
      startedAt: new Date(began).toISOString(),
      wallSeconds: 0,
      load,
      minutes,
      warmupMinutes,
      rate,
      rateSource,
      devices: DEVICES,
      sampleSeconds,
      samples: samples.map((s) => ({ ...s, rssMiB: round1(s.rssMiB), heapMiB: round1(s.heapMiB) })),
      rssSlope,
      heapSlope,
      limitMiBPerMinute: LIMIT_MIB_PER_MINUTE,
      telemetry: {
        sent: run.sent,
        acked: run.acked,
        missing: stored.lost,
        duplicated: stored.duplicated,
        ack: run.ack,
      },
      actions: { received: run.received, expected: run.expected, latency: run.receive },
      churn: {
        devices: CHURN_DEVICES,
        connects: churn.connects,
        sessions: churn.sessions,
        acked: churn.ackedTotal,
        missing: churnMissing,
        connectErrors: churn.connectErrors,
        ...(churn.firstError ? { firstError: churn.firstError } : {}),
        actionsReceived: churn.actionsReceived,
      },
      erasures: {
        done: churn.erasures.done,
        retried: churn.erasures.retried,
        failed: churn.erasures.failed,
        ms: churn.erasures.ms.summary(),
        ...(churn.erasures.first ? { first: churn.erasures.first } : {}),
      },
      warnings: await refeed.warnings(),
      verdict: problems.length === 0 ? { ok: true } : { ok: false, why: problems.join("; ") },
    };
    section.wallSeconds = Math.round((Date.now() - began) / 1000);
    ctx.say(
      `soak: RSS ${rssSlope.toFixed(2)} MiB/min, heap ${heapSlope.toFixed(2)} MiB/min after warm-up; ${stored.lost + churnMissing} acknowledged missing; ${section.verdict.ok ? "passed" : `FAILED: ${section.verdict.why}`}`,
    );
    return section;
  } finally {
    await gen.close();
    await refeed.stop();
  }
}

const round1 = (v: number) => Math.round(v * 10) / 10;

/**
 * The sustained telemetry -> action rate now, on this machine as busy as it is: the latency section's search
 * (shorter steps), on a Refeed of its own, so that 50% means half of what this machine sustains today.
 */
async function measureSustained(ctx: BenchContext): Promise<{ rate: number; source: string } | undefined> {
  ctx.say("soak: the sustained telemetry -> action rate first");
  const seconds = ctx.quick ? 3 : 5;
  const system = await refeedSystem(ctx);
  try {
    const search = await stepUp({
      start: 500,
      max: 64_000,
      refine: 1,
      run: (rate) => system.run(rate, seconds),
      judge: (row) => row.verdict,
      say: ctx.say,
    });
    const rate = search.sustained?.rate;
    return rate ? { rate, source: `searched just before, in ${seconds} s steps` } : undefined;
  } finally {
    await system.stop();
  }
}

/** Least-squares slope of y over x. */
export function slope(points: ReadonlyArray<readonly [number, number]>): number {
  if (points.length < 2) return 0;
  const mx = points.reduce((a, [x]) => a + x, 0) / points.length;
  const my = points.reduce((a, [, y]) => a + y, 0) / points.length;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** Waits until Refeed's ingest has written everything it acknowledged to InfluxDB. */
async function settled(refeed: RunningRefeed): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const [pending, spooled] = await Promise.all([
      refeed.metric("refeed_ingest_pending_points"),
      refeed.metric("refeed_ingest_spool_points"),
    ]);
    if (pending === 0 && spooled === 0) return;
    await sleep(200);
  }
  throw new Error("soak: Refeed did not write what it acknowledged within 2 minutes of the end");
}

/**
 * The shared devices: each connects, runs one customer's session (session_start, three taps, a feedback,
 * session_end, all QoS 1), disconnects and comes back a moment later for another customer. Every
 * acknowledged record is counted per customer, so the end can ask InfluxDB for each; customers erased
 * meanwhile leave the pool first and are not counted (their records are meant to be gone).
 */
class Churn {
  connects = 0;
  sessions = 0;
  connectErrors = 0;
  firstError: string | undefined;
  actionsReceived = 0;
  readonly erasures = {
    done: 0,
    retried: 0,
    failed: 0,
    ms: latencyHistogram(),
    first: undefined as string | undefined,
  };
  private readonly acked = new Map<string, { events: number; feedback: number }>();
  private readonly erased = new Set<string>();
  private pool: string[];
  private seq = 0;

  constructor(
    private readonly refeed: RunningRefeed,
    private readonly kiosks: BenchDevice[],
    subjects: string[],
  ) {
    this.pool = [...subjects];
  }

  get ackedTotal(): number {
    let total = 0;
    for (const [subject, c] of this.acked) if (!this.erased.has(subject)) total += c.events + c.feedback;
    return total;
  }

  async run(end: number): Promise<void> {
    await Promise.all(this.kiosks.map((k, i) => this.device(k, end, i)));
  }

  private async device(kiosk: BenchDevice, end: number, index: number): Promise<void> {
    await sleep(index * 50);
    while (Date.now() < end) {
      const subject = this.pool[(this.seq += 1) % this.pool.length]!;
      let client: MqttClient | undefined;
      try {
        client = await mqtt.connectAsync(this.refeed.mqtt, {
          clientId: kiosk.id,
          username: kiosk.id,
          password: kiosk.token,
          reconnectPeriod: 0,
          connectTimeout: 10_000,
        });
        this.connects += 1;
        client.on("message", () => (this.actionsReceived += 1));
        await client.subscribeAsync(`devices/${kiosk.id}/actions`, { qos: 1 });
        const count = this.acked.get(subject) ?? { events: 0, feedback: 0 };
        this.acked.set(subject, count);
        const event = async (name: string, props: Record<string, unknown>) => {
          await client!.publishAsync(`devices/${kiosk.id}/events`, JSON.stringify({ subject, name, props }), {
            qos: 1,
          });
          count.events += 1;
        };
        await event("session_start", { n: this.seq });
        for (let i = 0; i < 3; i += 1) await event("tap", { n: this.seq, i });
        const text = FEEDBACK_TEXTS[this.seq % FEEDBACK_TEXTS.length]!;
        await client.publishAsync(
          `devices/${kiosk.id}/feedback`,
          JSON.stringify({ subject, rating: 1 + (this.seq % 5), text }),
          { qos: 1 },
        );
        count.feedback += 1;
        await event("session_end", { n: this.seq });
        this.sessions += 1;
      } catch (err) {
        this.connectErrors += 1;
        this.firstError ??= (err as Error).message;
      } finally {
        await client?.endAsync().catch(() => undefined);
      }
      await sleep(200 + (this.seq % 7) * 100);
    }
  }

  /** Erases one customer every `everyMs`, one at a time, taking them out of the pool first. */
  async erase(end: number, everyMs: number): Promise<void> {
    while (Date.now() + everyMs < end && this.pool.length > 20) {
      await sleep(everyMs);
      const subject = this.pool.shift()!;
      this.erased.add(subject);
      const started = performance.now();
      for (let attempt = 0; ; attempt += 1) {
        const res = await fetch(`${this.refeed.http}/api/subjects/${subject}`, {
          method: "DELETE",
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        }).catch((err: Error) => ({ status: 0, text: () => Promise.resolve(err.message) }));
        if (res.status === 200) {
          this.erasures.done += 1;
          this.erasures.ms.recordMs(performance.now() - started);
          break;
        }
        // 503: the spool is being replayed, or the erasure was cut short; calling again finishes it.
        if (res.status === 503 && attempt < 10) {
          this.erasures.retried += 1;
          await sleep(2000);
          continue;
        }
        this.erasures.failed += 1;
        this.erasures.first ??= `${subject}: ${res.status} ${(await res.text()).slice(0, 200)}`;
        break;
      }
    }
  }

  /** Acknowledged event and feedback records of customers never erased that InfluxDB does not hold. */
  async missing(influxUrl: string, db: string): Promise<number> {
    const count = async (q: string) => {
      const res = await fetch(`${influxUrl}/query?${new URLSearchParams({ db, q })}`);
      const body = (await res.json()) as {
        results: Array<{ error?: string; series?: Array<{ tags: { subject: string }; values: number[][] }> }>;
      };
      if (body.results[0]?.error) throw new Error(`soak: counting stored records: ${body.results[0].error}`);
      return new Map((body.results[0]?.series ?? []).map((s) => [s.tags.subject, s.values[0]?.[1] ?? 0]));
    };
    const events = await count(influxql`SELECT count("props") FROM ${ident(EVENTS)} GROUP BY "subject"`.text);
    const feedback = await count(influxql`SELECT count("rating") FROM ${ident(FEEDBACK)} GROUP BY "subject"`.text);
    let missing = 0;
    for (const [subject, c] of this.acked) {
      if (this.erased.has(subject)) continue;
      missing += Math.max(0, c.events - (events.get(subject) ?? 0));
      missing += Math.max(0, c.feedback - (feedback.get(subject) ?? 0));
    }
    return missing;
  }
}
