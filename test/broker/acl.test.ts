import { describe, expect, it } from "vitest";
import { authorize } from "../../broker/acl.ts";

describe("topic ACL", () => {
  const allowed: Array<[string, "publish" | "subscribe", string]> = [
    ["a", "publish", "devices/a/telemetry"],
    ["a", "publish", "devices/a/events"],
    ["a", "publish", "devices/a/feedback"],
    ["a", "publish", "devices/a/acks"],
    ["a", "subscribe", "devices/a/actions"],
    ["a", "subscribe", "devices/a/state"],
  ];
  it.each(allowed)("%s may %s %s", (id, action, topic) => {
    expect(authorize(id, action, topic)).toEqual({ allow: true });
  });

  const denied: Array<[string, "publish" | "subscribe", string, RegExp]> = [
    ["a", "publish", "devices/b/telemetry", /another device/],
    ["a", "subscribe", "devices/b/actions", /another device/],
    ["a", "subscribe", "devices/#", /must be devices\/a/],
    ["a", "subscribe", "#", /must be devices\/a/],
    ["a", "subscribe", "devices/+/actions", /another device/],
    ["a", "subscribe", "devices/a/#", /subscribe only to/],
    ["a", "subscribe", "devices/a/+", /subscribe only to/],
    ["a", "publish", "devices/a/actions", /publish only to/],
    ["a", "publish", "devices/a/state", /publish only to/],
    ["a", "subscribe", "devices/a/telemetry", /subscribe only to/],
    ["a", "subscribe", "$SYS/#", /system topics/],
    ["a", "publish", "devices/a/telemetry/extra", /must be devices\/a/],
    ["a", "publish", "other/a/telemetry", /must be devices\/a/],
  ];
  it.each(denied)("%s may not %s %s", (id, action, topic, reason) => {
    const decision = authorize(id, action, topic);
    expect(decision.allow).toBe(false);
    expect(!decision.allow && decision.reason).toMatch(reason);
  });
});
