import { expect } from "vitest";
import type { Topic, View } from "../../changes/index.ts";

/** A deterministic shuffle (mulberry32), so a failing order can be replayed by its seed. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  let s = seed >>> 0;
  const random = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * What every view owes the feed: its events survive a trip as JSON through
 * the topic's schema (another node's feed carries them so), applying each
 * event twice (or the whole stream again) equals applying it once, and the
 * events in any order give the same state.
 */
export function expectFeedable<E, V extends View<E>>(
  topic: Topic<E>,
  make: () => V,
  state: (view: V) => unknown,
  events: readonly E[],
  orders = 25,
): unknown {
  for (const event of events) expect(topic.schema.parse(JSON.parse(JSON.stringify(event)))).toEqual(event);
  const identities = new Set(events.map((e) => topic.identity(e)));
  expect(identities.size, "every event has an identity of its own").toBe(events.length);

  const once = make();
  for (const event of events) once.apply(event);
  const expected = state(once);

  const twice = make();
  for (const event of events) {
    twice.apply(event);
    twice.apply(event);
  }
  expect(state(twice)).toEqual(expected);
  for (const event of shuffled(events, 7)) twice.apply(event);
  expect(state(twice)).toEqual(expected);

  for (let seed = 1; seed <= orders; seed++) {
    const view = make();
    for (const event of shuffled(events, seed)) view.apply(event);
    expect(state(view), `order of seed ${seed}`).toEqual(expected);
  }
  return expected;
}

/** A view whose `apply` answers whether the event was new to it. */
export interface Laws<E, V> {
  create(): V;
  apply(view: V, event: E): boolean;
  /** Everything a caller can read of the view, as plain data. */
  state(view: V): unknown;
}

const build = <E, V>(laws: Laws<E, V>, events: readonly E[], twice = false): V => {
  const view = laws.create();
  for (const event of events) {
    laws.apply(view, event);
    if (twice) laws.apply(view, event);
  }
  return view;
};

/** Applying each event twice equals applying it once, and a repeat answers that it was not new. */
export function expectIdempotent<E, V>(laws: Laws<E, V>, events: readonly E[]): void {
  const once = laws.state(build(laws, events));
  expect(laws.state(build(laws, events, true))).toEqual(once);
  const view = build(laws, events);
  for (const event of events) expect(laws.apply(view, event)).toBe(false);
  expect(laws.state(view)).toEqual(once);
}

/** The same events in many orders give the same state. */
export function expectOrderTolerant<E, V>(laws: Laws<E, V>, events: readonly E[]): void {
  const inOrder = laws.state(build(laws, events));
  for (let seed = 1; seed <= 25; seed++) expect(laws.state(build(laws, shuffled(events, seed)))).toEqual(inOrder);
}
