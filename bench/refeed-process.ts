import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { track } from "./children.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface RunningRefeed {
  http: string;
  mqtt: string;
  pid: number;
  /** The inspector's WebSocket URL, when started with `inspect`. */
  inspector: string | undefined;
  /** A sample value from GET /metrics (first series with that name and labels). */
  metric(series: string): Promise<number>;
  stop(): Promise<number | null>;
}

/** Runs `refeed start` as a separate process, as it is deployed, against a given InfluxDB. */
export async function startRefeed(options: { influxUrl: string; db: string; dataDir: string; adminToken: string; rulesDir?: string; env?: Record<string, string>; nodeArgs?: string[]; inspect?: boolean }): Promise<RunningRefeed> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("REFEED_")));
  const child: ChildProcess = spawn(process.execPath, [...(options.nodeArgs ?? []), ...(options.inspect ? ["--inspect=127.0.0.1:0"] : []), path.join(ROOT, "bin/refeed.js"), "start"], {
    env: {
      ...clean,
      REFEED_INFLUX_URL: options.influxUrl,
      REFEED_INFLUX_DB: options.db,
      REFEED_DATA_DIR: options.dataDir,
      REFEED_MQTT_PORT: "0",
      REFEED_HTTP_PORT: "0",
      REFEED_MQTT_HOST: "127.0.0.1",
      REFEED_HTTP_HOST: "127.0.0.1",
      REFEED_ADMIN_TOKEN: options.adminToken,
      REFEED_LOG_LEVEL: "info",
      ...(options.rulesDir ? { REFEED_RULES_DIR: options.rulesDir } : {}),
      // Load from few connections: the per-device publish rate limit would measure itself, not ingest.
      REFEED_MQTT_PUBLISH_RATE: "1000000",
      REFEED_MQTT_PUBLISH_BURST: "1000000",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  track(child);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const listening = await new Promise<{ http: string; mqtt: string }>((resolve, reject) => {
    let rest = "";
    let found = false;
    child.stdout!.on("data", (chunk: Buffer) => {
      // Once listening, the log is only drained (read and dropped), so that reading it costs the bench nothing.
      if (found) return;
      const lines = (rest + chunk.toString()).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) {
        try {
          const entry = JSON.parse(line) as { msg?: string; http?: string; mqtt?: string };
          if (entry.msg === "refeed listening") {
            found = true;
            resolve({ http: entry.http!, mqtt: entry.mqtt! });
          }
        } catch {
          // not a log line
        }
      }
    });
    void exited.then((code) => reject(new Error(`refeed exited (${code}) before listening: ${stderr}`)));
  });
  return {
    ...listening,
    pid: child.pid!,
    inspector: /Debugger listening on (ws:\/\/\S+)/.exec(stderr)?.[1],
    async metric(series) {
      const text = await (await fetch(`${listening.http}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return line ? Number(line.slice(series.length + 1)) : NaN;
    },
    async stop() {
      child.kill("SIGTERM");
      return exited;
    },
  };
}
