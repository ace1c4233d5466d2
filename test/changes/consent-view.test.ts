import { describe, expect, it } from "vitest";
import {
  consentChanges,
  createConsentView,
  purposes,
  type ConsentEvent,
  type ConsentStateView,
} from "../../consent/view.ts";
import { expectIdempotent, expectOrderTolerant } from "../support/views.ts";

const T = 1_700_000_000_000_000;
const events: ConsentEvent[] = [
  { op: "granted", subject: "cust-1", purpose: "analytics", by: "admin", micros: T },
  { op: "withdrawn", subject: "cust-1", purpose: "analytics", by: "customer", micros: T + 10 },
  { op: "granted", subject: "cust-1", purpose: "personalization", by: "customer", micros: T + 5 },
  { op: "granted", subject: "cust-2", purpose: "feedback", by: "admin", micros: T + 1 },
  { op: "withdrawn", subject: "cust-2", purpose: "feedback", by: "admin", micros: T + 2 },
  { op: "granted", subject: "cust-2", purpose: "feedback", by: "customer", micros: T + 3 },
  { op: "granted", subject: "cust-3", purpose: "analytics", by: "admin", micros: T + 4 },
];
const subjects = ["cust-1", "cust-2", "cust-3"];
const laws = {
  create: createConsentView,
  apply: (view: ConsentStateView, event: ConsentEvent) => view.apply(event),
  state: (view: ConsentStateView) =>
    subjects.map((s) => ({
      granted: purposes.map((p) => view.granted(s, p)),
      history: view.history(s),
    })),
};

describe("consent view", () => {
  it("answers with the newest event per subject and purpose and keeps the history in time order", () => {
    const view = createConsentView();
    for (const event of [...events].reverse()) view.apply(event);
    expect(view.granted("cust-1", "analytics")).toBe(false);
    expect(view.granted("cust-1", "personalization")).toBe(true);
    expect(view.granted("cust-1", "feedback")).toBeUndefined();
    expect(view.granted("cust-2", "feedback")).toBe(true);
    expect(view.history("cust-1").map((c) => [c.purpose, c.granted, c.by])).toEqual([
      ["analytics", true, "admin"],
      ["personalization", true, "customer"],
      ["analytics", false, "customer"],
    ]);
  });

  it("applies each event once, by its identity", () => expectIdempotent(laws, events));

  it("gives the same consent whatever order the events arrive in", () => expectOrderTolerant(laws, events));

  it("forgets an erased subject entirely and leaves the others", () => {
    const view = createConsentView();
    for (const event of events) view.apply(event);
    view.forget("cust-1");
    expect(view.granted("cust-1", "personalization")).toBeUndefined();
    expect(view.history("cust-1")).toEqual([]);
    expect(view.granted("cust-3", "analytics")).toBe(true);
  });

  it("names an event by subject, purpose and time, and refuses a purpose nobody can opt in to", () => {
    expect(consentChanges.identity(events[0]!)).toBe(`consent:cust-1:analytics:${T}`);
    expect(consentChanges.schema.safeParse({ ...events[0], purpose: "marketing" }).success).toBe(false);
  });
});
