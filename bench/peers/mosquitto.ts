import { execFile, spawn } from "node:child_process";
import { pbkdf2Sync, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import net from "node:net";
import os from "node:os";
import { promisify } from "node:util";
import { findExecutable, freePort } from "../../store/influxd.ts";
import { track } from "../children.ts";

export interface MosquittoUser {
  username: string;
  password: string;
}

export interface RunningMosquitto {
  url: string;
  pid: number;
  version: string;
  /** The end of what Mosquitto logged (errors and warnings), for a failure's message. */
  readonly log: string;
  stop(): Promise<void>;
}

/** Debian's `mosquitto` broker: found, or installed with apt-get (as scripts/setup.sh installs influxdb). */
export async function ensureMosquitto(say: (text: string) => void): Promise<string> {
  const found = await findExecutable("mosquitto");
  if (found) return found;
  say("installing Debian's mosquitto (the peer broker)");
  const sudo = process.getuid?.() === 0 ? [] : ["sudo"];
  const run = (args: string[]) =>
    promisify(execFile)(sudo[0] ?? args[0]!, sudo.length ? args : args.slice(1), {
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      maxBuffer: 64 * 1024 * 1024,
    });
  await run(["apt-get", "update", "-qq"]);
  await run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "mosquitto"]);
  const installed = await findExecutable("mosquitto");
  if (!installed)
    throw new Error("apt-get installed mosquitto, but no mosquitto binary was found on PATH or in /usr/sbin");
  return installed;
}

/** A password file line as mosquitto_passwd 2.x writes it: PBKDF2-SHA512, 101 iterations. */
function passwordLine(user: MosquittoUser): string {
  const salt = randomBytes(12);
  const hash = pbkdf2Sync(user.password, salt, 101, 64, "sha512");
  return `${user.username}:$7$101$${salt.toString("base64")}$${hash.toString("base64")}`;
}

/**
 * Starts Mosquitto on a free loopback port with a generated configuration:
 * per-device credentials and the same topic policy as Refeed's contract
 * (a device reads and writes only under `devices/{its id}/`), plus the
 * users the benchmark's consumers need. Tuned for throughput the way an
 * operator would: Nagle off, no persistence, generous in-flight and queue
 * limits (Mosquitto drops QoS 1 messages beyond max_queued_messages).
 */
export async function startMosquitto(options: {
  binary: string;
  dir: string;
  users: MosquittoUser[];
  acl: string;
}): Promise<RunningMosquitto> {
  const port = await freePort();
  const passwd = path.join(options.dir, "passwd");
  const acl = path.join(options.dir, "acl");
  const conf = path.join(options.dir, "mosquitto.conf");
  await writeFile(passwd, `${options.users.map(passwordLine).join("\n")}\n`, { mode: 0o600 });
  await writeFile(acl, `${options.acl}\npattern readwrite devices/%u/#\n`);
  await writeFile(
    conf,
    [
      // Started as root, Mosquitto would switch to the `mosquitto` user, who cannot read this private directory.
      `user ${os.userInfo().username}`,
      `listener ${port} 127.0.0.1`,
      "allow_anonymous false",
      `password_file ${passwd}`,
      `acl_file ${acl}`,
      "persistence false",
      "set_tcp_nodelay true",
      "max_inflight_messages 100",
      "max_queued_messages 100000",
      "max_connections -1",
      "log_dest stderr",
      "log_type error",
      "log_type warning",
      ...(process.env.BENCH_MOSQUITTO_LOG ? ["log_type all"] : []),
      "",
    ].join("\n"),
  );
  const version = await promisify(execFile)(options.binary, ["-h"]).then(
    (r) => /mosquitto version (\S+)/.exec(r.stdout)?.[1] ?? "unknown",
    (err: { stdout?: string }) => /mosquitto version (\S+)/.exec(err.stdout ?? "")?.[1] ?? "unknown",
  );
  const child = spawn(options.binary, ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  track(child);
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // Listening once a TCP connection is accepted.
  const deadline = Date.now() + 15_000;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = new net.Socket();
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
      socket.connect(port, "127.0.0.1");
    });
    if (open) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`mosquitto did not start: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    pid: child.pid!,
    version,
    get log() {
      return stderr;
    },
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
