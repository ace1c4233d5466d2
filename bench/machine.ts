import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import os from "node:os";
import { promisify } from "node:util";

export interface MachineFacts {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  influxd: string;
  loadAverage: string;
}

export async function machineFacts(): Promise<MachineFacts> {
  const influxd = await promisify(execFile)("influxd", ["version"]).then(
    (r) => r.stdout.trim(),
    () => "unknown",
  );
  const pretty = await readFile("/etc/os-release", "utf8").then(
    (text) => /^PRETTY_NAME="?([^"\n]+)"?/m.exec(text)?.[1] ?? os.type(),
    () => os.type(),
  );
  return {
    cpu: os.cpus()[0]?.model.trim() ?? "unknown",
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${pretty}, Linux ${os.release()}`,
    node: process.version,
    influxd,
    loadAverage: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" "),
  };
}

/** Resident set size of a process, from /proc (Linux). */
export async function rssBytes(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Samples a process's RSS until stopped; keeps the peak. */
export function rssSampler(pid: () => number | undefined, everyMs = 250) {
  let peak = 0;
  const timer = setInterval(() => {
    const p = pid();
    if (p) void rssBytes(p).then((b) => (peak = Math.max(peak, b)));
  }, everyMs);
  return {
    get peak() {
      return peak;
    },
    reset() {
      peak = 0;
    },
    stop() {
      clearInterval(timer);
    },
  };
}

/** CPU time (user + system) a process has used so far, in seconds, from /proc (Linux; 100 ticks/s). */
export async function cpuSeconds(pid: number): Promise<number> {
  if (pid === process.pid) {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1e6;
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** CPU each process used between start and stop(): CPU-seconds, and cores kept busy on average. */
export async function cpuMeter(pids: Record<string, () => number | undefined>) {
  const read = async () =>
    Object.fromEntries(
      await Promise.all(
        Object.entries(pids).map(async ([name, pid]) => [name, pid() ? await cpuSeconds(pid()!) : 0] as const),
      ),
    );
  const before = await read();
  const started = performance.now();
  return {
    async stop(): Promise<{ seconds: Record<string, number>; cores: Record<string, number>; wallSeconds: number }> {
      const after = await read();
      const wallSeconds = (performance.now() - started) / 1000;
      const seconds = Object.fromEntries(Object.keys(pids).map((name) => [name, after[name]! - before[name]!]));
      return {
        seconds,
        cores: Object.fromEntries(Object.entries(seconds).map(([name, s]) => [name, s / wallSeconds])),
        wallSeconds,
      };
    },
  };
}
