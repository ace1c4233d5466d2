import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { startActions, type Actions } from "../../actions/index.ts";
import { ACTION_LOG_TOPIC, PROFILE_TOPIC, type ActionLogEvent, type ProfileEvent } from "../../actions/events.ts";
import type { Publisher } from "../../actions/ports.ts";
import { localChangeFeed } from "../../changes/local.ts";
import type { ChangeFeed } from "../../changes/index.ts";
import { openStore, type Store } from "../../store/index.ts";
import { freshDb, influxUrl } from "../support/influx.ts";

const log = pino({ level: "silent" });

/** The parts actions asks of others, as small as the ports: one device, no customers, a publisher that keeps what it is given. */
function parts() {
  const sent: Array<{ topic: string; payload: string }> = [];
  const publisher: Publisher = {
    publish: (topic, payload) => {
      sent.push({ topic, payload });
      return Promise.resolve();
    },
  };
  const registry = {
    get: (id: string) => (id === "tv" ? { id, revoked: false } : undefined),
    list: () => [{ id: "tv", revoked: false }],
    onChange: () => () => undefined,
  };
  const touchpoints = {
    subjectOf: () => undefined,
    linkedSubject: () => undefined,
    devicesOf: () => [],
    onChange: () => () => undefined,
  };
  return { publisher, registry, touchpoints, sent };
}

describe("actions follow the change feed", () => {
  const opened: Array<{ actions: Actions; feed: ChangeFeed }> = [];
  let store: Store | undefined;
  const start = async (db: string) => {
    store ??= await openStore({
      url: influxUrl(),
      db,
      influxdPath: "influxd",
      connectTimeoutMs: 5000,
      dataDir: "unused",
      log,
    });
    const feed = localChangeFeed(log);
    const actions = await startActions({ suggestionTtlMs: 3_600_000 }, { store, feed, log, ...parts() });
    opened.push({ actions, feed });
    return { actions, feed };
  };
  afterEach(async () => {
    for (const { actions, feed } of opened.splice(0)) {
      await actions.close();
      await feed.close();
    }
    await store?.close();
    store = undefined;
  });

  it("applies an action and a profile change made on another node, once however often they arrive", async () => {
    const { actions, feed } = await start(freshDb());
    const micros = Date.now() * 1000;
    const proposed: ActionLogEvent = ACTION_LOG_TOPIC.schema.parse({
      action: "act_elsewhere",
      status: "proposed",
      device: "tv",
      micros,
      rule: "cool-theme",
      kind: "set",
      key: "ui.theme",
      owner: "device:tv",
      why: "the room is hot",
      value: JSON.stringify("cool"),
    });
    const delivered = ACTION_LOG_TOPIC.schema.parse({
      action: "act_elsewhere",
      status: "delivered",
      device: "tv",
      micros: micros + 1,
    });
    const set: ProfileEvent = PROFILE_TOPIC.schema.parse({
      owner: "device:tv",
      key: "ui.theme",
      op: "set",
      value: JSON.stringify("cool"),
      action: "act_elsewhere",
      micros: micros + 2,
    });
    for (let i = 0; i < 2; i += 1) {
      await feed.publish(ACTION_LOG_TOPIC, proposed);
      await feed.publish(ACTION_LOG_TOPIC, delivered);
      await feed.publish(PROFILE_TOPIC, set);
    }
    expect(actions.get("act_elsewhere")).toMatchObject({ status: "delivered", value: "cool", targets: ["tv"] });
    expect(actions.get("act_elsewhere")!.transitions.map((t) => t.status)).toEqual(["proposed", "delivered"]);
    expect(actions.profileOf("device:tv")).toEqual({ "ui.theme": "cool" });
  });

  it("rebuilds at start to the state the changes made here left, and a change coming back on the feed is no news", async () => {
    const db = freshDb();
    const first = await start(db);
    const echoed: ActionLogEvent[] = [];
    first.feed.subscribe(ACTION_LOG_TOPIC, (event) => echoed.push(event));
    const [record] = await first.actions.setProfile("ann", { "ui.font": "large" }, "customer");
    await first.actions.undo(record!.id, "customer");
    await first.actions.flush();
    const before = first.actions.get(record!.id)!;
    expect(before.status).toBe("undone");
    // What this process published comes back to it (as from a Redis feed): nothing changes.
    const made = echoed.splice(0);
    expect(made.map((e) => e.status)).toEqual(["proposed", "undone"]);
    for (const event of made) await first.feed.publish(ACTION_LOG_TOPIC, event);
    expect(first.actions.get(record!.id)).toEqual(before);

    const second = await start(db);
    expect(second.actions.get(record!.id)).toMatchObject({
      status: "undone",
      transitions: before.transitions,
      kind: "set",
      key: "ui.font",
      value: "large",
    });
    expect(second.actions.profileOf("subject:ann")).toEqual({});
  });
});
