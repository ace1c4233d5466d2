import { describe, expect, it } from "vitest";
import { ACTION_STATUSES, FINAL, answerable, nextStatus, undoable } from "../../actions/status.ts";

describe("the action lifecycle", () => {
  it("moves a proposed action to whatever its devices answer", () => {
    for (const status of ["delivered", "applied", "accepted", "declined", "failed", "expired", "undone"] as const)
      expect(nextStatus("proposed", status)).toBe(status);
    expect(nextStatus("delivered", "accepted")).toBe("accepted");
    expect(nextStatus("accepted", "applied")).toBe("applied");
  });

  it("never moves a finished action back, but an applied one can be undone", () => {
    for (const done of FINAL)
      for (const status of ACTION_STATUSES)
        expect(nextStatus(done, status)).toBe(done !== "undone" && status === "undone" ? "undone" : undefined);
  });

  it("keeps a delivery after the device answered, and a withdrawn delivery, out of the status", () => {
    expect(nextStatus("accepted", "delivered")).toBeUndefined();
    expect(nextStatus("delivered", "delivered")).toBeUndefined();
    for (const status of ACTION_STATUSES) expect(nextStatus(status, "withdrawn")).toBeUndefined();
  });

  it("lets only a waiting suggestion be answered, and only what is in effect be undone", () => {
    expect(answerable({ kind: "suggest", status: "delivered" })).toBe(true);
    expect(answerable({ kind: "suggest", status: "declined" })).toBe(false);
    expect(answerable({ kind: "set", status: "proposed" })).toBe(false);
    expect(undoable({ kind: "set", status: "delivered" })).toBe(true);
    expect(undoable({ kind: "clear", status: "undone" })).toBe(false);
    expect(undoable({ kind: "suggest", status: "applied" })).toBe(true);
    expect(undoable({ kind: "suggest", status: "declined" })).toBe(false);
    expect(undoable({ kind: "notify", status: "delivered" })).toBe(false);
  });
});
