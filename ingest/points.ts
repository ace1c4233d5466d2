import type { Point } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import type { DeviceMessage } from "./messages.ts";

/**
 * The storage schema (see docs/schema.md). Tags are only bounded identifiers
 * (device id, subject id, event name); free text and values are always fields,
 * so series cardinality grows with the fleet, never with the data.
 *
 * `subject` is passed separately because consent decides whether the link is kept.
 */
export function toPoint(msg: DeviceMessage, subject: string | undefined): Point {
  // A device-stated time makes the point idempotent: a QoS 1 redelivery
  // overwrites the same point instead of adding a second one.
  const timestamp = String(msg.tsFromDevice ? msg.ts * 1000 : nextMicros(msg.ts));
  const tags: Record<string, string> = { device: msg.device };
  if (subject) tags.subject = subject;
  switch (msg.kind) {
    case "telemetry":
      return { measurement: "telemetry", tags, fields: msg.metrics, timestamp };
    case "event":
      return { measurement: "events", tags: { ...tags, event: msg.name }, fields: { props: JSON.stringify(msg.props) }, timestamp };
    case "feedback": {
      const fields: Record<string, number | string> = {};
      if (msg.rating !== undefined) fields.rating = msg.rating;
      if (msg.text !== undefined) fields.text = msg.text;
      return { measurement: "feedback", tags, fields, timestamp };
    }
  }
}
