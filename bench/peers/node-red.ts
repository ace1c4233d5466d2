import { execFile, spawn } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { freePort } from "../../store/influxd.ts";
import { track } from "../children.ts";

/** Pinned, so that every run measures the same peer. */
export const NODE_RED = { "node-red": "4.1.15", "node-red-contrib-influxdb": "0.7.0" } as const;

/**
 * The peers live outside the project's dependencies, in a cache directory
 * (`REFEED_BENCH_CACHE`, default ~/.cache/refeed-bench), installed from the
 * npm registry on first use.
 */
export function peerCache(): string {
  return process.env.REFEED_BENCH_CACHE ?? path.join(os.homedir(), ".cache", "refeed-bench");
}

/** Installs Node-RED and node-red-contrib-influxdb into the cache unless the pinned versions are there. */
export async function ensureNodeRed(say: (text: string) => void): Promise<string> {
  const dir = path.join(peerCache(), "node-red");
  const installed = async (name: string) => {
    try {
      return (
        JSON.parse(await readFile(path.join(dir, "node_modules", name, "package.json"), "utf8")) as { version: string }
      ).version;
    } catch {
      return undefined;
    }
  };
  const missing = [];
  for (const [name, version] of Object.entries(NODE_RED))
    if ((await installed(name)) !== version) missing.push(`${name}@${version}`);
  if (missing.length > 0) {
    say(`installing ${missing.join(", ")} from the npm registry into ${dir}`);
    await mkdir(dir, { recursive: true });
    await writeFile(
      path.join(dir, "package.json"),
      `${JSON.stringify({ name: "refeed-bench-node-red", private: true, dependencies: NODE_RED }, null, 2)}\n`,
    );
    const npm = process.platform === "win32" ? "npm.cmd" : "npm";
    await promisify(execFile)(npm, ["install", "--no-fund", "--no-audit", "--omit=dev", "--loglevel=error"], {
      cwd: dir,
      maxBuffer: 64 * 1024 * 1024,
    });
  }
  return dir;
}

export interface MqttBrokerSettings {
  port: number;
  username: string;
  password: string;
}

type FlowNode = Record<string, unknown> & { id: string; type: string };

/** Node-RED tells flow nodes from config nodes by their position on the canvas. */
function placed(nodes: FlowNode[]): FlowNode[] {
  return nodes.map((n, i) => (n.z === undefined ? n : { ...n, x: 150 + 180 * i, y: 100 }));
}

const tab = { id: "bench", type: "tab", label: "bench", disabled: false, info: "" };
const brokerNode = (mqtt: MqttBrokerSettings): FlowNode => ({
  id: "broker",
  type: "mqtt-broker",
  name: "mosquitto",
  broker: "127.0.0.1",
  port: String(mqtt.port),
  clientid: "node-red-bench",
  autoConnect: true,
  usetls: false,
  protocolVersion: "4",
  keepalive: "60",
  cleansession: true,
  autoUnsubscribe: true,
  birthTopic: "",
  closeTopic: "",
  willTopic: "",
  userProps: "",
  sessionExpiry: "",
});
const mqttIn = (wires: string): FlowNode => ({
  id: "in",
  type: "mqtt in",
  z: tab.id,
  name: "telemetry",
  topic: "devices/+/telemetry",
  qos: "1",
  datatype: "utf8",
  broker: "broker",
  nl: false,
  rap: true,
  rh: 0,
  inputs: 0,
  wires: [[wires]],
});
const json = (wires: string): FlowNode => ({
  id: "json",
  type: "json",
  z: tab.id,
  name: "",
  property: "payload",
  action: "obj",
  pretty: false,
  wires: [[wires]],
});
const fn = (id: string, func: string, wires: string[]): FlowNode => ({
  id,
  type: "function",
  z: tab.id,
  name: id,
  func,
  outputs: 1,
  timeout: 0,
  noerr: 0,
  initialize: "",
  finalize: "",
  libs: [],
  wires: [wires],
});

/**
 * A record's point with a unique microsecond timestamp, as Refeed stamps
 * points without a device time: InfluxDB would otherwise give every point of
 * one write the same server time, and points of one device would overwrite
 * each other.
 */
const TO_POINTS = `
const device = msg.topic.split("/")[1];
const records = Array.isArray(msg.payload) ? msg.payload : [msg.payload];
let last = context.get("last") || 0;
const points = [];
for (const record of records) {
  let us = Date.now() * 1000;
  if (us <= last) us = last + 1;
  last = us;
  points.push({ measurement: "telemetry", tags: { device }, fields: record.metrics, timestamp: us });
}
context.set("last", last);
msg.payload = ONE ? points[0] : points;
return msg;`;

/**
 * The ingest flow a Node-RED user builds: mqtt in -> json -> function (records
 * to points) -> influxdb batch (node-red-contrib-influxdb, InfluxDB 1.x API).
 * A publish of many records is one write. Single-record publishes go through a
 * join node first (5,000 points or 200 ms, Refeed's batch settings), since a
 * write per message would measure InfluxDB's request overhead.
 */
export function ingestFlow(
  mqtt: MqttBrokerSettings,
  influx: { port: number; db: string },
  options: { join: boolean },
): FlowNode[] {
  const nodes: FlowNode[] = [
    tab,
    brokerNode(mqtt),
    {
      id: "influx",
      type: "influxdb",
      hostname: "127.0.0.1",
      port: String(influx.port),
      protocol: "http",
      database: influx.db,
      name: "influxdb",
      usetls: false,
      tls: "",
      influxdbVersion: "1.x",
      url: "",
      timeout: "",
      rejectUnauthorized: true,
    },
    mqttIn("json"),
    json("points"),
    fn("points", TO_POINTS.replace("ONE", String(options.join)), [options.join ? "join" : "write"]),
    {
      id: "write",
      type: "influxdb batch",
      z: tab.id,
      influxdb: "influx",
      precision: "u",
      retentionPolicy: "",
      name: "write",
      database: "",
      precisionV18FluxV20: "us",
      retentionPolicyV18Flux: "",
      org: "",
      bucket: "",
      wires: [],
    },
  ];
  if (options.join) {
    nodes.push({
      id: "join",
      type: "join",
      z: tab.id,
      name: "batch",
      mode: "custom",
      build: "array",
      property: "payload",
      propertyType: "msg",
      key: "topic",
      joiner: "\\n",
      joinerType: "str",
      useparts: false,
      accumulate: false,
      timeout: "0.2",
      count: "5000",
      reduceRight: false,
      reduceExp: "",
      reduceInit: "",
      reduceInitType: "",
      reduceFixup: "",
      wires: [["write"]],
    });
  }
  return placed(nodes);
}

/**
 * Refeed's benchmark rule as a flow: mqtt in -> json -> switch (temp > 30) ->
 * function (the action, with the message's stamps as its value) -> mqtt out
 * to the device's actions topic at QoS 1.
 */
export function thresholdFlow(mqtt: MqttBrokerSettings): FlowNode[] {
  return placed([
    tab,
    brokerNode(mqtt),
    mqttIn("json"),
    json("hot"),
    {
      id: "hot",
      type: "switch",
      z: tab.id,
      name: "temp > 30",
      property: "payload.metrics.temp",
      propertyType: "msg",
      rules: [{ t: "gt", v: "30", vt: "num" }],
      checkall: "true",
      repair: false,
      outputs: 1,
      wires: [["action"]],
    },
    fn(
      "action",
      `const device = msg.topic.split("/")[1];
const m = msg.payload.metrics;
const n = (context.get("n") || 0) + 1;
context.set("n", n);
msg.topic = "devices/" + device + "/actions";
msg.payload = JSON.stringify({ id: "act_" + n, rule: "bench-threshold", kind: "set", key: "bench.last", value: { r: m.r, w: m.w, seq: m.seq, t: m.t }, why: "msg.metrics.temp > 30 held with msg.metrics.temp = " + m.temp });
return msg;`,
      ["out"],
    ),
    {
      id: "out",
      type: "mqtt out",
      z: tab.id,
      name: "actions",
      topic: "",
      qos: "1",
      retain: "false",
      respTopic: "",
      contentType: "",
      userProps: "",
      correl: "",
      expiry: "",
      broker: "broker",
      wires: [],
    },
  ]);
}

let runs = 0;

export interface RunningNodeRed {
  pid: number;
  version: string;
  stop(): Promise<void>;
}

/**
 * Runs Node-RED with a generated settings file (no editor, no admin API, no
 * telemetry) and the given flow; resolves once the flows started and the MQTT
 * node is connected to the broker.
 */
export async function startNodeRed(options: {
  install: string;
  dir: string;
  flow: FlowNode[];
  mqtt: MqttBrokerSettings;
}): Promise<RunningNodeRed> {
  await mkdir(options.dir, { recursive: true });
  const name = `bench-${process.pid}-${(runs += 1)}`;
  const flowFile = path.join(options.dir, `${name}.json`);
  await writeFile(flowFile, JSON.stringify(options.flow, null, 2));
  // Node-RED reads credentials from <userDir>/<flow file name>_cred.json; credentialSecret: false keeps it plain JSON.
  const credentials = path.join(options.install, `${name}_cred.json`);
  await writeFile(
    credentials,
    JSON.stringify({ broker: { user: options.mqtt.username, password: options.mqtt.password } }),
    { mode: 0o600 },
  );
  const settings = path.join(options.dir, "settings.js");
  const port = await freePort();
  await writeFile(
    settings,
    `module.exports = ${JSON.stringify(
      {
        uiPort: port,
        uiHost: "127.0.0.1",
        userDir: options.install,
        flowFile,
        credentialSecret: false,
        httpAdminRoot: false,
        httpNodeRoot: false,
        disableEditor: true,
        logging: { console: { level: "info", metrics: false, audit: false } },
        diagnostics: { enabled: false, ui: false },
        runtimeState: { enabled: false, ui: false },
        telemetry: { enabled: false, updateNotification: false },
        externalModules: { autoInstall: false, palette: { allowInstall: false }, modules: { allowInstall: false } },
        functionExternalModules: false,
        editorTheme: { tours: false },
      },
      null,
      2,
    )};\n`,
  );
  const red = path.join(options.install, "node_modules", "node-red", "red.js");
  const version = (
    JSON.parse(await readFile(path.join(options.install, "node_modules", "node-red", "package.json"), "utf8")) as {
      version: string;
    }
  ).version;
  const child = spawn(process.execPath, [red, "--settings", settings, "--no-telemetry"], {
    cwd: options.dir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  track(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let output = "";
  let started = false;
  let connected = false;
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`Node-RED did not start within 60 s:\n${output.slice(-3000)}`)),
      60_000,
    );
    const scan = (chunk: Buffer) => {
      // Once running, the output is only drained.
      if (started && connected) return;
      output = (output + chunk.toString()).slice(-20_000);
      started ||= output.includes("Started flows");
      connected ||= output.includes("Connected to broker");
      if (/\[error\]|^Error: /m.test(output)) {
        clearTimeout(timer);
        reject(new Error(`Node-RED failed to start:\n${output.slice(-3000)}`));
      }
      if (started && connected) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", scan);
    child.stderr.on("data", scan);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`Node-RED exited before it was ready:\n${output.slice(-3000)}`));
    });
  });
  try {
    await ready;
  } catch (err) {
    if (child.exitCode === null) child.kill("SIGTERM");
    await exited;
    await rm(credentials, { force: true });
    throw err;
  }
  return {
    pid: child.pid!,
    version,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
      await rm(credentials, { force: true });
    },
  };
}
