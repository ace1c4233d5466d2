import net from "node:net";
import * as hdr from "hdr-histogram-js";
import { MqttClient } from "mqtt";
import {
  micros,
  type ClientSpec,
  type Command,
  type ConnectCommand,
  type Reply,
  type RunCommand,
  type RunStats,
} from "./protocol.ts";

/**
 * One load-generator process: a share of the generator's MQTT connections
 * (mqtt.js, TCP with TCP_NODELAY). It publishes open loop, on a schedule
 * fixed before the run starts, so a broker that stalls cannot slow the
 * sender down and hide the stall: every record carries its scheduled send
 * time, and latency is measured from it. Subscribers in this process measure
 * receive latency and check every stamp arrives once.
 */
const index = Number(process.env.BENCH_WORKER ?? 0);
const reply = (message: Reply) => process.send!(message);
const histogram = () =>
  hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });

interface Connection {
  spec: ClientSpec;
  client: MqttClient;
  outstanding: number;
  sent: number;
  acked: number;
  /** Per sending worker: one bit per sequence number of the current run. */
  seen: Map<number, Uint8Array>;
}

const connections: Connection[] = [];
const groupOf = (c: Connection) => c.spec.group ?? "default";
let publishers: Connection[] = [];

/** The current run's state; receivers keep counting until collect. */
let run:
  | (RunCommand & {
      ack: hdr.Histogram;
      receive: hdr.Histogram;
      lag: hdr.Histogram;
      cpu: NodeJS.CpuUsage;
      progress: NodeJS.Timeout;
    })
  | undefined;
let firstError: string | undefined;
let counters = { sent: 0, acked: 0, skipped: 0, errors: 0, received: 0, duplicates: 0, stale: 0 };

function open(command: ConnectCommand, spec: ClientSpec): Promise<Connection> {
  const url = new URL(command.url);
  return new Promise((resolve, reject) => {
    const client = new MqttClient(() => net.connect({ host: url.hostname, port: Number(url.port), noDelay: true }), {
      clientId: spec.clientId,
      username: spec.username,
      password: spec.password,
      protocolVersion: 4,
      clean: true,
      keepalive: command.keepaliveSeconds,
      reconnectPeriod: 0,
      connectTimeout: 60_000,
      resubscribe: false,
    });
    const conn: Connection = { spec, client, outstanding: 0, sent: 0, acked: 0, seen: new Map() };
    const fail = (err: Error) => {
      client.end(true);
      reject(err);
    };
    client.once("error", fail);
    client.once("connect", () => {
      client.off("error", fail);
      client.on("error", (err) => {
        counters.errors += 1;
        firstError ??= `${spec.clientId}: ${err.message}`;
      });
      client.on("close", () => {
        if (run) firstError ??= `${spec.clientId}: connection closed`;
      });
      client.on("message", (_topic, payload) => receive(conn, payload));
      const topics = spec.subscribe ?? [];
      if (topics.length === 0) return resolve(conn);
      client.subscribe(topics, { qos: command.subscribeQos }, (err, granted) => {
        if (err) return fail(err);
        const refused = granted?.find((g) => g.qos === 128);
        if (refused) return fail(new Error(`subscription to ${refused.topic} refused`));
        resolve(conn);
      });
    });
  });
}

async function connect(command: ConnectCommand) {
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  const lane = async () => {
    while (next < command.clients.length) {
      const spec = command.clients[next++]!;
      try {
        connections.push(await open(command, spec));
      } catch (err) {
        failed += 1;
        firstError ??= `${spec.clientId}: ${(err as Error).message}`;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, command.concurrency) }, lane));
  reply({ op: "connected", connected: connections.length, failed, firstError });
}

/** Finds a record's stamps: in a telemetry record's metrics, or in an action's value. */
function stampsOf(parsed: unknown): Array<Record<string, unknown>> {
  const records = Array.isArray(parsed) ? parsed : [parsed];
  const out: Array<Record<string, unknown>> = [];
  for (const record of records) {
    if (typeof record !== "object" || record === null) continue;
    const r = record as Record<string, unknown>;
    const stamp = (r.value ?? r.metrics ?? r) as Record<string, unknown>;
    if (typeof stamp === "object" && stamp !== null && typeof stamp.t === "number") out.push(stamp);
  }
  return out;
}

function receive(conn: Connection, payload: Buffer) {
  const now = micros();
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString("utf8"));
  } catch {
    return;
  }
  for (const stamp of stampsOf(parsed)) {
    if (!run || stamp.r !== run.runId) {
      counters.stale += 1;
      continue;
    }
    const w = Number(stamp.w);
    const seq = Number(stamp.seq);
    const size = run.senders[w];
    if (size === undefined || !(seq >= 0 && seq < size)) {
      counters.stale += 1;
      continue;
    }
    let bits = conn.seen.get(w);
    if (!bits) conn.seen.set(w, (bits = new Uint8Array(Math.ceil(size / 8))));
    const byte = seq >> 3;
    const bit = 1 << (seq & 7);
    if (bits[byte]! & bit) {
      counters.duplicates += 1;
      continue;
    }
    bits[byte]! |= bit;
    counters.received += 1;
    run.receive.recordValue(Math.max(1, now - Number(stamp.t)));
  }
}

function record(seq: number, command: RunCommand, t: number): string {
  const subject = command.subject === undefined ? "" : `"subject":${JSON.stringify(command.subject)},`;
  const stamps = command.stamps === "full" ? `"r":${command.runId},"w":${index},"seq":${seq},"t":${t}` : `"seq":${seq}`;
  return `{${subject}"metrics":{${stamps},"temp":${command.hot ? 31 : 21.5},"hum":${40 + (seq % 20)},"on":true}}`;
}

function payloadOf(first: number, command: RunCommand, t: number): string {
  if (command.records === 1) return record(first, command, t);
  const parts: string[] = [];
  for (let i = 0; i < command.records; i += 1) parts.push(record(first + i, command, t));
  return `[${parts.join(",")}]`;
}

function start(command: RunCommand) {
  for (const conn of connections) {
    conn.sent = 0;
    conn.acked = 0;
    conn.seen.clear();
  }
  counters = { sent: 0, acked: 0, skipped: 0, errors: 0, received: 0, duplicates: 0, stale: 0 };
  firstError = undefined;
  publishers = connections.filter((c) => c.spec.topic !== undefined && groupOf(c) === command.group);
  const progress = setInterval(
    () =>
      reply({
        op: "progress",
        runId: command.runId,
        sent: counters.sent,
        acked: counters.acked,
        received: counters.received,
      }),
    100,
  );
  run = { ...command, ack: histogram(), receive: histogram(), lag: histogram(), cpu: process.cpuUsage(), progress };
  const current = run;
  if (command.total === 0 || publishers.length === 0) {
    reply({ op: "sent", runId: command.runId, sent: 0, skipped: 0 });
    return;
  }
  const interval = 1e6 / command.rate;
  let n = 0;
  const tick = () => {
    if (run !== current) return;
    const now = micros();
    const due = Math.min(command.total, Math.floor((now - command.startAt) / interval) + 1);
    while (n < due) {
      const scheduled = Math.round(command.startAt + n * interval);
      const conn = publishers[n % publishers.length]!;
      const first = n * command.records;
      n += 1;
      if (command.qos === 1 && conn.outstanding >= command.maxOutstanding) {
        counters.skipped += command.records;
        continue;
      }
      current.lag.recordValue(Math.max(1, micros() - scheduled));
      conn.sent += command.records;
      counters.sent += command.records;
      if (command.qos === 0) {
        conn.client.publish(conn.spec.topic!, payloadOf(first, command, scheduled), { qos: 0 });
        continue;
      }
      conn.outstanding += 1;
      conn.client.publish(conn.spec.topic!, payloadOf(first, command, scheduled), { qos: 1 }, (err) => {
        conn.outstanding -= 1;
        if (run !== current) return;
        if (err) {
          counters.errors += 1;
          firstError ??= `${conn.spec.clientId}: publish failed: ${err.message}`;
          return;
        }
        conn.acked += command.records;
        counters.acked += command.records;
        current.ack.recordValue(Math.max(1, micros() - scheduled));
      });
    }
    if (n < command.total) setTimeout(tick, Math.max(0, (command.startAt + n * interval - micros()) / 1000));
    else reply({ op: "sent", runId: command.runId, sent: counters.sent, skipped: counters.skipped });
  };
  setTimeout(tick, Math.max(0, (command.startAt - micros()) / 1000));
}

function collect(runId: number) {
  if (!run || run.runId !== runId) {
    reply({ op: "error", message: `collect for run ${runId}, but the current run is ${run?.runId}` });
    return;
  }
  const current = run;
  clearInterval(current.progress);
  const cpu = process.cpuUsage(current.cpu);
  const stats: RunStats = {
    runId,
    ...counters,
    ack: hdr.encodeIntoCompressedBase64(current.ack),
    receive: hdr.encodeIntoCompressedBase64(current.receive),
    lag: hdr.encodeIntoCompressedBase64(current.lag),
    cpuMicros: cpu.user + cpu.system,
    ...(firstError ? { firstError } : {}),
    ...(current.perClient
      ? {
          perClient: Object.fromEntries(
            publishers.map((c) => [c.spec.username ?? c.spec.clientId, { sent: c.sent, acked: c.acked }]),
          ),
        }
      : {}),
  };
  // Late arrivals of this run count as stale from now on.
  run = undefined;
  for (const h of [current.ack, current.receive, current.lag]) h.destroy();
  reply({ op: "stats", ...stats });
}

async function close() {
  await Promise.all(connections.map((c) => c.client.endAsync(true).catch(() => undefined)));
  process.exit(0);
}

process.on("message", (command: Command) => {
  try {
    if (command.op === "connect")
      void connect(command).catch((err: Error) => reply({ op: "error", message: err.message }));
    else if (command.op === "run") start(command);
    else if (command.op === "collect") collect(command.runId);
    else if (command.op === "close") void close();
  } catch (err) {
    reply({ op: "error", message: (err as Error).stack ?? String(err) });
  }
});
process.on("disconnect", () => process.exit(0));
reply({ op: "ready" });
