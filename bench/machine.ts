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
    loadAverage: os.loadavg().map((l) => l.toFixed(2)).join(" "),
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
