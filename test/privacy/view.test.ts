import { describe, expect, it } from "vitest";
import { localChangeFeed } from "../../changes/local.ts";
import { pino } from "pino";
import {
  erasureChanges,
  erasureView,
  followErasures,
  type ErasureEvent,
  type ErasureView,
} from "../../privacy/erasures.ts";
import { subjectHash } from "../../privacy/erase.ts";
import { tokenChanges, tokenView } from "../../subjects/tokens-view.ts";
import { linkChanges, linkView } from "../../subjects/touchpoints-view.ts";
import { expectFeedable } from "../support/views.ts";

const T0 = 1_780_000_000_000_000; // micros

describe("erasures view", () => {
  const recorded = (erasure: string, subject: string, micros: number): ErasureEvent => ({
    op: "recorded",
    erasure,
    subjectHash: subjectHash(subject, `salt-${erasure}`),
    salt: `salt-${erasure}`,
    by: "admin",
    points: 3,
    micros,
  });
  const events: ErasureEvent[] = [
    { op: "started", erasure: "era_1", subject: "a", micros: T0 },
    { op: "forget", erasure: "era_1", subject: "a", micros: T0 + 1 },
    recorded("era_1", "a", T0 + 2),
    { op: "started", erasure: "era_2", subject: "b", micros: T0 + 3 },
    { op: "forget", erasure: "era_2", subject: "b", micros: T0 + 4 },
    { op: "started", erasure: "era_3", subject: "c", micros: T0 + 5 },
    recorded("era_0", "z", T0 - 10), // an old one read back at a rebuild
  ];
  const state = (view: ErasureView) => ({ records: view.records(), underway: view.underway().sort() });

  it("is idempotent and order-tolerant: each erasure is at its furthest step, and a finished one no longer names its subject", () => {
    const out = expectFeedable(erasureChanges, erasureView, state, events) as ReturnType<typeof state>;
    expect(out.records.map((r) => r.erasure)).toEqual(["era_0", "era_1"]);
    expect(out.records[1]!.subjectHash).toBe(subjectHash("a", "salt-era_1"));
    expect(out.underway).toEqual(["b", "c"]);
  });

  it("an erasure's steps on the feed make the views forget the subject, once or replayed", async () => {
    const feed = localChangeFeed(pino({ level: "silent" }));
    const tokens = tokenView();
    const links = linkView();
    const forgotten: string[] = [];
    feed.subscribe(tokenChanges, (e) => tokens.apply(e));
    feed.subscribe(linkChanges, (e) => links.apply(e));
    followErasures(
      feed,
      {
        consent: { forgetSubject: (s) => forgotten.push(`consent:${s}`) },
        tokens,
        touchpoints: links,
        actions: { forgetSubject: (s) => forgotten.push(`actions:${s}`) },
        rules: {
          forgetSubject: (s) => {
            forgotten.push(`rules:${s}`);
            return Promise.resolve();
          },
        },
        ingest: { flush: () => Promise.resolve(), spoolDepth: { points: 0 } },
      },
      "node-1",
      pino({ level: "silent" }),
    );
    await feed.publish(tokenChanges, { op: "issued", token: "stk_a", subject: "a", hash: "h", by: "x", micros: T0 });
    await feed.publish(tokenChanges, {
      op: "issued",
      token: "stk_b",
      subject: "b",
      hash: "h",
      by: "x",
      micros: T0 + 1,
    });
    await feed.publish(linkChanges, { op: "linked", device: "phone", subject: "a", by: "x", micros: T0 + 2 });

    await feed.publish(erasureChanges, { op: "started", erasure: "era_1", subject: "a", micros: T0 + 3 });
    expect([...tokens.all()].map((t) => t.id)).toEqual(["stk_b"]);
    expect(links.get("phone")?.subject).toBe("a"); // in-flight messages land before the views forget
    await feed.publish(erasureChanges, { op: "forget", erasure: "era_1", subject: "a", micros: T0 + 4 });
    await feed.publish(erasureChanges, { op: "forget", erasure: "era_1", subject: "a", micros: T0 + 4 });
    expect(links.get("phone")).toBeUndefined();
    expect([...tokens.all()].map((t) => t.id)).toEqual(["stk_b"]);
    // The erasing node forgets the rules' windows itself, after InfluxDB; another node's owner of them, on the step.
    expect(forgotten).toEqual(["consent:a", "actions:a", "actions:a"]);
    await feed.deliver(erasureChanges, { op: "forget", erasure: "era_2", subject: "c", micros: T0 + 5 }, "elsewhere");
    expect(forgotten).toEqual(["consent:a", "actions:a", "actions:a", "actions:c", "rules:c"]);
  });
});
