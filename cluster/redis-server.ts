import { spawn, type ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { createConnection } from "node:net";
import type { Logger } from "pino";
import { findExecutable, freePort } from "../store/influxd.ts";

export interface ManagedRedis {
  readonly url: string;
  readonly port: number;
  /** Stops the server (SIGTERM); `start()` brings it back on the same port and data. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export interface ManagedRedisOptions {
  dataDir: string;
  log: Logger;
  port?: number;
  /** Debian's redis-server unless given. */
  redisServerPath?: string;
}

/**
 * A redis-server Refeed starts for `npm run cluster` and the tests: loopback
 * only, its own port and directory, append-only file on (so a stopped server
 * comes back with the streams and leases it had).
 */
export async function startRedisServer(options: ManagedRedisOptions): Promise<ManagedRedis> {
  const bin = options.redisServerPath ?? (await findExecutable("redis-server")) ?? "/usr/bin/redis-server";
  const port = options.port ?? (await freePort());
  await mkdir(options.dataDir, { recursive: true });
  const log = options.log.child({ dependency: "redis-server", port });
  let child: ChildProcess | undefined;

  const start = async () => {
    const proc = spawn(
      bin,
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        options.dataDir,
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "yes",
      ],
      // Its own process group, as influxd's: Ctrl-C at the terminal reaches `refeed cluster`, which stops
      // the nodes before the Redis they hand their last changes to.
      { stdio: ["ignore", "pipe", "pipe"], detached: true },
    );
    child = proc;
    let output = "";
    proc.stdout?.on("data", (c: Buffer) => (output = (output + c.toString()).slice(-4000)));
    proc.stderr?.on("data", (c: Buffer) => (output = (output + c.toString()).slice(-4000)));
    const exited = new Promise<never>((_, reject) =>
      proc.once("exit", (code) => reject(new Error(`redis-server exited (${code}) at start: ${output.trim()}`))),
    );
    const spawnFailed = new Promise<never>((_, reject) =>
      proc.once("error", (err) => reject(new Error(`cannot start redis-server (${bin}): ${err.message}`))),
    );
    await Promise.race([answers(port), exited, spawnFailed]);
    log.info({ pid: proc.pid }, "managed redis-server started");
  };

  const stop = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once("exit", () => resolve());
      proc.kill("SIGTERM");
    });
  };

  await start();
  return { url: `redis://127.0.0.1:${port}`, port, start, stop, close: stop };
}

/** Resolves once the server answers PING. */
async function answers(port: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ port, host: "127.0.0.1" });
      socket.once("connect", () => socket.write("PING\r\n"));
      socket.once("data", (data) => {
        socket.destroy();
        resolve(data.toString().startsWith("+PONG"));
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port} within 15 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
