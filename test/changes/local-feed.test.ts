import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { localChangeFeed } from "../../changes/local.ts";
import { rebuildAndFollow } from "../../changes/rebuild.ts";
import { createRegistryView, registryChanges, type RegistryEvent } from "../../registry/view.ts";

const log = pino({ level: "silent" });
const T = 1_700_000_000_000_000;
const revoked = (device: string, micros = T): RegistryEvent => ({ op: "revoked", device, micros });

describe("local change feed", () => {
  it("has applied an event in every subscriber when publish resolves, and stops a subscriber that unsubscribed", async () => {
    const feed = localChangeFeed(log);
    const a: string[] = [];
    const b: string[] = [];
    feed.subscribe(registryChanges, (e) => a.push(e.device));
    const stopB = feed.subscribe(registryChanges, (e) => b.push(e.device));
    await feed.publish(registryChanges, revoked("tv-1"));
    stopB();
    await feed.publish(registryChanges, revoked("tv-2"));
    expect(a).toEqual(["tv-1", "tv-2"]);
    expect(b).toEqual(["tv-1"]);
  });

  it("keeps delivering to the other subscribers when one throws", async () => {
    const feed = localChangeFeed(log);
    const seen: string[] = [];
    feed.subscribe(registryChanges, () => {
      throw new Error("broken view");
    });
    feed.subscribe(registryChanges, (e) => seen.push(e.device));
    await feed.publish(registryChanges, revoked("tv-1"));
    expect(seen).toEqual(["tv-1"]);
  });

  it("refuses an event its topic's schema does not take, before any subscriber sees it", async () => {
    const feed = localChangeFeed(log);
    const seen: unknown[] = [];
    feed.subscribe(registryChanges, (e) => seen.push(e));
    const bad = { op: "revoked", device: "tv-1", micros: "yesterday" } as unknown as RegistryEvent;
    await expect(feed.publish(registryChanges, bad)).rejects.toThrow(/not a 'registry' change/);
    expect(seen).toEqual([]);
  });

  it("delivers nothing after close", async () => {
    const feed = localChangeFeed(log);
    const seen: unknown[] = [];
    feed.subscribe(registryChanges, (e) => seen.push(e));
    await feed.close();
    await feed.publish(registryChanges, revoked("tv-1"));
    expect(seen).toEqual([]);
  });
});

describe("rebuildAndFollow", () => {
  it("rebuilds from stored rows, skips rows that are not events, and follows the feed, also during the rebuild", async () => {
    const feed = localChangeFeed(log);
    const view = createRegistryView();
    const followed: string[] = [];
    let release: (rows: Record<string, unknown>[]) => void = () => {};
    const rows = new Promise<Record<string, unknown>[]>((resolve) => (release = resolve));
    const started = rebuildAndFollow({
      feed,
      topic: registryChanges,
      log,
      rows: () => rows,
      toEvent: (row) => row,
      apply: (event) => view.apply(event),
      changed: (event) => followed.push(`${event.op}:${event.device}`),
    });
    // Published while the stored rows are still being read: newer than them, and not lost.
    await feed.publish(registryChanges, { op: "rotated", device: "tv-1", micros: T + 5, tokenHash: "new" });
    release([
      { op: "provisioned", device: "tv-1", micros: T, tokenHash: "old" },
      { op: "provisioned", device: "bad" },
      { op: "rotated", device: "tv-1", micros: T + 5, tokenHash: "new" },
    ]);
    const { stop, events } = await started;
    expect(events).toBe(2);
    expect(view.get("tv-1")).toMatchObject({ tokenHash: "new" });
    expect(view.get("bad")).toBeUndefined();
    expect(followed).toEqual(["rotated:tv-1"]);
    stop();
    await feed.publish(registryChanges, revoked("tv-1", T + 9));
    expect(view.get("tv-1")?.revoked).toBe(false);
  });
});
