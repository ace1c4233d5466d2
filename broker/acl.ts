/**
 * Topic and identity policy of the MQTT contract, as pure functions so they
 * can be tested without a broker: a device lives in `devices/{its id}/` and
 * nowhere else, and its sessions are named after it.
 */
export type AclAction = "publish" | "subscribe" | "forward";
export type AclDecision = { allow: true } | { allow: false; reason: string };

const PUBLISH = new Set(["telemetry", "events", "feedback", "acks"]);
/** What a device may subscribe to, and so the only topics ever forwarded to it. */
const RECEIVE = new Set(["actions", "state"]);

export function authorize(deviceId: string, action: AclAction, topic: string): AclDecision {
  if (topic.startsWith("$")) return { allow: false, reason: "system topics are closed to devices" };
  const parts = topic.split("/");
  if (parts.length !== 3 || parts[0] !== "devices") {
    return { allow: false, reason: `topic must be devices/${deviceId}/<channel>` };
  }
  if (parts[1] !== deviceId) return { allow: false, reason: "topic belongs to another device" };
  const channel = parts[2]!;
  if (action === "publish") {
    return PUBLISH.has(channel)
      ? { allow: true }
      : { allow: false, reason: `devices publish only to ${[...PUBLISH].join(", ")}` };
  }
  if (action === "forward") {
    return RECEIVE.has(channel)
      ? { allow: true }
      : { allow: false, reason: `devices receive only ${[...RECEIVE].join(" and ")}` };
  }
  // Wildcards are refused outright: the two allowed filters are exact topics.
  return RECEIVE.has(channel)
    ? { allow: true }
    : { allow: false, reason: `devices subscribe only to ${[...RECEIVE].join(", ")}` };
}

/** The channel of an allowed device publish topic. */
export function channelOf(topic: string): string {
  return topic.slice(topic.lastIndexOf("/") + 1);
}

export type ClientIdDecision =
  { allow: true; clientId: string } | { allow: false; reason: string; code: "empty_persistent" | "foreign" };

const SUFFIX = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * A device's sessions are `<device id>` or `<device id>:<suffix>` (a second
 * process of the same device). Device ids cannot contain ':', so no client id
 * of one device can name a session of another. An empty client id is given a
 * fresh suffix when the session is clean; a persistent session needs a name to
 * be resumed by, so it is refused (MQTT-3.1.3-8).
 */
export function authorizeClientId(
  deviceId: string,
  clientId: string,
  clean: boolean,
  fresh: () => string,
): ClientIdDecision {
  if (clientId === "") {
    return clean
      ? { allow: true, clientId: `${deviceId}:${fresh()}` }
      : {
          allow: false,
          code: "empty_persistent",
          reason: "a persistent session (clean session off) needs a client id (MQTT-3.1.3-8)",
        };
  }
  if (clientId === deviceId) return { allow: true, clientId };
  if (clientId.startsWith(`${deviceId}:`) && SUFFIX.test(clientId.slice(deviceId.length + 1)))
    return { allow: true, clientId };
  return {
    allow: false,
    code: "foreign",
    reason: "client id must be the device id, or the device id + ':' + 1-64 letters, digits, '.', '_' or '-'",
  };
}
