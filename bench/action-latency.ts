import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as hdr from "hdr-histogram-js";
import mqtt, { type MqttClient } from "mqtt";
import { pino } from "pino";
import { configSchema } from "../config/schema.ts";
import { startPlatform } from "../platform/platform.ts";
import { startInfluxd } from "../store/influxd.ts";

export interface LatencyRow {
  rate: number;
  sent: number;
  received: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

const RULE = `id: bench-threshold
on: telemetry
when: msg.metrics.temp > 30
then:
  - set: bench.last_seq
    expr: msg.metrics.seq
`;

/**
 * Telemetry in -> action out, through the whole platform: MQTT in, ingest,
 * rule, action log written to InfluxDB, action published, MQTT out. Open
 * loop: every message is stamped with its scheduled send time, so a stall
 * shows up as latency instead of as a slower sender.
 */
export async function benchActionLatency(options: { quick: boolean; rates: number[]; devices?: number }): Promise<LatencyRow[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-bench-latency-"));
  const log = pino({ level: "warn" });
  const influxd = await startInfluxd({ dataDir: dir, log });
  const rulesDir = path.join(dir, "rules");
  await mkdir(rulesDir);
  await writeFile(path.join(rulesDir, "bench.yaml"), RULE);
  const config = configSchema.parse({
    http: { port: 0, host: "127.0.0.1" },
    influx: { url: influxd.url, db: "bench" },
    dataDir: dir,
    rulesDir,
    adminToken: "bench-admin-token-0123456789",
    logLevel: "warn",
    // The broker's per-device rate limit would otherwise be what is measured.
    mqtt: { port: 0, host: "127.0.0.1", limits: { publishRate: 10_000, publishBurst: 10_000 } },
  });
  const platform = await startPlatform(config, { log });
  const rows: LatencyRow[] = [];
  const clients: MqttClient[] = [];
  try {
    const deviceCount = options.devices ?? 20;
    const devices: Array<{ id: string; client: MqttClient }> = [];
    const sentAt = new Map<number, number>();
    const histogram = { current: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 }) };
    let received = 0;
    for (let i = 0; i < deviceCount; i += 1) {
      const res = await fetch(`${platform.addresses.http}/api/devices`, {
        method: "POST",
        headers: { authorization: `Bearer ${config.adminToken}`, "content-type": "application/json" },
        body: JSON.stringify({ id: `bench-${i}` }),
      });
      const { id, token } = (await res.json()) as { id: string; token: string };
      const client = await mqtt.connectAsync(platform.addresses.mqtt, { clientId: id, username: id, password: token, reconnectPeriod: 0 });
      clients.push(client);
      await client.subscribeAsync(`devices/${id}/actions`, { qos: 1 });
      client.on("message", (_topic, payload) => {
        const seq = (JSON.parse(payload.toString()) as { value: number }).value;
        const at = sentAt.get(seq);
        if (at === undefined) return;
        sentAt.delete(seq);
        received += 1;
        histogram.current.recordValue(Math.max(1, Math.round((performance.now() - at) * 1000)));
      });
      devices.push({ id, client });
    }

    let seq = 0;
    const seconds = options.quick ? 5 : 20;
    for (const rate of options.rates) {
      histogram.current.reset();
      received = 0;
      const total = rate * seconds;
      const start = performance.now() + 50;
      let sent = 0;
      await new Promise<void>((resolve) => {
        const tick = () => {
          const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
          while (sent < due) {
            const n = (seq += 1);
            const scheduled = start + (sent / rate) * 1000;
            sentAt.set(n, scheduled);
            const device = devices[sent % devices.length]!;
            device.client.publish(`devices/${device.id}/telemetry`, JSON.stringify({ metrics: { temp: 31, seq: n } }), { qos: 1 });
            sent += 1;
          }
          if (sent >= total) resolve();
          else setTimeout(tick, 1);
        };
        setTimeout(tick, 50);
      });
      const deadline = performance.now() + 10_000;
      while (received < total && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      rows.push({
        rate,
        sent: total,
        received,
        p50Ms: histogram.current.getValueAtPercentile(50) / 1000,
        p99Ms: histogram.current.getValueAtPercentile(99) / 1000,
        p999Ms: histogram.current.getValueAtPercentile(99.9) / 1000,
        maxMs: histogram.current.maxValue / 1000,
      });
      sentAt.clear();
    }
    histogram.current.destroy();
  } finally {
    await Promise.all(clients.map((c) => c.endAsync()));
    await platform.close();
    await influxd.close();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
