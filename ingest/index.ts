import type { Logger } from "pino";
import type { IngestConfig } from "../config/schema.ts";
import type { Point, Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import type { AckMessage, Channel, DeviceMessage } from "./messages.ts";
import { parsePayload, type RejectReason } from "./parse.ts";
import { toPoint } from "./points.ts";
import { createBatchWriter } from "./writer.ts";

export type { Channel, DeviceMessage, AckMessage } from "./messages.ts";
export { channels } from "./messages.ts";

/** Which consent purpose a subject-linked message of each kind needs. */
export const purposeOf = { telemetry: "analytics", event: "personalization", feedback: "feedback" } as const;
export type Purpose = (typeof purposeOf)[keyof typeof purposeOf];

/** Read side of consent; no record means no. */
export interface ConsentView {
  allows(subject: string, purpose: Purpose): boolean;
}

export interface IngestDeps {
  store: Store;
  log: Logger;
  consent: ConsentView;
  /** Called with each accepted message after consent was applied (subject removed if not allowed). */
  onMessage(msg: DeviceMessage): void;
  onAck(ack: AckMessage): void;
}

export type AcceptResult =
  | { ok: true; records: number; durable: Promise<void> }
  | { ok: false; reason: RejectReason | "write_rejected"; detail: string };

export interface Ingest {
  /**
   * Takes one publish from an authenticated device. The result is immediate;
   * `durable` resolves once the records are stored, and is what a QoS 1 PUBACK waits for.
   */
  accept(device: string, channel: Channel, payload: Buffer): AcceptResult;
  readonly counters: Readonly<Record<string, number>>;
  close(): Promise<void>;
}

const DEAD_LETTER_PAYLOAD_BYTES = 1024;

export async function startIngest(config: IngestConfig, deps: IngestDeps): Promise<Ingest> {
  const log = deps.log.child({ part: "ingest" });
  const counters: Record<string, number> = {};
  const count = (key: string, n = 1) => (counters[key] = (counters[key] ?? 0) + n);

  const writer = createBatchWriter({
    store: deps.store,
    log,
    batchSize: config.batchSize,
    flushMs: config.flushMs,
    onRejected(point, message) {
      count("dead_letter.write_rejected");
      log.warn({ device: point.tags?.device, measurement: point.measurement, reason: "write_rejected", influx: message }, "InfluxDB refused a point");
      deadLetter(point.tags?.device ?? "unknown", point.measurement ?? "unknown", "write_rejected", message, JSON.stringify(point.fields));
    },
  });

  // Dead letters go through the same writer so they share its batching and retries.
  function deadLetter(device: string, channel: string, reason: string, detail: string, payload: string): void {
    void writer.write([
      {
        measurement: "dead_letters",
        tags: { device, channel, reason },
        fields: { detail: detail.slice(0, 1000), payload: payload.slice(0, DEAD_LETTER_PAYLOAD_BYTES) },
        timestamp: String(nextMicros()),
      },
    ]);
  }

  return {
    accept(device, channel, payload) {
      const parsed = parsePayload(channel, payload, { device, now: Date.now(), maxFutureSkewMs: 5 * 60_000, maxBatch: 500 });
      if (!parsed.ok) {
        count(`dead_letter.${parsed.reason}`);
        log.warn({ device, channel, reason: parsed.reason, detail: parsed.detail }, "message refused");
        deadLetter(device, channel, parsed.reason, parsed.detail, payload.toString("utf8"));
        return parsed;
      }
      if (parsed.channel === "acks") {
        count("in.acks", parsed.acks.length);
        for (const ack of parsed.acks) deps.onAck(ack);
        return { ok: true, records: parsed.acks.length, durable: Promise.resolve() };
      }
      const points: Point[] = [];
      const admitted: DeviceMessage[] = [];
      for (const msg of parsed.messages) {
        let subject = msg.subject;
        if (subject !== undefined && !deps.consent.allows(subject, purposeOf[msg.kind])) {
          // Opt-in only: the device data is kept, the link to the customer is not.
          count("no_consent");
          subject = undefined;
        }
        points.push(toPoint(msg, subject));
        admitted.push(subject === msg.subject ? msg : { ...msg, subject });
      }
      count(`in.${channel}`, points.length);
      const durable = writer.write(points);
      for (const msg of admitted) deps.onMessage(msg);
      return { ok: true, records: points.length, durable };
    },
    counters,
    async close() {
      await writer.close();
      log.info({ counters }, "ingest flushed and closed");
    },
  };
}
