/**
 * Topic policy of the MQTT contract, as a pure function so it can be tested
 * without a broker: a device lives in `devices/{its id}/` and nowhere else.
 */
export type AclAction = "publish" | "subscribe";
export type AclDecision = { allow: true } | { allow: false; reason: string };

const PUBLISH = new Set(["telemetry", "events", "feedback", "acks"]);
const SUBSCRIBE = new Set(["actions", "state"]);

export function authorize(deviceId: string, action: AclAction, topic: string): AclDecision {
  if (topic.startsWith("$")) return { allow: false, reason: "system topics are closed to devices" };
  const parts = topic.split("/");
  if (parts.length !== 3 || parts[0] !== "devices") {
    return { allow: false, reason: `topic must be devices/${deviceId}/<channel>` };
  }
  if (parts[1] !== deviceId) return { allow: false, reason: "topic belongs to another device" };
  const channel = parts[2]!;
  if (action === "publish") {
    return PUBLISH.has(channel) ? { allow: true } : { allow: false, reason: `devices publish only to ${[...PUBLISH].join(", ")}` };
  }
  // Wildcards are refused outright: the two allowed filters are exact topics.
  return SUBSCRIBE.has(channel) ? { allow: true } : { allow: false, reason: `devices subscribe only to ${[...SUBSCRIBE].join(", ")}` };
}

/** The channel of an allowed device publish topic. */
export function channelOf(topic: string): string {
  return topic.slice(topic.lastIndexOf("/") + 1);
}
