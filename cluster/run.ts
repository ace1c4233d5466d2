import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import type { Logger } from "pino";
import { generateToken } from "../auth/tokens.ts";
import { CLOCK_SLOTS } from "../coordination/clock-slot.ts";
import { ConfigError, loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { findExecutable, freePort, InfluxdMissingError, startInfluxd, type ManagedInfluxd } from "../store/influxd.ts";
import { MissingBinaryError, requireBinary } from "./binaries.ts";
import type { Supervised } from "./child.ts";
import { haproxyConfig, startHaproxy } from "./haproxy.ts";
import { startNode, type NodeProcess } from "./node-process.ts";
import { startRedisServer, type ManagedRedis } from "./redis-server.ts";

export const clusterUsage = `usage: refeed cluster [--nodes N|auto] [--data-dir DIR]

Runs a cluster on this machine: a redis-server, an influxd (unless REFEED_INFLUX_URL is set),
N nodes (refeed start, each on its own loopback ports and data dir) and haproxy in front of them
on REFEED_MQTT_PORT (1883) and REFEED_HTTP_PORT (8080); 0 picks free ports. Ctrl-C stops it all.

options:
  --nodes N        how many nodes (1-16, default 3); auto: one per core of this machine
  --data-dir DIR   where redis, influxd and each node keep their data (default ./data/cluster)

environment: the REFEED_* settings of refeed start, passed to every node; REFEED_HAPROXY_PATH and
REFEED_REDIS_SERVER_PATH name the binaries (default: haproxy and redis-server on PATH, /usr/sbin, /usr/bin)
`;

type Env = Record<string, string | undefined>;

/** A problem to tell the operator, with the exit code (2: wrong usage or configuration). */
class UsageError extends Error {}

/**
 * `refeed cluster`: 0 after a requested stop, 1 when it could not start, 2 for bad flags or settings, 3 for a missing binary.
 * The logger comes from the caller (the CLI passes platform/log.ts's): cluster/ is imported by the platform's
 * parts (jobs, clock slots), so it must not import platform/ back.
 */
export async function clusterCommand(
  argv: string[],
  createLogger: (level: Config["logLevel"]) => Logger,
  env: Env = process.env,
): Promise<number> {
  let options;
  try {
    options = parseOptions(argv, env);
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      process.stderr.write(`refeed cluster: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (options === "help") {
    process.stdout.write(clusterUsage);
    return 0;
  }
  // The engines' loggers name their own part; the cluster's lines say part "cluster".
  const root = createLogger(options.config.logLevel);
  const log = root.child({ part: "cluster" });
  const stopRequested = signalled();
  let cluster: RunningCluster;
  try {
    cluster = await startCluster(options, root, log);
  } catch (err) {
    if (err instanceof MissingBinaryError || err instanceof InfluxdMissingError) {
      process.stderr.write(`refeed cluster: ${err.message}\n`);
      return 3;
    }
    log.fatal({ err: (err as Error).message }, "refeed cluster failed to start");
    process.stderr.write(`refeed cluster: ${(err as Error).message}\n`);
    return 1;
  }
  const reason = await Promise.race([stopRequested, cluster.failed]);
  log.info({ reason }, "stopping the cluster: haproxy, nodes, influxd, redis-server");
  await cluster.stop();
  log.info("refeed cluster stopped");
  return reason === "SIGINT" || reason === "SIGTERM" ? 0 : 1;
}

interface ClusterOptions {
  nodes: number;
  dataDir: string;
  config: Config;
  env: Env;
  adminToken: string | undefined;
}

/** `--nodes`: a count, or `auto` for one node per core (a node is one event loop: one core's worth of work). */
export function nodeCount(value: string, cores: number): number | undefined {
  const nodes = value === "auto" ? Math.min(MAX_NODES, Math.max(1, cores)) : Number(value);
  return Number.isInteger(nodes) && nodes >= 1 && nodes <= MAX_NODES ? nodes : undefined;
}
// Each node leases one of the clock slots that keep two nodes' timestamps apart.
const MAX_NODES = CLOCK_SLOTS;

function parseOptions(argv: string[], env: Env): ClusterOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { nodes: { type: "string" }, "data-dir": { type: "string" }, help: { type: "boolean", short: "h" } },
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${clusterUsage}`);
  }
  if (parsed.values.help) return "help";
  const nodes = nodeCount(parsed.values.nodes ?? "3", os.availableParallelism());
  if (nodes === undefined)
    throw new UsageError(`--nodes: expected a whole number from 1 to 16, or auto (got '${parsed.values.nodes}')`);
  // The cluster makes its own Redis and node ids; the rest of the settings are the nodes', checked once here.
  const { REFEED_REDIS_URL: _redis, REFEED_NODE_ID: _node, ...rest } = env;
  const config = loadConfig(rest);
  return {
    nodes,
    dataDir: path.resolve(parsed.values["data-dir"] ?? "data/cluster"),
    config,
    env: rest,
    adminToken: config.adminToken,
  };
}

interface RunningCluster {
  /** Resolves with what ended the cluster when it cannot go on (haproxy or every node gone). */
  failed: Promise<string>;
  stop(): Promise<void>;
}

async function startCluster(options: ClusterOptions, root: Logger, log: Logger): Promise<RunningCluster> {
  const { config, env } = options;
  // Every binary is looked for before anything starts, so a missing one leaves nothing behind.
  const haproxyBin = await requireBinary(env.REFEED_HAPROXY_PATH ?? "haproxy", "haproxy", "REFEED_HAPROXY_PATH");
  const redisBin = await requireBinary(
    env.REFEED_REDIS_SERVER_PATH ?? "redis-server",
    "redis-server",
    "REFEED_REDIS_SERVER_PATH",
  );
  if (!config.influx.url && !(await findExecutable(config.influx.influxdPath)))
    throw new InfluxdMissingError(config.influx.influxdPath);

  let fail: (reason: string) => void = () => undefined;
  const failed = new Promise<string>((resolve) => (fail = resolve));
  let stopping = false;
  let haproxy: Supervised | undefined;
  const nodes: NodeProcess[] = [];
  let influxd: ManagedInfluxd | undefined;
  let redis: ManagedRedis | undefined;
  const stop = async () => {
    stopping = true;
    if (haproxy) await haproxy.stop(5000).then(() => log.info("haproxy stopped"));
    // Each node flushes what it acknowledged to InfluxDB and hands its last changes to Redis, so both outlive it.
    await Promise.all(nodes.map((n) => n.stop()));
    if (nodes.length > 0) log.info({ nodes: nodes.map((n) => n.id) }, "nodes stopped");
    await influxd?.close();
    if (redis) await redis.close().then(() => log.info("redis-server stopped"));
  };

  try {
    await mkdir(options.dataDir, { recursive: true });
    redis = await startRedisServer({
      dataDir: path.join(options.dataDir, "redis"),
      log: root,
      redisServerPath: redisBin,
    });
    influxd = config.influx.url
      ? undefined
      : await startInfluxd({ dataDir: options.dataDir, binary: config.influx.influxdPath, log: root });
    const influxUrl = config.influx.url ?? influxd!.url;
    const adminToken = options.adminToken ?? generateToken("rfa");
    if (!options.adminToken) process.stderr.write(`\nRefeed admin token (shown once, keep it safe): ${adminToken}\n\n`);

    const alive = new Set<string>();
    // Settled, not all: a node that fails must not leave the others starting unwatched.
    const results = await Promise.allSettled(
      Array.from({ length: options.nodes }, (_, i) => {
        const id = `node-${i + 1}`;
        return startNode({
          id,
          env: nodeEnv(env, {
            REFEED_REDIS_URL: redis!.url,
            REFEED_NODE_ID: id,
            REFEED_ADMIN_TOKEN: adminToken,
            REFEED_DATA_DIR: path.join(options.dataDir, id),
            REFEED_INFLUX_URL: influxUrl,
            ...(config.rulesDir ? { REFEED_RULES_DIR: path.resolve(config.rulesDir) } : {}),
          }),
          out: (line) => void process.stdout.write(`${line}\n`),
          err: (line) => void process.stderr.write(`${line}\n`),
          onExit(code, signal) {
            // Before "refeed listening" its exit is a failed start, reported as such.
            if (!alive.delete(id)) return;
            log.error(
              { node: id, code, signal, nodesLeft: [...alive] },
              alive.size > 0
                ? `node ${id} exited unexpectedly (${code ?? signal}); haproxy takes it out, the other nodes keep serving`
                : `node ${id} exited unexpectedly (${code ?? signal}); no node is left`,
            );
            if (alive.size === 0 && !stopping) fail(`every node exited`);
          },
        }).then((node) => (nodes.push(node), alive.add(id), node));
      }),
    );
    const refused = results.find((r) => r.status === "rejected");
    if (refused) throw refused.reason;
    const started = results.map((r) => (r as PromiseFulfilledResult<NodeProcess>).value);

    const front = {
      mqtt: { host: config.mqtt.host, port: config.mqtt.port || (await freePort()) },
      http: { host: config.http.host, port: config.http.port || (await freePort()) },
    };
    const configFile = path.join(options.dataDir, "haproxy.cfg");
    await writeFile(
      configFile,
      haproxyConfig({
        ...front,
        nodes: started.map((n) => ({ id: n.id, host: "127.0.0.1", mqttPort: n.mqttPort, httpPort: n.httpPort })),
        maxKeepaliveSeconds: config.mqtt.limits.maxKeepaliveSeconds,
        httpKeepAliveMs: config.http.keepAliveTimeoutMs,
      }),
    );
    haproxy = await startHaproxy({
      binary: haproxyBin,
      configFile,
      front: [front.mqtt, front.http],
      log: root,
      onExit(code, signal) {
        log.error({ code, signal }, `haproxy exited unexpectedly (${code ?? signal}); stopping the cluster`);
        fail("haproxy exited");
      },
    });

    announce(log, {
      mqtt: `mqtt://${shown(front.mqtt.host)}:${front.mqtt.port}`,
      http: `http://${shown(front.http.host)}:${front.http.port}`,
      ws: `ws://${shown(front.http.host)}:${front.http.port}/mqtt`,
      redis: redis.url,
      influx: withoutPassword(influxUrl),
      dataDir: options.dataDir,
      nodes: started.map((n) => ({ id: n.id, ...n.addresses, pid: n.pid })),
    });
    return { failed, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The node's environment: the cluster's settings, then what makes it this node. */
function nodeEnv(env: Env, own: Record<string, string>): NodeJS.ProcessEnv {
  return {
    ...env,
    ...own,
    // Loopback ports of its own; only haproxy is reached from outside.
    REFEED_MQTT_HOST: "127.0.0.1",
    REFEED_MQTT_PORT: "0",
    REFEED_HTTP_HOST: "127.0.0.1",
    REFEED_HTTP_PORT: "0",
    REFEED_MQTT_TLS_PORT: "0",
    // haproxy (on this machine) names each client: a PROXY header on MQTT, X-Forwarded-For on HTTP, so the
    // per-address budgets and the logs see devices, not haproxy.
    REFEED_MQTT_TRUSTED_PROXIES: "127.0.0.1",
    REFEED_HTTP_TRUSTED_PROXIES: "127.0.0.1",
  };
}

interface Addresses {
  mqtt: string;
  http: string;
  ws: string;
  redis: string;
  influx: string;
  dataDir: string;
  nodes: Array<{ id: string; mqtt: string; http: string; ws: string; pid: number | undefined }>;
}

/** One log line with every address (as `refeed start` logs its own), and the same for a person on stderr. */
function announce(log: Logger, a: Addresses): void {
  log.info(a, "refeed cluster listening");
  const rows = [
    ["MQTT", a.mqtt],
    ["HTTP", a.http],
    ["WebSocket", a.ws],
    ...a.nodes.map((n) => [n.id, `${n.mqtt}  ${n.http}  ${n.ws}`]),
    ["Redis", a.redis],
    ["InfluxDB", a.influx],
    ["data", a.dataDir],
  ];
  const width = Math.max(...rows.map(([k]) => k!.length));
  process.stderr.write(
    `\nRefeed cluster of ${a.nodes.length} nodes behind haproxy (Ctrl-C stops it):\n` +
      rows.map(([k, v]) => `  ${k!.padEnd(width)}  ${v}`).join("\n") +
      "\n\n",
  );
}

function shown(host: string): string {
  return host === "0.0.0.0" || host === "::" ? "localhost" : host;
}

function withoutPassword(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString().replace(/\/$/, "");
}

/** Resolves with the first SIGINT or SIGTERM; later ones are noted, the stop under way goes on. */
function signalled(): Promise<string> {
  return new Promise((resolve) => {
    let seen = false;
    const on = (signal: NodeJS.Signals) => {
      if (seen) process.stderr.write(`refeed cluster: ${signal} again; still stopping\n`);
      seen = true;
      resolve(signal);
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
}
