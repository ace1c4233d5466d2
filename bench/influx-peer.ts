import { latencyHistogram, type LatencySummary } from "./latency.ts";
import { ident, influxql } from "../store/influxql.ts";

export interface PeerResult {
  points: number;
  seconds: number;
  pointsPerSecond: number;
  latency: LatencySummary;
}

/**
 * The InfluxDB-only ceiling: pre-built line-protocol batches of the same shape
 * as the points the ingest runs store (one device tag; seq, temp, hum, on),
 * posted straight to /write with Refeed's batch size and number of requests
 * in flight. Nothing else runs.
 */
export async function influxCeiling(options: {
  url: string;
  db: string;
  batchSize: number;
  inFlight: number;
  durationMs: number;
  devices: number;
}): Promise<PeerResult> {
  await fetch(
    `${options.url}/query?${new URLSearchParams({ q: influxql`CREATE DATABASE ${ident(options.db)}`.text })}`,
    {
      method: "POST",
    },
  );
  const batches: string[] = [];
  const base = (Date.now() - 3_600_000) * 1000;
  let n = 0;
  for (let b = 0; b < 64; b += 1) {
    const lines: string[] = [];
    for (let i = 0; i < options.batchSize; i += 1, n += 1) {
      lines.push(
        `peer_0,device=dev-${String(n % options.devices).padStart(2, "0")} seq=${n},temp=21.5,hum=${40 + (n % 20)},on=true ${base + n}`,
      );
    }
    batches.push(lines.join("\n"));
  }
  const writeUrl = `${options.url}/write?${new URLSearchParams({ db: options.db, precision: "u" })}`;
  const latency = latencyHistogram();
  let next = 0;
  let points = 0;
  const started = performance.now();
  const deadline = started + options.durationMs;
  const lane = async () => {
    while (performance.now() < deadline) {
      const i = next++;
      // Each pass over the pre-built batches goes to a new measurement, so every point is new.
      const cycle = Math.floor(i / batches.length);
      const body =
        cycle === 0
          ? batches[i % batches.length]!
          : batches[i % batches.length]!.replaceAll("peer_0,", `peer_${cycle},`);
      const t0 = performance.now();
      const res = await fetch(writeUrl, { method: "POST", body });
      if (res.status !== 204) throw new Error(`InfluxDB answered ${res.status}: ${await res.text()}`);
      latency.recordMs(performance.now() - t0);
      points += options.batchSize;
    }
  };
  await Promise.all(Array.from({ length: options.inFlight }, lane));
  const seconds = (performance.now() - started) / 1000;
  return { points, seconds, pointsPerSecond: points / seconds, latency: latency.summary() };
}
