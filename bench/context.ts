import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { ManagedInfluxd } from "../store/influxd.ts";
import type { BenchDevice } from "./fleet.ts";
import type { RunningRefeed } from "./refeed-process.ts";

/** What every section of the benchmark shares: the mode, a scratch directory, the InfluxDB, the peers. */
export interface BenchContext {
  quick: boolean;
  dir: string;
  influxd(): ManagedInfluxd;
  /** Stops the shared influxd and starts it again on the same port and data (the outage run). */
  restartInfluxd(stop: () => Promise<void>): Promise<void>;
  mosquitto: string;
  nodeRed: string;
  /** Seconds each step of load lasts. */
  stepSeconds: number;
  /** Refinement steps between the last passing and the first failing step. */
  refine: number;
  /** Directory for CPU profiles of Refeed (`--profile`), if any. */
  profileDir: string | undefined;
  say: (text: string) => void;
}

export const ADMIN_TOKEN = "bench-admin-token-0123456789";

/** A rules directory with the given rule files. */
export async function rulesDir(ctx: BenchContext, name: string, rules: Record<string, string>): Promise<string> {
  const dir = path.join(ctx.dir, name);
  await mkdir(dir, { recursive: true });
  for (const [file, text] of Object.entries(rules)) await writeFile(path.join(dir, file), text);
  return dir;
}

/** Grants every consent purpose to a subject through the API, as a customer's opt-in would. */
export async function optIn(refeed: RunningRefeed, subject: string): Promise<void> {
  const res = await fetch(`${refeed.http}/api/subjects/${subject}/consent`, {
    method: "PUT",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ analytics: true, personalization: true, feedback: true }),
  });
  if (res.status !== 200) throw new Error(`consent for ${subject}: ${res.status} ${await res.text()}`);
}

/** A device's connection as the generator opens it. */
export const deviceClient = (d: BenchDevice, extra: { subscribe?: string[]; group?: string } = {}) => ({
  clientId: d.id,
  username: d.id,
  password: d.token,
  topic: `devices/${d.id}/telemetry`,
  subscribe: extra.subscribe ?? [`devices/${d.id}/actions`],
  ...(extra.group ? { group: extra.group } : {}),
});

/** Node options that make a Refeed process write a CPU profile (of each of its threads) under the profile directory. */
export const profileArgs = (ctx: BenchContext, section: string): string[] =>
  ctx.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${path.join(ctx.profileDir, `refeed-${section}`)}`] : [];

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
