import { describe, expect, it } from "vitest";
import { authorize, authorizeClientId } from "../../broker/acl.ts";

describe("topic ACL", () => {
  const allowed: Array<[string, "publish" | "subscribe" | "forward", string]> = [
    ["a", "publish", "devices/a/telemetry"],
    ["a", "publish", "devices/a/events"],
    ["a", "publish", "devices/a/feedback"],
    ["a", "publish", "devices/a/acks"],
    ["a", "subscribe", "devices/a/actions"],
    ["a", "subscribe", "devices/a/state"],
    ["a", "forward", "devices/a/actions"],
    ["a", "forward", "devices/a/state"],
  ];
  it.each(allowed)("%s may %s %s", (id, action, topic) => {
    expect(authorize(id, action, topic)).toEqual({ allow: true });
  });

  const denied: Array<[string, "publish" | "subscribe" | "forward", string, RegExp]> = [
    ["a", "publish", "devices/b/telemetry", /another device/],
    ["a", "subscribe", "devices/b/actions", /another device/],
    ["a", "subscribe", "devices/b/state", /another device/],
    ["a", "subscribe", "devices/#", /must be devices\/a/],
    ["a", "subscribe", "#", /must be devices\/a/],
    ["a", "subscribe", "+/+/+", /must be devices\/a/],
    ["a", "subscribe", "devices/+/actions", /another device/],
    ["a", "subscribe", "devices/a/#", /subscribe only to/],
    ["a", "subscribe", "devices/a/+", /subscribe only to/],
    ["a", "publish", "devices/a/actions", /publish only to/],
    ["a", "publish", "devices/a/state", /publish only to/],
    ["a", "subscribe", "devices/a/telemetry", /subscribe only to/],
    ["a", "subscribe", "$SYS/#", /system topics/],
    ["a", "subscribe", "$share/g/devices/a/actions", /system topics/],
    ["a", "publish", "$SYS/broker/x", /system topics/],
    ["a", "publish", "devices/a/telemetry/extra", /must be devices\/a/],
    ["a", "publish", "devices//telemetry", /another device/],
    ["a", "publish", "other/a/telemetry", /must be devices\/a/],
    // Forwarding is the last line: even a subscription that slipped through receives nothing foreign.
    ["a", "forward", "devices/b/actions", /another device/],
    ["a", "forward", "devices/a/telemetry", /receive only/],
    ["a", "forward", "$SYS/abc/new/clients", /system topics/],
  ];
  it.each(denied)("%s may not %s %s", (id, action, topic, reason) => {
    const decision = authorize(id, action, topic);
    expect(decision.allow).toBe(false);
    expect(!decision.allow && decision.reason).toMatch(reason);
  });
});

describe("client id policy", () => {
  const fresh = () => "generated";

  it("accepts the device id and the device id with a suffix", () => {
    expect(authorizeClientId("tv-1", "tv-1", true, fresh)).toEqual({ allow: true, clientId: "tv-1" });
    expect(authorizeClientId("tv-1", "tv-1:pub", false, fresh)).toEqual({ allow: true, clientId: "tv-1:pub" });
  });

  it("never lets one device name another device's session", () => {
    for (const clientId of [
      "tv-2",
      "tv-10",
      "tv-1x",
      "tv",
      "tv-1.",
      "tv-2:tv-1",
      "tv-1:",
      "tv-1:a/b",
      "tv-1:a:b",
      ` tv-1`,
    ]) {
      expect(authorizeClientId("tv-1", clientId, true, fresh)).toMatchObject({ allow: false, code: "foreign" });
    }
    // And no suffixed session of one device is a session of another, whatever the ids.
    expect(authorizeClientId("a", "a.b", true, fresh).allow).toBe(false);
    expect(authorizeClientId("a.b", "a:b", true, fresh).allow).toBe(false);
  });

  it("names an empty client id after the device for a clean session, and refuses it for a persistent one", () => {
    expect(authorizeClientId("tv-1", "", true, fresh)).toEqual({ allow: true, clientId: "tv-1:generated" });
    expect(authorizeClientId("tv-1", "", false, fresh)).toMatchObject({
      allow: false,
      code: "empty_persistent",
      reason: /MQTT-3\.1\.3-8/,
    });
  });
});
