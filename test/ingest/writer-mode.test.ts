import { describe, expect, it } from "vitest";
import { initialMode, next, type WriterEvent, type WriterMode } from "../../ingest/writer-mode.ts";

const mode = (route: WriterMode["route"], extra: Partial<Omit<WriterMode, "route">> = {}): WriterMode => ({
  route,
  commitLog: "ok",
  closing: false,
  ...extra,
});
const run = (from: WriterMode, ...events: WriterEvent["type"][]) => events.reduce((m, type) => next(m, { type }), from);

const routes = ["direct", "spooling", "catching-up"] as const;
const events: WriterEvent["type"][] = [
  "spooled",
  "spool-nearly-replayed",
  "catch-up-abandoned",
  "spool-replayed",
  "commit-log-failed",
  "commit-log-durable",
  "close",
];

describe("the durable writer's mode", () => {
  it("starts writing to InfluxDB directly, with a healthy commit log, open", () => {
    expect(initialMode).toEqual(mode("direct"));
  });

  it("routes to the spool from any route once a batch was spooled", () => {
    for (const route of routes) expect(next(mode(route), { type: "spooled" }).route).toBe("spooling");
  });

  it("holds new batches in memory one round before the end of the spool, and goes back to the spool if that fails", () => {
    expect(run(mode("spooling"), "spool-nearly-replayed").route).toBe("catching-up");
    expect(run(mode("spooling"), "spool-nearly-replayed", "catch-up-abandoned").route).toBe("spooling");
    expect(run(mode("catching-up"), "spool-nearly-replayed").route).toBe("catching-up");
  });

  it("writes directly again once the spool is replayed, from the catch-up or from spooling", () => {
    expect(run(mode("catching-up"), "spool-replayed").route).toBe("direct");
    expect(run(mode("spooling"), "spool-replayed").route).toBe("direct");
    expect(run(mode("direct"), "spooled", "spool-nearly-replayed", "spool-replayed")).toEqual(mode("direct"));
  });

  it("leaves the mode as it is for what cannot happen in it", () => {
    // No replay runs while writing directly, and there is no catch-up to abandon outside one.
    expect(next(mode("direct"), { type: "spool-nearly-replayed" })).toEqual(mode("direct"));
    expect(next(mode("direct"), { type: "catch-up-abandoned" })).toEqual(mode("direct"));
    expect(next(mode("spooling"), { type: "catch-up-abandoned" })).toEqual(mode("spooling"));
    expect(next(mode("direct"), { type: "spool-replayed" })).toEqual(mode("direct"));
    expect(next(mode("direct", { commitLog: "failing" }), { type: "commit-log-failed" })).toEqual(
      mode("direct", { commitLog: "failing" }),
    );
    expect(next(mode("spooling", { closing: true }), { type: "close" })).toEqual(mode("spooling", { closing: true }));
  });

  it("follows the commit log's health apart from the route", () => {
    for (const route of routes) {
      const failing = next(mode(route), { type: "commit-log-failed" });
      expect(failing).toEqual(mode(route, { commitLog: "failing" }));
      expect(next(failing, { type: "commit-log-durable" })).toEqual(mode(route));
    }
    expect(run(mode("direct"), "commit-log-failed", "spooled", "spool-replayed").commitLog).toBe("failing");
  });

  it("stays closing through every later event, keeping the route moves of the replay that finishes", () => {
    for (const route of routes) {
      const closing = next(mode(route), { type: "close" });
      expect(closing).toEqual(mode(route, { closing: true }));
      for (const type of events) expect(next(closing, { type }).closing).toBe(true);
    }
    expect(run(mode("catching-up"), "close", "catch-up-abandoned").route).toBe("spooling");
  });

  it("answers the same mode object for an event that changes nothing, so nothing is recomputed", () => {
    const spooling = mode("spooling");
    expect(next(spooling, { type: "spooled" })).toBe(spooling);
    expect(next(spooling, { type: "commit-log-durable" })).toBe(spooling);
  });
});
