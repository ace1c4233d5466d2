import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { openStore, type Store } from "../../store/index.ts";
import { startTouchpoints, type TouchpointChange, type Touchpoints } from "../../subjects/touchpoints.ts";
import type { DeviceMessage } from "../../ingest/index.ts";
import { freshDb, influxUrl } from "../support/influx.ts";

const log = pino({ level: "silent" });
const event = (device: string, name: string, subject: string | undefined, ts = Date.now()): DeviceMessage => ({
  kind: "event",
  device,
  name,
  subject,
  ts,
  tsFromDevice: true,
  props: {},
});

describe("touchpoints: links and shared-device sessions", () => {
  let store: Store;
  let tp: Touchpoints;
  const changes: TouchpointChange[] = [];
  beforeAll(async () => {
    store = await openStore({
      url: influxUrl(),
      db: freshDb(),
      influxdPath: "influxd",
      connectTimeoutMs: 5000,
      dataDir: "/nonexistent",
      log,
    });
    tp = await startTouchpoints({ sessionTtlMs: 60_000 }, { store, log });
    tp.onChange((c) => changes.push(c));
  });
  afterAll(async () => {
    await tp?.close();
    await store?.close();
  });

  it("a session's subject wins over a link while it lasts; a link is kept in InfluxDB and replaced by a new one", async () => {
    await tp.link("phone", "a", "admin");
    expect(tp.subjectOf("phone")).toBe("a");
    tp.observe(event("phone", "session_start", "b"));
    expect(tp.subjectOf("phone")).toBe("b");
    expect(tp.devicesOf("b")).toEqual(["phone"]);
    tp.observe(event("phone", "session_end", "b"));
    expect(tp.subjectOf("phone")).toBe("a");
    await tp.link("phone", "c", "admin");
    expect([tp.linkedSubject("phone"), tp.devicesOf("a")]).toEqual(["c", []]);
    expect(changes.map((c) => [c.before, c.after])).toEqual([
      [undefined, "a"],
      ["a", "b"],
      ["b", "a"],
      ["a", "c"],
    ]);

    const rebuilt = await startTouchpoints({ sessionTtlMs: 60_000 }, { store, log });
    expect(rebuilt.linkedSubject("phone")).toBe("c");
    await rebuilt.close();
  });

  it("ignores stale and foreign session messages, and rebuilds open sessions at start", async () => {
    tp.observe(event("atm", "session_start", "x", Date.now() - 120_000)); // older than the TTL: history, not a session
    expect(tp.subjectOf("atm")).toBeUndefined();
    const now = Date.now();
    tp.observe(event("atm", "session_start", "x", now));
    tp.observe(event("atm", "session_end", "y", now + 1)); // someone else's end does not end x's session
    tp.observe(event("atm", "session_end", "x", now - 10)); // an end from before the start neither
    expect(tp.subjectOf("atm")).toBe("x");
    tp.observe(event("atm", "session_start", undefined, now + 2)); // an anonymous session replaces it
    expect(tp.subjectOf("atm")).toBeUndefined();

    await store.write([
      {
        measurement: "events",
        tags: { device: "tv", event: "session_start", subject: "z" },
        fields: { props: "{}" },
        timestamp: String(Date.now() * 1000),
      },
    ]);
    const rebuilt = await startTouchpoints({ sessionTtlMs: 60_000 }, { store, log });
    expect(rebuilt.subjectOf("tv")).toBe("z");
    expect(rebuilt.forgetSubject("z")).toEqual(["tv"]);
    expect(rebuilt.subjectOf("tv")).toBeUndefined();
    await rebuilt.close();
  });
});
