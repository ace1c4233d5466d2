import { describe, expect, it } from "vitest";
import { createCatalogView, ruleChanges, type CatalogView, type RuleEvent } from "../../rules/catalog-view.ts";
import { expectIdempotent, expectOrderTolerant } from "../support/views.ts";

const T = 1_700_000_000_000_000;
const events: RuleEvent[] = [
  { op: "version", rule: "cool", micros: T, origin: "api", by: "admin", version: 1, text: "a" },
  { op: "disable", rule: "cool", micros: T + 1, origin: "api", by: "admin" },
  { op: "version", rule: "cool", micros: T + 2, origin: "api", by: "product", version: 2, text: "b" },
  { op: "disable", rule: "cool", micros: T + 3, origin: "api", by: "admin" },
  { op: "enable", rule: "cool", micros: T + 4, origin: "api", by: "admin" },
  { op: "version", rule: "gone", micros: T + 1, origin: "api", by: "admin", version: 1, text: "c" },
  { op: "delete", rule: "gone", micros: T + 5, origin: "api", by: "admin" },
  { op: "version", rule: "file", micros: T + 2, origin: "file", by: "file:x.yaml", version: 1, text: "d" },
];
const laws = {
  create: createCatalogView,
  apply: (view: CatalogView, event: RuleEvent) => view.apply(event),
  state: (view: CatalogView) =>
    ["cool", "gone", "file"].map((rule) => ({ history: view.history(rule), standing: view.standing(rule) })),
};

describe("rule catalog view", () => {
  it("stands on the newest version or deletion, with the newest toggle since", () => {
    const view = createCatalogView();
    for (const event of events) view.apply(event);
    const cool = view.standing("cool");
    expect(cool.last).toMatchObject({ version: 2, text: "b" });
    expect(cool.toggle).toMatchObject({ op: "enable" });
    expect(view.standing("gone")).toMatchObject({ last: { op: "delete" }, lastVersion: { version: 1 } });
    expect(view.standing("file").toggle).toBeUndefined();
    expect(view.history("cool").map((e) => e.micros)).toEqual([T, T + 1, T + 2, T + 3, T + 4]);
  });

  it("forgets a toggle made before a newer version", () => {
    const view = createCatalogView();
    for (const event of events.slice(0, 3)) view.apply(event);
    expect(view.standing("cool").toggle).toBeUndefined();
  });

  it("applies each event once, by its identity", () => expectIdempotent(laws, events));

  it("gives the same catalog whatever order the events arrive in", () => expectOrderTolerant(laws, events));

  it("names an event by rule and time, and refuses a version without its text", () => {
    expect(ruleChanges.identity(events[0]!)).toBe(`rules:cool:${T}`);
    expect(ruleChanges.schema.safeParse({ ...events[0], text: undefined }).success).toBe(false);
  });
});
