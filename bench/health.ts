import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { pino } from "pino";
import { generateOwnedToken, hashToken } from "../auth/tokens.ts";
import { startInfluxd } from "../store/influxd.ts";
import { startRefeed } from "./refeed-process.ts";
import { ident, influxql } from "../store/influxql.ts";

const HOUR = 3_600_000;
const ADMIN = "bench-admin-token-0123456789";
const DB = "bench_health";

/** The fields of GET /api/fleet/health that the benchmark reads. */
interface FleetPage {
  total: number;
  devices: Array<{ feedback: { latestNegative: { text: string } | null } }>;
}

export interface HealthBenchRow {
  call: string;
  requests: number;
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
}

/** A small deterministic generator: the same fleet on every run. */
function seeded(seed: number) {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x6d2b79f5) >>> 0;
    let t = x;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Seven days (one in quick mode) of a fleet's life as line protocol, in the
 * platform's own schema (docs/schema.md): registry, telemetry every hour,
 * sessions with the odd error, feedback with sentiment, suggestions and their
 * answers, presence with online_ms. Written straight to InfluxDB: provisioning
 * 10,000 devices through the API would measure scrypt, not health. The first
 * `active` devices get real tokens, to send news during the measurement.
 */
function* fleetLines(devices: number, days: number, now: number, tokenHash: (d: number) => string): Generator<string> {
  const random = seeded(42);
  const from = now - days * 24 * HOUR;
  const us = (ms: number) => `${Math.round(ms)}000`;
  const kinds = ["atm", "tv", "kiosk", "banking-app", "ride-app"];
  for (let d = 0; d < devices; d += 1) {
    const id = `dev-${String(d).padStart(5, "0")}`;
    const subject = `cust-${String(d).padStart(5, "0")}`;
    const troubled = random() < 0.05;
    yield `device_registry,device=${id} op="provisioned",token_hash="${tokenHash(d)}",kind="${kinds[d % kinds.length]}",subject="${subject}" ${us(from - HOUR + d)}`;
    for (const purpose of ["analytics", "personalization", "feedback"])
      yield `consent,subject=${subject},purpose=${purpose} granted=true,by="admin" ${us(from - HOUR + d)}`;
    yield `presence,device=${id},event=connect client="${id}",transport="tcp",connections=1,online_ms=0 ${us(from + random() * HOUR)}`;
    const drop = from + (0.3 + random() * 0.4) * days * 24 * HOUR;
    yield `presence,device=${id},event=disconnect,reason=connection_lost client="${id}",transport="tcp",connections=0,online_ms=${Math.round(drop - from)} ${us(drop)}`;
    yield `presence,device=${id},event=connect client="${id}",transport="tcp",connections=1,online_ms=0 ${us(drop + random() * 10 * 60_000)}`;
    for (let h = 0; h < days * 24; h += 1) {
      const latency = Math.round(troubled ? 300 + random() * 3000 : 50 + random() * 500);
      yield `telemetry,device=${id} latency_ms=${latency},errors=${random() < (troubled ? 0.2 : 0.02) ? 1 : 0},temp=${(18 + random() * 10).toFixed(1)} ${us(from + h * HOUR + random() * HOUR * 0.9)}`;
    }
    for (let s = 0; s < days * 2; s += 1) {
      const at = from + s * 12 * HOUR + random() * 6 * HOUR;
      yield `events,device=${id},event=session_start,subject=${subject} props="{}" ${us(at)}`;
      if (random() < (troubled ? 0.4 : 0.05))
        yield `events,device=${id},event=error,subject=${subject} props="{\\"code\\":\\"E1\\"}" ${us(at + 30_000)}`;
      yield `events,device=${id},event=session_end,subject=${subject} props="{\\"seconds\\":60}" ${us(at + 60_000)}`;
    }
    for (let f = 0; f < 3; f += 1) {
      const unhappy = troubled ? random() < 0.8 : random() < 0.1;
      yield `feedback,device=${id},subject=${subject} rating=${unhappy ? 1 : 5},text="${unhappy ? "Terrible experience, very slow today." : "Works great, I love it."}",sentiment=${unhappy ? -0.6 : 1.2} ${us(from + random() * days * 24 * HOUR)}`;
    }
    const asked = from + random() * days * 24 * HOUR;
    yield `action_log,device=${id} action="act_${id}",status="proposed",rule="ask-for-rating",kind="suggest",key="feedback.rating_request",owner="subject:${subject}",why="bench",value="\\"open\\"",subject="${subject}" ${us(asked)}`;
    yield `action_log,device=${id} action="act_${id}",status="delivered" ${us(asked + 100)}`;
    yield `action_log,device=${id} action="act_${id}",status="${random() < 0.7 ? "accepted" : "declined"}" ${us(asked + 60_000)}`;
  }
}

async function writeFleet(influxUrl: string, lines: Iterable<string>): Promise<number> {
  const url = `${influxUrl}/write?db=${DB}&precision=u`;
  let written = 0;
  let batch: string[] = [];
  const inFlight = new Set<Promise<void>>();
  const post = (body: string) => {
    const p: Promise<void> = fetch(url, { method: "POST", body }).then(async (res) => {
      if (res.status !== 204) throw new Error(`InfluxDB refused a batch: ${res.status} ${await res.text()}`);
    });
    const tracked = p.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
    return tracked;
  };
  for (const line of lines) {
    batch.push(line);
    if (batch.length === 5000) {
      written += batch.length;
      void post(batch.join("\n"));
      batch = [];
      if (inFlight.size >= 4) await Promise.race(inFlight);
    }
  }
  if (batch.length > 0) {
    written += batch.length;
    void post(batch.join("\n"));
  }
  await Promise.all(inFlight);
  return written;
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function measure(
  call: string,
  requests: number,
  concurrency: number,
  get: () => Promise<void>,
): Promise<HealthBenchRow> {
  const times: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests) {
        next += 1;
        const started = performance.now();
        await get();
        times.push(performance.now() - started);
      }
    }),
  );
  times.sort((a, b) => a - b);
  const round = (x: number) => Math.round(x);
  return {
    call,
    requests,
    p50Ms: round(percentile(times, 50)),
    p95Ms: round(percentile(times, 95)),
    maxMs: round(times.at(-1)!),
  };
}

const ACTIVE = 100;
const idOf = (d: number) => `dev-${String(d).padStart(5, "0")}`;

/**
 * Fleet health over 10,000 devices: what scoring the whole fleet costs
 * (REFEED_HEALTH_REFRESH_MS=0 scores it for every request), and what a
 * request costs from the fleet view while devices keep sending news, with how
 * long that news takes to show.
 */
export async function benchHealth(options: { quick: boolean; devices?: number }) {
  const devices = options.devices ?? 10_000;
  const days = options.quick ? 1 : 7;
  const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-bench-health-"));
  const log = pino({ level: "warn" });
  const influxd = await startInfluxd({ dataDir: path.join(dir, "influx"), log });
  let stop: (() => Promise<unknown>) | undefined;
  try {
    await fetch(`${influxd.url}/query`, {
      method: "POST",
      body: new URLSearchParams({ q: influxql`CREATE DATABASE ${ident(DB)}`.text }),
    });
    const tokens = Array.from({ length: ACTIVE }, (_, d) => generateOwnedToken("rfd", idOf(d)));
    const hashes = await Promise.all(tokens.map((t) => hashToken(t)));
    const unused = await hashToken("never-used");
    const writeStarted = performance.now();
    const points = await writeFleet(
      influxd.url,
      fleetLines(devices, days, Date.now(), (d) => hashes[d] ?? unused),
    );
    const writeSeconds = (performance.now() - writeStarted) / 1000;

    const start = async (env: Record<string, string>) => {
      const refeed = await startRefeed({
        influxUrl: influxd.url,
        db: DB,
        dataDir: path.join(dir, "refeed"),
        adminToken: ADMIN,
        env,
      });
      stop = () => refeed.stop();
      const key = (await (
        await fetch(`${refeed.http}/api/keys`, {
          method: "POST",
          headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
          body: JSON.stringify({ name: "bench", role: "support" }),
        })
      ).json()) as { token: string };
      const call = async <T>(url: string): Promise<T> => {
        const res = await fetch(`${refeed.http}${url}`, { headers: { authorization: `Bearer ${key.token}` } });
        const body = (await res.json()) as T;
        if (res.status !== 200) throw new Error(`${url}: ${res.status} ${JSON.stringify(body)}`);
        return body;
      };
      const get = (url: string, check?: (body: FleetPage) => void) => async () => {
        const body = await call<FleetPage>(url);
        check?.(body);
      };
      return { refeed, call, get };
    };
    const whole = (body: { total: number; devices: unknown[] }) => {
      if (body.total !== devices || body.devices.length !== 50)
        throw new Error(`fleet health answered ${body.total} devices, ${body.devices.length} rows`);
    };
    const n = options.quick ? 10 : 30;
    const rows: HealthBenchRow[] = [];

    // 1. Scoring the whole fleet: a dozen GROUP BY "device" aggregations, for every request.
    const cold = await start({ REFEED_HEALTH_REFRESH_MS: "0" });
    await cold.get("/api/fleet/health")();
    rows.push(
      await measure(
        `whole fleet scored for each request (REFEED_HEALTH_REFRESH_MS=0)`,
        options.quick ? 2 : 5,
        1,
        cold.get("/api/fleet/health", whole),
      ),
    );
    await stop!();

    // 2. The fleet view, as deployed: scored once, then the devices with news every 2 s.
    const warm = await start({});
    await warm.get("/api/fleet/health", whole)();
    let sending = true;
    let sent = 0;
    const ingest = (d: number, channel: string, body: unknown) =>
      fetch(`${warm.refeed.http}/api/ingest/${channel}`, {
        method: "POST",
        headers: { authorization: `Bearer ${tokens[d]}` },
        body: JSON.stringify(body),
      }).then(async (res) => {
        if (res.status !== 200) throw new Error(`ingest: ${res.status} ${await res.text()}`);
        sent += 1;
      });
    // News: the active devices send telemetry and feedback, a pair of records every 40 ms after the previous pair was acknowledged.
    const news = (async () => {
      const random = seeded(7);
      while (sending) {
        const d = Math.floor(random() * ACTIVE);
        await Promise.all([
          ingest(d, "telemetry", { metrics: { latency_ms: Math.round(random() * 2000), errors: 0, temp: 21 } }),
          ingest(d, "feedback", { subject: `cust-${String(d).padStart(5, "0")}`, rating: random() < 0.5 ? 1 : 5 }),
        ]);
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    try {
      rows.push(
        await measure(
          `from the fleet view, 1 agent, while ${ACTIVE} devices send news`,
          n,
          1,
          warm.get("/api/fleet/health", whole),
        ),
      );
      rows.push(
        await measure(
          `from the fleet view, 4 agents at once, while devices send news`,
          n * 2,
          4,
          warm.get("/api/fleet/health", whole),
        ),
      );
      const some = Math.floor(devices * 0.4242);
      rows.push(
        await measure(
          "GET /api/fleet/health?q=<customer id>&sort=-score",
          n,
          1,
          warm.get(`/api/fleet/health?q=cust-${String(some).padStart(5, "0")}&sort=-score`),
        ),
      );
      rows.push(await measure("GET /api/devices/{id}/health", n, 1, warm.get(`/api/devices/${idOf(some)}/health`)));
      rows.push(
        await measure("GET /api/devices/{id}/timeline (24 h)", n, 1, warm.get(`/api/devices/${idOf(some)}/timeline`)),
      );
      // Freshness: a complaint, acknowledged, until the device's fleet row shows it.
      const fresh: number[] = [];
      for (let i = 0; i < (options.quick ? 3 : 5); i += 1) {
        const d = ACTIVE - 1 - i;
        const text = `Terrible, it failed again (${i}).`;
        const sentAt = performance.now();
        await ingest(d, "feedback", { subject: `cust-${String(d).padStart(5, "0")}`, rating: 1, text });
        for (;;) {
          const page = await warm.call<FleetPage>(`/api/fleet/health?q=${idOf(d)}`);
          if (page.devices[0]?.feedback.latestNegative?.text === text) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        fresh.push(performance.now() - sentAt);
      }
      fresh.sort((a, b) => a - b);
      return {
        rows,
        devices,
        points,
        days,
        writeSeconds,
        sent,
        freshness: { p50Ms: Math.round(percentile(fresh, 50)), maxMs: Math.round(fresh.at(-1)!) },
      };
    } finally {
      sending = false;
      await news;
    }
  } finally {
    await stop?.();
    await influxd.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The experience-health section of the benchmark report. */
export async function healthReport(options: { quick: boolean }): Promise<string> {
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  const r = await benchHealth(options);
  const table = [
    "| fleet health | requests | p50 ms | p95 ms | max ms |",
    "|---|---|---|---|---|",
    ...r.rows.map((row) => `| ${row.call} | ${row.requests} | ${row.p50Ms} | ${row.p95Ms} | ${row.maxMs} |`),
  ].join("\n");
  // not InfluxQL: the report's prose names the queries it measured.
  return `## Experience health (\`bench/health.ts\`)

${r.devices.toLocaleString("en")} devices with ${r.days} day${r.days === 1 ? "" : "s"} of history in the platform's schema (${(r.points / 1e6).toFixed(2)} M points:
telemetry every hour, two sessions a day, feedback, a suggestion each, presence), written straight
to a private influxd (${Math.round(r.points / r.writeSeconds).toLocaleString("en")} points/s); Refeed runs as its own process. Scoring the
whole fleet is thirteen InfluxQL aggregations GROUP BY "device" over the 7-day window, then scoring
and sorting in Node: the first row, what the fleet view costs at start and every 5 minutes. As
deployed, the view is scored once and then, every 2 s, only the devices with news, with the same
queries filtered to them; requests are answered from it while ${ACTIVE} devices post telemetry and
feedback over HTTP (${r.sent} records during the run). A complaint shows in its device's fleet row
${(r.freshness.p50Ms / 1000).toFixed(1)} s after it was acknowledged (median; at most ${(r.freshness.maxMs / 1000).toFixed(1)} s). Load average at the start
of this section: ${load} (two cores, shared with other work: the numbers move with it).

${table}
`;
}

// `node --import tsx bench/health.ts [--quick]`: only this section.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.stdout.write(await healthReport({ quick: process.argv.includes("--quick") }));
}
