import { mkdtemp, mkdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import mqtt, { type MqttClient, type IClientOptions } from "mqtt";
import { pino } from "pino";
import { configSchema, type Config, type MqttConfig, type MqttLimits } from "../../config/schema.ts";
import { startPlatform, type Platform } from "../../platform/platform.ts";
import type { Exchange } from "./contract.ts";
import { checkAnswersOf } from "./contract-every-answer.ts";
import { freshDb, influxUrl } from "./influx.ts";
import { waitFor } from "./wait.ts";

export const ADMIN_TOKEN = "test-admin-token-0123456789";

export interface TestPlatform {
  platform: Platform;
  config: Config;
  http: string;
  mqttUrl: string;
  wsUrl: string;
  db: string;
  dataDir: string;
  rulesDir: string;
  /** The platform's log lines (info and above), when started with `logs: true`. */
  logs: Array<Record<string, unknown>>;
  /** Every answer `api()` received, for test/api/contract.test.ts to check against the served OpenAPI document. */
  exchanges: Exchange[];
  /** Stops the platform and starts it again on the same database, data and rules. */
  restart(): Promise<void>;
  /** The two halves of restart(), for a test that does something while the platform is down. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export interface TestPlatformOptions {
  /** Keep the platform's log lines in `logs`, to assert what was logged. */
  logs?: boolean;
  limits?: Partial<MqttLimits>;
  tls?: Partial<MqttConfig["tls"]>;
}

/** Runs the whole platform in-process, on free ports and its own database, as a user would configure it. */
export async function startTestPlatform(
  overrides: Partial<Config> = {},
  options: TestPlatformOptions = {},
): Promise<TestPlatform> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "refeed-test-"));
  const rulesDir = path.join(dataDir, "rules");
  await mkdir(rulesDir);
  const config = configSchema.parse({
    mqtt: { port: 0, host: "127.0.0.1", limits: options.limits ?? {}, tls: { port: 0, ...options.tls } },
    http: { port: 0, host: "127.0.0.1" },
    influx: { url: influxUrl(), db: freshDb() },
    dataDir,
    rulesDir,
    adminToken: ADMIN_TOKEN,
    logLevel: process.env.REFEED_TEST_LOG ?? "silent",
    ingest: { batchSize: 1000, flushMs: 20 },
    ...overrides,
  });
  const logs: Array<Record<string, unknown>> = [];
  const log = options.logs ? capturingLogger(config.logLevel, logs) : pino({ level: config.logLevel });
  let platform = await startPlatform(config, { log });
  checkAnswersOf(platform.addresses.http);
  const handle: TestPlatform = {
    platform,
    config,
    http: platform.addresses.http,
    mqttUrl: platform.addresses.mqtt,
    wsUrl: platform.addresses.ws,
    db: config.influx.db,
    dataDir,
    rulesDir,
    logs,
    exchanges: [],
    async restart() {
      await handle.stop();
      await handle.start();
    },
    async stop() {
      await platform.close();
    },
    async start() {
      platform = await startPlatform(config, { log });
      checkAnswersOf(platform.addresses.http);
      Object.assign(handle, {
        platform,
        http: platform.addresses.http,
        mqttUrl: platform.addresses.mqtt,
        wsUrl: platform.addresses.ws,
      });
    },
    async close() {
      await platform.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  return handle;
}

export async function api(
  t: TestPlatform,
  method: string,
  url: string,
  body?: unknown,
  token: string | null = ADMIN_TOKEN,
) {
  const res = await fetch(`${t.http}${url}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const parsed = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
  t.exchanges.push({
    method,
    url,
    status: res.status,
    contentType: res.headers.get("content-type") ?? "",
    body: parsed ?? text,
  });
  return { status: res.status, body: parsed ?? {} };
}

export async function provision(
  t: TestPlatform,
  input: { id?: string; subject?: string; kind?: string } = {},
): Promise<{ id: string; token: string }> {
  const res = await api(t, "POST", "/api/devices", input);
  if (res.status !== 201) throw new Error(`provision failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as { id: string; token: string };
}

/** Connects as a device; rejects with the broker's refusal. */
export function connectDevice(
  url: string,
  id: string,
  token: string,
  options: IClientOptions = {},
): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, {
      clientId: id,
      username: id,
      password: token,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ...options,
    });
    client.once("connect", () => resolve(client));
    client.once("error", (err) => {
      client.end(true);
      reject(err);
    });
    // A broker that drops the connection without CONNACK (a limit) answers with a close only.
    client.once("close", () => reject(new Error("connection closed before CONNACK")));
  });
}

/** Collects messages per topic so tests can wait for what they expect. */
export function collect(client: MqttClient): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  client.on("message", (topic, payload) => {
    const list = seen.get(topic) ?? [];
    list.push(payload.toString());
    seen.set(topic, list);
  });
  return seen;
}

/** A pino logger at info (or lower, if REFEED_TEST_LOG asks) that keeps every line and shows those the test log level wants. */
function capturingLogger(level: Config["logLevel"], sink: Array<Record<string, unknown>>) {
  const levels = pino.levels.values;
  const show = levels[level] ?? Infinity;
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        const parsed = JSON.parse(line) as Record<string, unknown>;
        sink.push(parsed);
        if ((parsed.level as number) >= show) process.stdout.write(`${line}\n`);
      }
      done();
    },
  });
  return pino({ level: (levels[level] ?? Infinity) < levels.info! ? level : "info" }, destination);
}

/** Waits for a log line that matches, and returns it. */
export function logLine(
  t: TestPlatform,
  match: (line: Record<string, unknown>) => boolean,
  what: string,
): Promise<Record<string, unknown>> {
  return waitFor(() => t.logs.find(match), what);
}

/**
 * Waits until ingest has written to InfluxDB everything it acknowledged so far
 * (nothing pending, nothing spooled), as /metrics tells. A PUBACK or an HTTP
 * ingest answer means the records are durable on disk; InfluxDB has them
 * moments later. The barrier for asserting what InfluxDB does not hold.
 */
export async function ingestCaughtUp(t: TestPlatform): Promise<void> {
  await waitFor(async () => {
    const text = await (await fetch(`${t.http}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
    const state = {
      pending: value("refeed_ingest_pending_points"),
      spooled: value("refeed_ingest_spool_points"),
      spooling: value("refeed_ingest_spooling"),
    };
    if (state.pending === 0 && state.spooled === 0 && state.spooling === 0) return true;
    throw new Error(JSON.stringify(state));
  }, "ingest to have written what it acknowledged to InfluxDB");
}
