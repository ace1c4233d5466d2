import { describe, expect, it } from "vitest";
import {
  presenceChanges,
  presenceView,
  type PresenceChange,
  type PresenceStateView,
} from "../../broker/presence-view.ts";
import { expectFeedable } from "../support/views.ts";

const T0 = 1_780_000_000_000_000; // micros
const ms = (micros: number) => Math.floor(micros / 1000);

describe("presence view", () => {
  const change = (op: "connect" | "disconnect" | "will", device: string, micros: number, connections: number) =>
    ({ op, device, micros, connections, transport: "tcp" }) as PresenceChange;
  const events: PresenceChange[] = [
    { op: "seen", device: "tv", micros: T0 - 50_000_000 }, // its first stored event, read at a rebuild
    change("connect", "tv", T0, 1),
    change("connect", "tv", T0 + 1000, 2),
    change("disconnect", "tv", T0 + 2000, 1),
    change("connect", "atm", T0 + 500, 1),
    change("disconnect", "atm", T0 + 1500, 0),
    change("will", "atm", T0 + 1600, 0),
    { op: "seen", device: "atm", micros: T0 + 9000 }, // a publish after
  ];
  const state = (view: PresenceStateView) => ({ tv: view.get("tv"), atm: view.get("atm"), none: view.get("none") });

  it("is idempotent and order-tolerant: connections follow the newest change, first and last seen the extremes", () => {
    expect(expectFeedable(presenceChanges, presenceView, state, events)).toEqual({
      tv: { connections: 1, firstSeen: ms(T0 - 50_000_000), lastSeen: ms(T0 + 2000), changedAt: ms(T0 + 2000) },
      atm: { connections: 0, firstSeen: ms(T0 + 500), lastSeen: ms(T0 + 9000), changedAt: ms(T0 + 1600) },
      none: { connections: 0, firstSeen: undefined, lastSeen: undefined, changedAt: undefined },
    });
  });
});
