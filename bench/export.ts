/**
 * Export and erasure of one customer with a long history, through the HTTP
 * API of an in-process platform and a private influxd:
 *   node --expose-gc --import tsx bench/export.ts [points, default 1000000]
 * Prints the bytes and time of the JSON and CSV-in-zip exports, the process's
 * RSS before and at its peak while they stream (it must stay flat: the export
 * is never built in memory), and how long the erasure takes.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { configSchema } from "../config/schema.ts";
import { startPlatform } from "../platform/platform.ts";
import { startInfluxd } from "../store/influxd.ts";

const N = Number(process.argv[2] ?? 1_000_000);
const TOKEN = "bench-admin-token-0123456789";
const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-bench-export-"));
const influxd = await startInfluxd({ dataDir: path.join(dir, "influx"), log: pino({ level: "warn" }) });
try {
  const config = configSchema.parse({
    mqtt: { port: 0, host: "127.0.0.1" },
    http: { port: 0, host: "127.0.0.1" },
    influx: { url: influxd.url, db: "bench" },
    dataDir: dir,
    adminToken: TOKEN,
    logLevel: "warn",
  });
  const platform = await startPlatform(config, { log: pino({ level: "warn" }) });
  const auth = { authorization: `Bearer ${TOKEN}` };
  await fetch(`${platform.addresses.http}/api/subjects/cust-big/consent`, {
    method: "PUT",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({ analytics: true }),
  });
  // The history is written straight into InfluxDB: this measures reading it back, not ingest.
  const start = Date.now() * 1000 - N * 1000;
  for (let i = 0; i < N; i += 5000) {
    const lines: string[] = [];
    for (let j = i; j < Math.min(N, i + 5000); j++)
      lines.push(`telemetry,device=phone-big,subject=cust-big battery=${j % 100},network="wifi" ${start + j * 1000}`);
    const res = await fetch(`${influxd.url}/write?db=bench&precision=u`, { method: "POST", body: lines.join("\n") });
    if (res.status !== 204) throw new Error(await res.text());
  }
  (globalThis as { gc?: () => void }).gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  for (const format of ["json", "csv"]) {
    peak = process.memoryUsage().rss;
    const t0 = Date.now();
    const res = await fetch(`${platform.addresses.http}/api/subjects/cust-big/export?format=${format}`, {
      headers: auth,
    });
    let bytes = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) bytes += chunk.length;
    const ms = Date.now() - t0;
    console.log(
      `export ${format}: ${N} points, ${mb(bytes)} in ${ms} ms (${Math.round(N / (ms / 1000))} points/s); RSS ${mb(before)} before, ${mb(peak)} at peak`,
    );
  }
  clearInterval(sampler);
  const t1 = Date.now();
  const erased = await fetch(`${platform.addresses.http}/api/subjects/cust-big`, { method: "DELETE", headers: auth });
  console.log(
    `erase: ${erased.status} in ${Date.now() - t1} ms, deleted ${JSON.stringify(((await erased.json()) as { deleted: unknown }).deleted)}`,
  );
  await platform.close();
} finally {
  await influxd.close();
  await rm(dir, { recursive: true, force: true });
}
