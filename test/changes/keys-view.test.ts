import { describe, expect, it } from "vitest";
import { createKeysView, keyChanges, type KeyEvent, type KeysView } from "../../keys/view.ts";
import { expectIdempotent, expectOrderTolerant } from "../support/views.ts";

const T = 1_700_000_000_000_000;
const created = (key: string, micros: number, extra: Partial<KeyEvent> = {}): KeyEvent => ({
  op: "created",
  key,
  micros,
  name: `key ${key}`,
  role: "support",
  tokenHash: `h-${key}`,
  by: "admin",
  ...extra,
});
const events: KeyEvent[] = [
  created("k-0000000001", T),
  created("k-0000000002", T + 1, { role: "product", expiresAt: 1_800_000_000_000 }),
  { op: "revoked", key: "k-0000000001", micros: T + 10, by: "admin" },
  { op: "revoked", key: "k-0000000001", micros: T + 20, by: "other-admin" },
  created("k-0000000003", T + 2, { role: "admin" }),
];
const laws = {
  create: createKeysView,
  apply: (view: KeysView, event: KeyEvent) => view.apply(event),
  state: (view: KeysView) => view.list(),
};

describe("keys view", () => {
  it("is what the events say: the first revocation counts, expiry comes from the creation", () => {
    const view = createKeysView();
    for (const event of events) view.apply(event);
    expect(view.list().map((k) => k.id)).toEqual(["k-0000000001", "k-0000000002", "k-0000000003"]);
    expect(view.get("k-0000000001")).toMatchObject({ revokedAt: new Date((T + 10) / 1000), revokedBy: "admin" });
    expect(view.get("k-0000000002")).toMatchObject({
      role: "product",
      expiresAt: new Date(1_800_000_000_000),
      revokedAt: undefined,
    });
  });

  it("applies each event once, by its identity", () => expectIdempotent(laws, events));

  it("gives the same keys whatever order the events arrive in", () => expectOrderTolerant(laws, events));

  it("keeps a key id taken once any event names it, even before its creation arrives", () => {
    const view = createKeysView();
    view.apply({ op: "revoked", key: "k-00000000ff", micros: T, by: "admin" });
    expect(view.has("k-00000000ff")).toBe(true);
    expect(view.get("k-00000000ff")).toBeUndefined();
    expect(keyChanges.identity(events[2]!)).toBe(`keys:k-0000000001:${T + 10}`);
  });
});
