import { describe, expect, it } from "vitest";
import { tokenChanges, tokenView, type TokenEvent, type TokenView } from "../../subjects/tokens-view.ts";
import {
  linkChanges,
  linkView,
  sessionChanges,
  sessionView,
  type LinkEvent,
  type LinkView,
  type SessionEvent,
  type SessionView,
} from "../../subjects/touchpoints-view.ts";
import { expectFeedable } from "../support/views.ts";

const T0 = 1_780_000_000_000_000; // micros

const tokensOf = (view: TokenView) => [...view.all()].sort((a, b) => a.id.localeCompare(b.id));
const linksOf = (view: LinkView) => view.all().sort((a, b) => a.device.localeCompare(b.device));
const sessionsOf = (view: SessionView) =>
  view
    .devices()
    .map((d) => view.get(d))
    .filter((s) => s !== undefined)
    .sort((a, b) => a.device.localeCompare(b.device));

describe("subject tokens view", () => {
  const issued = (token: string, subject: string, micros: number): TokenEvent => ({
    op: "issued",
    token,
    subject,
    hash: `scrypt$${token}`,
    label: "phone",
    by: "admin",
    micros,
  });
  const revoked = (token: string, subject: string, micros: number): TokenEvent => ({
    op: "revoked",
    token,
    subject,
    by: "customer",
    micros,
  });
  const events = [
    issued("stk_1", "a", T0),
    issued("stk_2", "a", T0 + 1),
    revoked("stk_1", "a", T0 + 2),
    issued("stk_3", "b", T0 + 3),
    revoked("stk_3", "b", T0 + 4),
    revoked("stk_3", "b", T0 + 9), // a second revocation does not move the first one's time
    issued("stk_4", "c", T0 + 5),
  ];

  it("is idempotent and order-tolerant: a revocation holds even when it arrives before the issue", () => {
    const state = expectFeedable(tokenChanges, tokenView, tokensOf, events) as ReturnType<typeof tokensOf>;
    expect(state.map((t) => [t.id, t.subject, t.revokedAt?.getTime()])).toEqual([
      ["stk_1", "a", Math.floor((T0 + 2) / 1000)],
      ["stk_2", "a", undefined],
      ["stk_3", "b", Math.floor((T0 + 4) / 1000)],
      ["stk_4", "c", undefined],
    ]);
  });

  it("forgets an erased subject's tokens, and a replay of their events does not bring them back", () => {
    const view = tokenView();
    for (const e of events) view.apply(e);
    view.forgetSubject("a");
    for (const e of events) view.apply(e);
    expect(tokensOf(view).map((t) => t.id)).toEqual(["stk_3", "stk_4"]);
  });
});

describe("subject links view", () => {
  const ev = (op: LinkEvent["op"], device: string, subject: string, micros: number): LinkEvent => ({
    op,
    device,
    subject,
    by: "admin",
    micros,
  });
  const events = [
    ev("linked", "phone", "a", T0),
    ev("unlinked", "phone", "a", T0 + 1),
    ev("linked", "phone", "c", T0 + 2), // relinked to someone else
    ev("linked", "tablet", "a", T0 + 3),
    ev("unlinked", "tablet", "z", T0 + 4), // someone else's unlink leaves a's link alone
    ev("linked", "watch", "b", T0 + 5),
    ev("unlinked", "watch", "b", T0 + 6),
  ];

  it("is idempotent and order-tolerant: the newest link of each device wins unless its subject was unlinked after", () => {
    const state = expectFeedable(linkChanges, linkView, linksOf, events) as ReturnType<typeof linksOf>;
    expect(state.map((l) => [l.device, l.subject, l.since.getTime()])).toEqual([
      ["phone", "c", Math.floor((T0 + 2) / 1000)],
      ["tablet", "a", Math.floor((T0 + 3) / 1000)],
    ]);
  });

  it("forgets an erased subject's links; their older events replayed change nothing, a newer link counts", () => {
    const view = linkView();
    for (const e of events) view.apply(e);
    expect(view.forgetSubject("a")).toEqual(["tablet"]);
    for (const e of events) view.apply(e);
    expect(linksOf(view).map((l) => l.device)).toEqual(["phone"]);
    view.apply(ev("linked", "tablet", "d", T0 + 10));
    expect(view.get("tablet")?.subject).toBe("d");
  });
});

describe("shared-device sessions view", () => {
  const now = 1_780_000_000_000; // ms
  const ev = (op: SessionEvent["op"], device: string, subject: string | undefined, ts: number): SessionEvent => ({
    op,
    device,
    ...(subject ? { subject } : {}),
    ts,
  });
  const make = () => sessionView({ ttlMs: 60_000, now: () => now });
  const events = [
    ev("start", "atm", "x", now - 5000),
    ev("end", "atm", "y", now - 4000), // someone else's end does not end x's session
    ev("end", "atm", "x", now - 6000), // an end from before the start neither
    ev("start", "kiosk", "k", now - 5000),
    ev("end", "kiosk", "k", now - 3000),
    ev("start", "tv", "t", now - 9000),
    ev("start", "tv", undefined, now - 2000), // an anonymous session replaces it
    ev("start", "lobby", "l", now - 1000),
    ev("start", "old", "o", now - 120_000), // older than the TTL: history, not a session
  ];

  it("is idempotent and order-tolerant: an end counts for the start it follows, whichever arrives first", () => {
    const state = expectFeedable(sessionChanges, make, sessionsOf, events) as ReturnType<typeof sessionsOf>;
    expect(state.map((s) => [s.device, s.subject])).toEqual([
      ["atm", "x"],
      ["lobby", "l"],
    ]);
  });

  it("a session dropped (ran out, erased) stays dropped when its events are replayed", () => {
    const view = make();
    for (const e of events) view.apply(e);
    view.drop("atm");
    for (const e of events) view.apply(e);
    expect(sessionsOf(view).map((s) => s.device)).toEqual(["lobby"]);
  });
});
