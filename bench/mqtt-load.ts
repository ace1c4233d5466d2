import mqtt, { type MqttClient } from "mqtt";
import { latencyHistogram, type LatencySummary } from "./latency.ts";

export interface Device {
  id: string;
  token: string;
}

export interface LoadRun {
  /** Messages acknowledged per device so far (every PUBACK, from the first). */
  readonly acked: Map<string, number>;
  /** Starts counting rate and latency from now. */
  measure(): void;
  /** Stops publishing, waits for every message in flight, and reports the measured window. */
  stop(): Promise<{ messages: number; seconds: number; perSecond: number; latency: LatencySummary }>;
  /** Acknowledged messages since measure(). */
  readonly measured: number;
}

/**
 * Closed-loop QoS 1 load: each device keeps `window` publishes in flight and
 * sends the next as soon as one is acknowledged, so the rate is what Refeed
 * sustains while acknowledging only what is durable.
 */
export async function startMqttLoad(options: { url: string; devices: Device[]; window: number }): Promise<LoadRun> {
  const clients: MqttClient[] = await Promise.all(
    options.devices.map(
      (d) =>
        new Promise<MqttClient>((resolve, reject) => {
          const client = mqtt.connect(options.url, { clientId: d.id, username: d.id, password: d.token, reconnectPeriod: 0, connectTimeout: 10_000 });
          client.once("connect", () => resolve(client));
          client.once("error", reject);
        }),
    ),
  );
  const acked = new Map(options.devices.map((d) => [d.id, 0]));
  const latency = latencyHistogram();
  let running = true;
  let measuring = false;
  let measured = 0;
  let from = 0;
  let seq = 0;
  const lanes: Array<Promise<void>> = [];
  for (const [i, client] of clients.entries()) {
    const id = options.devices[i]!.id;
    const topic = `devices/${id}/telemetry`;
    for (let w = 0; w < options.window; w += 1) {
      lanes.push(
        (async () => {
          while (running) {
            const n = seq++;
            const payload = `{"metrics":{"seq":${n},"temp":${20 + (n % 100) / 10},"hum":${40 + (n % 20)},"on":true}}`;
            const t0 = performance.now();
            await client.publishAsync(topic, payload, { qos: 1 });
            acked.set(id, acked.get(id)! + 1);
            if (measuring) {
              measured += 1;
              latency.recordMs(performance.now() - t0);
            }
          }
        })(),
      );
    }
  }
  return {
    acked,
    measure() {
      measuring = true;
      from = performance.now();
    },
    get measured() {
      return measured;
    },
    async stop() {
      const seconds = (performance.now() - from) / 1000;
      const messages = measured;
      measuring = false;
      running = false;
      await Promise.all(lanes);
      await Promise.all(clients.map((c) => c.endAsync()));
      return { messages, seconds, perSecond: messages / seconds, latency: latency.summary() };
    },
  };
}
