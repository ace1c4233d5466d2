import { describe, expect, it } from "vitest";
import { createRegistryView, registryChanges, type RegistryEvent, type RegistryView } from "../../registry/view.ts";
import { expectIdempotent, expectOrderTolerant } from "../support/views.ts";

const T = 1_700_000_000_000_000;
const events: RegistryEvent[] = [
  { op: "provisioned", device: "tv-1", micros: T, kind: "tv", tokenHash: "h1" },
  { op: "rotated", device: "tv-1", micros: T + 10, tokenHash: "h2" },
  { op: "rotated", device: "tv-1", micros: T + 20, tokenHash: "h3" },
  { op: "provisioned", device: "atm-1", micros: T + 1, tokenHash: "a1" },
  { op: "revoked", device: "atm-1", micros: T + 30 },
  { op: "revoked", device: "atm-1", micros: T + 40 },
  { op: "provisioned", device: "kiosk", micros: T + 2, kind: "kiosk", tokenHash: "k1" },
];
const laws = {
  create: createRegistryView,
  apply: (view: RegistryView, event: RegistryEvent) => view.apply(event),
  state: (view: RegistryView) => view.list(),
};

describe("registry view", () => {
  it("is what the events say: newest rotation's token, first revocation, provisioning order", () => {
    const view = createRegistryView();
    for (const event of events) view.apply(event);
    expect(view.list().map((d) => d.id)).toEqual(["tv-1", "atm-1", "kiosk"]);
    expect(view.get("tv-1")).toMatchObject({ kind: "tv", tokenHash: "h3", revoked: false });
    expect(view.get("tv-1")?.rotatedAt).toEqual(new Date((T + 20) / 1000));
    expect(view.get("atm-1")).toMatchObject({ revoked: true, revokedAt: new Date((T + 30) / 1000), tokenHash: "a1" });
    expect(view.get("ghost")).toBeUndefined();
  });

  it("applies each event once, by its identity", () => expectIdempotent(laws, events));

  it("gives the same devices whatever order the events arrive in", () => expectOrderTolerant(laws, events));

  it("does not list a device whose provisioning has not arrived yet", () => {
    const view = createRegistryView();
    view.apply({ op: "rotated", device: "late", micros: T + 5, tokenHash: "x" });
    expect(view.get("late")).toBeUndefined();
    view.apply({ op: "provisioned", device: "late", micros: T, tokenHash: "first" });
    expect(view.get("late")).toMatchObject({ tokenHash: "x" });
  });

  it("names an event the same way on every node: topic, device and time", () => {
    expect(registryChanges.identity(events[0]!)).toBe(`registry:tv-1:${T}`);
    expect(registryChanges.schema.safeParse({ op: "revoked", device: "tv-1" }).success).toBe(false);
    expect(registryChanges.schema.parse(JSON.parse(JSON.stringify(events[1])))).toEqual(events[1]);
  });
});
