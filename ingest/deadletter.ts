import type { Logger } from "pino";
import { describeLine, type Line } from "./lineprotocol.ts";
import type { Channel } from "./messages.ts";
import type { IngestMetrics } from "./metrics.ts";
import type { Refusal } from "./parse.ts";
import { toDeadLetterLine } from "./points.ts";

export interface DeadLetters {
  /** Counts and logs refused records and returns their dead-letter points, to be stored with the publish. */
  record(device: string, channel: Channel, topic: string, refused: readonly Refusal[]): Line[];
  /** A point InfluxDB refused (e.g. a field type conflict), with InfluxDB's message. */
  rejectedByInflux(line: Line, message: string): void;
}

/**
 * Every refused message leaves a `dead_letters` point (device, channel, reason,
 * a truncated copy), a count by reason and a log line: nothing is dropped
 * silently, and nothing a device sends can stall or crash the pipeline.
 */
export function createDeadLetters(deps: {
  log: Logger;
  metrics: IngestMetrics;
  write(lines: Line[]): Promise<void>;
}): DeadLetters {
  const log = deps.log.child({ part: "ingest" });
  return {
    record(device, channel, topic, refused) {
      return refused.map((r) => {
        deps.metrics.deadLetter(r.reason);
        log.warn(
          { device, channel, reason: r.reason, detail: r.detail, ...(r.index !== undefined ? { index: r.index } : {}) },
          "message refused",
        );
        return toDeadLetterLine({
          device,
          channel,
          reason: r.reason,
          detail: r.detail,
          topic,
          payload: r.payload,
          index: r.index,
        });
      });
    },

    rejectedByInflux(line, message) {
      const { measurement, device } = describeLine(line);
      if (measurement === "dead_letters") {
        // Never a loop: a dead letter InfluxDB refuses is only logged.
        log.error({ device, influx: message }, "InfluxDB refused a dead-letter point");
        return;
      }
      deps.metrics.deadLetter("write_rejected");
      log.warn({ device, measurement, reason: "write_rejected", influx: message }, "InfluxDB refused a point");
      const letter = toDeadLetterLine({
        device,
        channel: measurement,
        reason: "write_rejected",
        detail: message,
        topic: "influxdb write",
        payload: line,
      });
      deps
        .write([letter])
        .catch((err: Error) =>
          log.error({ device, err: err.message }, "dead letter for a refused point could not be stored"),
        );
    },
  };
}
