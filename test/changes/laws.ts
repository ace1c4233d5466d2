import { expect } from "vitest";

/** Deterministic shuffles (a small LCG), so a failing order can be reproduced from its seed. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

interface Laws<E, V> {
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
