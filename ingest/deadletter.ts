import type { Logger } from "pino";
import type { ConsentView, Purpose } from "../consent/index.ts";
import { SUBJECT_ID } from "../registry/index.ts";
import { describeLine, type Line } from "./lineprotocol.ts";
import type { Channel } from "./messages.ts";
import type { IngestMetrics } from "./metrics.ts";
import type { Refusal } from "./parse.ts";
import { toDeadLetterLine } from "./points.ts";
import { subjectsIn } from "./subject-hash.ts";

/** The consent purpose a record on each channel needs (as ingest/index.ts `purposeOf`); acks are about no one. */
const purposeOfChannel: Record<Channel, Purpose | undefined> = {
  telemetry: "analytics",
  events: "personalization",
  feedback: "feedback",
  acks: undefined,
};

export interface DeadLetters {
  /**
   * Counts and logs refused records and returns their dead-letter points, to be stored with the publish.
   * `about`: whom a refused record that names nobody is about all the same (a linked device's customer).
   */
  record(
    device: string,
    channel: Channel,
    topic: string,
    refused: readonly Refusal[],
    about?: (refusal: Refusal) => string | undefined,
  ): Line[];
  /** A point InfluxDB refused (e.g. a field type conflict), with InfluxDB's message. */
  rejectedByInflux(line: Line, message: string): void;
}

/**
 * Every refused message leaves a `dead_letters` point (device, channel, reason,
 * a truncated copy), a count by reason and a log line: nothing is dropped
 * silently, and nothing a device sends can stall or crash the pipeline.
 * A refused record about a subject without consent for its purpose is no more
 * stored than an admitted one would be: its letter keeps the reason, the
 * device, the topic and a keyed hash of the subject (to count or match
 * repeats), never the subject or the payload.
 */
export function createDeadLetters(deps: {
  log: Logger;
  metrics: IngestMetrics;
  consent: ConsentView;
  /** A keyed hash of a subject id (ingest/subject-hash.ts). */
  hashSubject(subject: string): string;
  write(lines: Line[]): Promise<void>;
}): DeadLetters {
  const log = deps.log.child({ part: "ingest" });
  return {
    record(device, channel, topic, refused, about) {
      const purpose = purposeOfChannel[channel];
      return refused.map((r) => {
        deps.metrics.deadLetter(r.reason);
        // Only a valid subject id can name a customer who could consent; anything else is refused as invalid_subject.
        const named = subjectsIn(r.payload).filter((s) => SUBJECT_ID.test(s));
        const attributed = named.length === 0 ? about?.(r) : undefined;
        const subjects = attributed === undefined ? named : [attributed];
        const withheld = subjects.some((s) => purpose === undefined || !deps.consent.allows(s, purpose));
        // The detail quotes what was wrong, which may be the subject itself.
        const detail = withheld ? subjects.reduce((text, s) => text.split(s).join("<subject>"), r.detail) : r.detail;
        log.warn(
          {
            device,
            channel,
            reason: r.reason,
            detail,
            ...(r.index !== undefined ? { index: r.index } : {}),
            ...(withheld ? { withoutConsent: true } : {}),
          },
          "message refused",
        );
        return toDeadLetterLine({
          device,
          channel,
          reason: r.reason,
          detail,
          topic,
          payload: withheld ? undefined : r.payload,
          // A copy that does not name its customer keeps their hash too, or erasing them could not find it.
          subjectHash:
            withheld || attributed !== undefined
              ? [...new Set(subjects.map((s) => deps.hashSubject(s)))].join(",")
              : undefined,
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
