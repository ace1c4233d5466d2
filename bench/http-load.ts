import { latencyHistogram } from "./latency.ts";
import type { BenchDevice as Device } from "./fleet.ts";

/** Devices posting batches of telemetry records to POST /api/ingest/telemetry, one request in flight each. */
export async function httpLoad(options: {
  http: string;
  devices: Device[];
  batch: number;
  warmupMs: number;
  durationMs: number;
}) {
  const acked = new Map(options.devices.map((d) => [d.id, 0]));
  const latency = latencyHistogram();
  let records = 0;
  let seq = 0;
  const start = performance.now();
  const measureFrom = start + options.warmupMs;
  const end = measureFrom + options.durationMs;
  await Promise.all(
    options.devices.map(async (d) => {
      while (performance.now() < end) {
        const body = JSON.stringify(
          Array.from({ length: options.batch }, () => ({ metrics: { seq: seq++, temp: 21.5, hum: 40, on: true } })),
        );
        const t0 = performance.now();
        const res = await fetch(`${options.http}/api/ingest/telemetry`, {
          method: "POST",
          headers: { authorization: `Bearer ${d.token}`, "content-type": "application/json" },
          body,
        });
        const answer = (await res.json()) as { accepted?: number };
        if (res.status !== 200 || answer.accepted !== options.batch)
          throw new Error(`ingest answered ${res.status}: ${JSON.stringify(answer)}`);
        acked.set(d.id, acked.get(d.id)! + options.batch);
        if (t0 >= measureFrom) {
          records += options.batch;
          latency.recordMs(performance.now() - t0);
        }
      }
    }),
  );
  const seconds = (performance.now() - measureFrom) / 1000;
  return { acked, records, seconds, perSecond: records / seconds, latency: latency.summary() };
}
