import { describe, expect, it } from "vitest";
import { ActionBook } from "../../actions/book.ts";
import { ACTION_LOG_TOPIC, PROFILE_TOPIC, type ActionLogEvent, type ProfileEvent } from "../../actions/events.ts";
import { ProfileBook } from "../../actions/profiles.ts";

/** Everything a view answers, as plain data, so two views can be compared. */
const bookState = (book: ActionBook, owners: string[], subjects: string[]) => ({
  actions: [...book.actions.values()]
    .map((r) => ({ ...r, targets: [...r.targets].sort() }))
    .sort((a, b) => a.id.localeCompare(b.id)),
  guards: owners.map((owner) => ({
    owner,
    participation: book.participationOf(owner),
    prompt: book.lastPrompt(owner),
    fired: book.lastFired("large-type", owner),
    declined: book.declinedAt("large-type", owner),
  })),
  bySubject: subjects.map((s) =>
    book
      .of(s)
      .map((r) => r.id)
      .sort(),
  ),
});

const profileState = (profiles: ProfileBook, owners: Array<`device:${string}` | `subject:${string}`>) =>
  owners.map((owner) => ({ owner, profile: profiles.get(owner) }));

const apply = <E, V extends { apply(event: E): void }>(view: V, events: readonly E[]): V => {
  for (const event of events) view.apply(event);
  return view;
};

/** A deterministic shuffle, so a failure can be replayed. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i -= 1) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const T = 1_780_000_000_000_000;
const proposed = (action: string, device: string, micros: number, extra: Partial<ActionLogEvent> = {}) =>
  ACTION_LOG_TOPIC.schema.parse({
    action,
    status: "proposed",
    device,
    micros,
    rule: "large-type",
    kind: "suggest",
    key: "ui.font",
    owner: "subject:ann",
    why: "zooms in on every screen",
    value: JSON.stringify("large"),
    prompt: "Larger text?",
    subject: "ann",
    ...extra,
  });
const moved = (action: string, status: string, device: string, micros: number, extra: object = {}) =>
  ACTION_LOG_TOPIC.schema.parse({ action, status, device, micros, ...extra });

/** Three actions' lives: a suggestion accepted on a TV that reaches a phone, one declined, a set undone. */
function actionHistories(): ActionLogEvent[][] {
  return [
    [
      proposed("act_a", "tv", T + 1),
      moved("act_a", "delivered", "tv", T + 5),
      moved("act_a", "accepted", "tv", T + 9, { by: "subject:ann" }),
      moved("act_a", "applied", "tv", T + 10, { previous: JSON.stringify("normal") }),
    ],
    [
      proposed("act_b", "kiosk", T + 2, { owner: "subject:bob", subject: "bob" }),
      moved("act_b", "declined", "kiosk", T + 7, { reason: "not now" }),
    ],
    [
      proposed("act_c", "phone", T + 3, { kind: "set", owner: "device:phone", subject: undefined, prompt: undefined }),
      proposed("act_c", "watch", T + 4, { kind: "set", owner: "device:phone", subject: undefined, prompt: undefined }),
      moved("act_c", "delivered", "phone", T + 6),
      moved("act_c", "undone", "phone", T + 12, { by: "admin" }),
    ],
  ];
}

/** Interleaves the histories in a random order that keeps each action's own order (as any feed does). */
function interleaved(histories: ActionLogEvent[][], seed: number): ActionLogEvent[] {
  const order = shuffled(
    histories.flatMap((h, i) => h.map(() => i)),
    seed,
  );
  const next = histories.map(() => 0);
  return order.map((i) => histories[i]![next[i]!++]!);
}

const owners = ["subject:ann", "subject:bob", "device:phone"];
const subjects = ["ann", "bob"];

describe("the action book as a view of action log events", () => {
  it("answers each action's lifecycle, targets and guard memory from its events", () => {
    const book = apply(new ActionBook(), actionHistories().flat());
    expect(book.actions.get("act_a")).toMatchObject({ status: "applied", previous: "normal", value: "large" });
    expect(book.actions.get("act_b")?.status).toBe("declined");
    expect(book.actions.get("act_c")).toMatchObject({ status: "undone", targets: ["phone", "watch"] });
    expect(book.participationOf("subject:ann")).toMatchObject({ asks: 1, answers: 1, accepted: 1 });
    expect(book.declinedAt("large-type", "subject:bob")).toBe(Math.floor((T + 7) / 1000));
    expect(book.of("ann").map((r) => r.id)).toEqual(["act_a"]);
  });

  it("changes nothing when an event is applied a second time", () => {
    const events = actionHistories().flat();
    const once = apply(new ActionBook(), events);
    const twice = apply(
      new ActionBook(),
      events.flatMap((e) => [e, e]),
    );
    const again = apply(apply(new ActionBook(), events), events);
    expect(bookState(twice, owners, subjects)).toEqual(bookState(once, owners, subjects));
    expect(bookState(again, owners, subjects)).toEqual(bookState(once, owners, subjects));
    expect(once.actions.get("act_a")!.transitions).toHaveLength(4);
  });

  it("reaches the same state whatever the order of events of different actions", () => {
    const reference = bookState(apply(new ActionBook(), actionHistories().flat()), owners, subjects);
    for (let seed = 1; seed <= 25; seed += 1)
      expect(bookState(apply(new ActionBook(), interleaved(actionHistories(), seed)), owners, subjects)).toEqual(
        reference,
      );
  });

  it("keeps two declines of the same rule and owner as the later one, in either order", () => {
    const first = [proposed("act_x", "tv", T + 1), moved("act_x", "declined", "tv", T + 3_000_000)];
    const second = [proposed("act_y", "tv", T + 2), moved("act_y", "declined", "tv", T + 9_000_000)];
    const a = apply(new ActionBook(), [...first, ...second]);
    const b = apply(new ActionBook(), [...second, ...first]);
    expect(a.declinedAt("large-type", "subject:ann")).toBe(Math.floor((T + 9_000_000) / 1000));
    expect(b.declinedAt("large-type", "subject:ann")).toBe(a.declinedAt("large-type", "subject:ann"));
  });

  it("refuses an event that is not an action log change", () => {
    expect(
      ACTION_LOG_TOPIC.schema.safeParse({ action: "act_a", status: "lost", device: "tv", micros: T }).success,
    ).toBe(false);
    expect(ACTION_LOG_TOPIC.identity(moved("act_a", "delivered", "tv", T))).toBe(`act_a|delivered|tv|${T}`);
  });
});

const change = (owner: string, key: string, op: "set" | "clear", value: unknown, micros: number): ProfileEvent =>
  PROFILE_TOPIC.schema.parse({
    owner,
    key,
    op,
    action: `act_${micros}`,
    micros,
    ...(op === "set" ? { value: JSON.stringify(value) } : {}),
  });

function profileHistories(): ProfileEvent[][] {
  return [
    [change("subject:ann", "ui.font", "set", "large", T + 1), change("subject:ann", "ui.font", "clear", null, T + 8)],
    [change("subject:ann", "home.first", "set", "shares", T + 2)],
    [
      change("device:atm-1", "amount.first", "set", 100, T + 3),
      change("device:atm-1", "amount.first", "set", 50, T + 4),
    ],
    [change("subject:bob", "menu.delivery", "set", false, T + 5)],
  ];
}
const profileOwners = ["subject:ann", "device:atm-1", "subject:bob"] as const;

describe("profiles as a view of profile change events", () => {
  it("answers each owner's keys after their changes", () => {
    const profiles = apply(new ProfileBook(), profileHistories().flat());
    expect(profileState(profiles, [...profileOwners])).toEqual([
      { owner: "subject:ann", profile: { "home.first": "shares" } },
      { owner: "device:atm-1", profile: { "amount.first": 50 } },
      { owner: "subject:bob", profile: { "menu.delivery": false } },
    ]);
    expect(profiles.size).toBe(3);
  });

  it("changes nothing when a change is applied a second time, also after a later one", () => {
    const events = profileHistories().flat();
    const once = profileState(apply(new ProfileBook(), events), [...profileOwners]);
    expect(
      profileState(
        apply(
          new ProfileBook(),
          events.flatMap((e) => [e, e]),
        ),
        [...profileOwners],
      ),
    ).toEqual(once);
    expect(profileState(apply(apply(new ProfileBook(), events), events), [...profileOwners])).toEqual(once);
  });

  it("reaches the same profiles whatever the order of changes of different owners and keys", () => {
    const reference = profileState(apply(new ProfileBook(), profileHistories().flat()), [...profileOwners]);
    for (let seed = 1; seed <= 25; seed += 1)
      expect(
        profileState(apply(new ProfileBook(), shuffled(profileHistories().flat(), seed)), [...profileOwners]),
      ).toEqual(reference);
  });

  it("forgets an erased owner and leaves an owner with no keys without a profile", () => {
    const profiles = apply(new ProfileBook(), profileHistories().flat());
    profiles.forget("subject:bob");
    expect(profiles.get("subject:bob")).toBeUndefined();
    const cleared = apply(new ProfileBook(), profileHistories()[0]!);
    expect(cleared.get("subject:ann")).toBeUndefined();
    expect(cleared.size).toBe(0);
  });
});
