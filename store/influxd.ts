import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, writeFile, access } from "node:fs/promises";
import { constants } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import type { Logger } from "pino";

/** influxd is not on this machine; the message says how to get it. */
export class InfluxdMissingError extends Error {
  readonly code = "REFEED_INFLUXD_MISSING";
  constructor(binary: string) {
    super(
      `influxd (InfluxDB 1.x) not found as '${binary}': install it with 'sudo apt-get install influxdb' ` +
        `(Debian/Ubuntu) or run 'docker compose up -d influxdb' and set REFEED_INFLUX_URL=http://localhost:8086`,
    );
  }
}

export class InfluxdStartError extends Error {
  readonly code = "REFEED_INFLUXD_START_FAILED";
}

export interface ManagedInfluxd {
  readonly url: string;
  readonly pid: number | undefined;
  /** Stops influxd (SIGTERM, then SIGKILL after a grace period) and waits for it to exit. */
  close(): Promise<void>;
}

export interface ManagedInfluxdOptions {
  dataDir: string;
  binary?: string;
  log: Logger;
  /** Port for the HTTP API; 0 or absent picks a free one. */
  port?: number;
  startTimeoutMs?: number;
}

/** Finds an executable by name on PATH (or checks a path), without spawning a shell. */
export async function findExecutable(name: string): Promise<string | undefined> {
  const candidates = name.includes("/")
    ? [name]
    : (process.env.PATH ?? "")
        .split(path.delimiter)
        .filter(Boolean)
        .map((dir) => path.join(dir, name));
  for (const candidate of [...candidates, ...(name.includes("/") ? [] : [`/usr/bin/${name}`, `/usr/sbin/${name}`])]) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/**
 * Starts a private influxd bound to loopback with its data under dataDir, and
 * supervises it: an unexpected exit is logged and influxd is started again
 * with backoff, so a crash of the database does not take the platform down
 * (the ingest spool covers the gap).
 */
export async function startInfluxd(options: ManagedInfluxdOptions): Promise<ManagedInfluxd> {
  const binary = await findExecutable(options.binary ?? "influxd");
  if (!binary) throw new InfluxdMissingError(options.binary ?? "influxd");
  const log = options.log.child({ part: "influxd" });
  const root = path.resolve(options.dataDir, "influxdb");
  await mkdir(root, { recursive: true });

  // influxd also binds an RPC port (backup/restore); both are ours to pick so
  // several instances (tests, a dev platform) never collide.
  const httpPort = options.port || (await freePort());
  const rpcPort = await freePort();
  const configFile = path.join(root, "influxdb.conf");
  await writeFile(configFile, influxdConfig(root, httpPort, rpcPort));
  const url = `http://127.0.0.1:${httpPort}`;

  let child: ChildProcess | undefined;
  let stopping = false;
  let restarts = 0;
  let stderrTail = "";

  const launch = (): ChildProcess => {
    // Its own process group: Ctrl-C at the terminal reaches Refeed, which flushes and then stops
    // influxd itself, instead of killing the database under the final writes.
    const proc = spawn(binary, ["run", "-config", configFile], { stdio: ["ignore", "ignore", "pipe"], detached: true });
    proc.stderr?.setEncoding("utf8");
    proc.stderr?.on("data", (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-4000);
    });
    proc.on("exit", (code, signal) => {
      if (stopping) return;
      restarts += 1;
      const delay = Math.min(30_000, 500 * 2 ** Math.min(restarts, 6));
      log.error(
        { code, signal, restarts, delayMs: delay, stderr: lastLines(stderrTail) },
        "influxd exited unexpectedly; restarting",
      );
      setTimeout(() => {
        if (!stopping) child = launch();
      }, delay).unref();
    });
    return proc;
  };

  child = launch();
  const exited = new Promise<number | null>((resolve) => child!.once("exit", (code) => resolve(code)));
  const ready = await Promise.race([
    waitForPing(url, options.startTimeoutMs ?? 30_000).then(() => true),
    exited.then(() => false),
  ]);
  if (!ready) {
    stopping = true;
    throw new InfluxdStartError(`influxd failed to start: ${lastLines(stderrTail) || "no output"}`);
  }
  log.info({ url, pid: child.pid, dir: root }, "managed influxd started");

  return {
    url,
    get pid() {
      return child?.pid;
    },
    async close() {
      stopping = true;
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const done = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      await done;
      clearTimeout(timer);
      log.info("managed influxd stopped");
    },
  };
}

async function waitForPing(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 204) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new InfluxdStartError(`influxd did not answer ${url}/ping within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function lastLines(text: string): string {
  return text.trim().split("\n").slice(-3).join(" | ");
}

function influxdConfig(root: string, httpPort: number, rpcPort: number): string {
  const q = (s: string) => JSON.stringify(s);
  return `reporting-disabled = true
bind-address = "127.0.0.1:${rpcPort}"

[meta]
  dir = ${q(path.join(root, "meta"))}

[data]
  dir = ${q(path.join(root, "data"))}
  wal-dir = ${q(path.join(root, "wal"))}
  query-log-enabled = false
  index-version = "tsi1"
  # Group commit inside influxd: its writes still wait for their fsync, but they share one every 10 ms
  # instead of one each, so the managed influxd leaves the shared disk to Refeed's commit log.
  wal-fsync-delay = "10ms"

[http]
  enabled = true
  bind-address = "127.0.0.1:${httpPort}"
  log-enabled = false
  max-body-size = 100000000

[logging]
  level = "warn"

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false
`;
}
