import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { rejectReasons, type RejectReason } from "./messages.ts";
import type { SpoolDepth } from "./spool.ts";
import type { WriterEvents } from "./durable-writer.ts";

export type Kind = "telemetry" | "event" | "feedback" | "ack";
export type Transport = "mqtt" | "http";

export interface IngestMetrics {
  accepted(kind: Kind, transport: Transport, n: number): void;
  deadLetter(reason: RejectReason): void;
  noConsent(kind: Kind, n: number): void;
  writer: WriterEvents;
}

/** Ingest's series in the platform's Prometheus registry (served at GET /metrics). */
export function ingestMetrics(
  registry: Registry,
  sources: { spool(): SpoolDepth; pending(): number; spooling(): boolean },
): IngestMetrics {
  const registers = [registry];
  const messages = new Counter({
    name: "refeed_ingest_messages_total",
    help: "Records accepted from devices (a batch publish counts each record), by kind and transport",
    labelNames: ["kind", "transport"],
    registers,
  });
  const deadLetters = new Counter({
    name: "refeed_ingest_dead_letters_total",
    help: "Refused messages or records, by reason",
    labelNames: ["reason"],
    registers,
  });
  for (const reason of rejectReasons) deadLetters.labels(reason).inc(0);
  const noConsent = new Counter({
    name: "refeed_ingest_no_consent_total",
    help: "Records about a subject that had not opted in to the purpose their kind needs; not stored",
    labelNames: ["kind"],
    registers,
  });
  const batchPoints = new Histogram({
    name: "refeed_ingest_batch_points",
    help: "Points per InfluxDB write, directly or replayed from the spool",
    labelNames: ["from"],
    buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
    registers,
  });
  const writeSeconds = new Histogram({
    name: "refeed_ingest_write_seconds",
    help: "InfluxDB write request latency, directly or replayed from the spool",
    labelNames: ["from"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const spooled = new Counter({
    name: "refeed_ingest_spooled_points_total",
    help: "Points appended to the disk spool while InfluxDB was unavailable",
    registers,
  });
  const refused = new Counter({
    name: "refeed_ingest_refused_points_total",
    help: "Points neither stored nor spooled (spool full); their QoS 1 publishes were not acknowledged",
    registers,
  });
  new Gauge({
    name: "refeed_ingest_spool_batches",
    help: "Batches in the disk spool waiting for replay",
    registers,
    collect() {
      this.set(sources.spool().batches);
    },
  });
  new Gauge({
    name: "refeed_ingest_spool_points",
    help: "Points in the disk spool waiting for replay",
    registers,
    collect() {
      this.set(sources.spool().points);
    },
  });
  new Gauge({
    name: "refeed_ingest_spool_bytes",
    help: "Bytes in the disk spool waiting for replay",
    registers,
    collect() {
      this.set(sources.spool().bytes);
    },
  });
  new Gauge({
    name: "refeed_ingest_pending_points",
    help: "Points accepted but not yet stored or spooled",
    registers,
    collect() {
      this.set(sources.pending());
    },
  });
  new Gauge({
    name: "refeed_ingest_spooling",
    help: "1 while writes go to the spool (InfluxDB unavailable or replay under way)",
    registers,
    collect() {
      this.set(sources.spooling() ? 1 : 0);
    },
  });

  return {
    accepted: (kind, transport, n) => messages.labels(kind, transport).inc(n),
    deadLetter: (reason) => deadLetters.labels(reason).inc(),
    noConsent: (kind, n) => noConsent.labels(kind).inc(n),
    writer: {
      written(points, seconds, from) {
        batchPoints.labels(from).observe(points);
        writeSeconds.labels(from).observe(seconds);
      },
      spooled: (points) => spooled.inc(points),
      refused: (points) => refused.inc(points),
    },
  };
}
