import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
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
  /** Where Refeed's log is copied. */
  logFile: string;
  /** Warnings and errors Refeed logged so far, counted by message (and reason). */
  warnings(): Promise<Record<string, number>>;
  /** A sample value from GET /metrics (first series with that name and labels). */
  metric(series: string): Promise<number>;
  stop(): Promise<number | null>;
}

/** Runs `refeed start` as a separate process, as it is deployed, against a given InfluxDB. */
export async function startRefeed(options: {
  influxUrl: string;
  db: string;
  dataDir: string;
  adminToken: string;
  rulesDir?: string;
  env?: Record<string, string>;
  nodeArgs?: string[];
  inspect?: boolean;
}): Promise<RunningRefeed> {
  // Refeed's own log (info, as deployed) goes to a file in its data dir: a failing run can be read afterwards.
  await mkdir(options.dataDir, { recursive: true });
  const logFile = path.join(options.dataDir, "refeed.log");
  const logStream = createWriteStream(logFile);
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("REFEED_")));
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...(options.nodeArgs ?? []),
      ...(options.inspect ? ["--inspect=127.0.0.1:0"] : []),
      path.join(ROOT, "bin/refeed.js"),
      "start",
    ],
    {
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
    },
  );
  track(child);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let stderr = "";
  // What Refeed says outside its log (a crash's stack, V8's out-of-memory) goes to the same file.
  child.stderr!.on("data", (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
    logStream.write(c);
  });
  let stopping = false;
  void exited.then((code) => {
    if (!stopping)
      process.stderr.write(
        `bench: refeed (pid ${child.pid}) exited by itself (code ${code}) while the benchmark ran; its log: ${logFile}\n${stderr}\n`,
      );
  });
  const listening = await new Promise<{ http: string; mqtt: string }>((resolve, reject) => {
    let rest = "";
    let found = false;
    child.stdout!.on("data", (chunk: Buffer) => {
      logStream.write(chunk);
      // Once listening, the log is only copied to the file, not parsed.
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
    logFile,
    async warnings() {
      const text = await readFile(logFile, "utf8").catch(() => "");
      const counts = new Map<string, number>();
      for (const line of text.split("\n")) {
        if (!line.includes('"level":40') && !line.includes('"level":50') && !line.includes('"level":60')) continue;
        try {
          const entry = JSON.parse(line) as { msg?: string; reason?: string };
          const key = `${entry.msg ?? "?"}${entry.reason ? ` (${entry.reason})` : ""}`;
          counts.set(key, (counts.get(key) ?? 0) + 1);
        } catch {
          // a line cut by the copy
        }
      }
      return Object.fromEntries(counts);
    },
    async metric(series) {
      const text = await (await fetch(`${listening.http}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return line ? Number(line.slice(series.length + 1)) : NaN;
    },
    async stop() {
      stopping = true;
      child.kill("SIGTERM");
      const code = await exited;
      await new Promise<void>((resolve) => logStream.end(() => resolve()));
      return code;
    },
  };
}
