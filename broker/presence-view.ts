import { z } from "zod";
import { topic, type View } from "../changes/index.ts";
import { microsToMs } from "../store/clock.ts";
import { PRESENCE } from "./queries.ts";

export { PRESENCE };

const device = z.string().min(1);
const micros = z.number().int().positive();

/**
 * A device's presence changes: a session opened or closed, a last will, with
 * the device's open connections after it. `seen` is activity (a stored row
 * at a rebuild, a publish) that only moves first and last seen.
 */
export const presenceEvent = z.discriminatedUnion("op", [
  z.object({
    op: z.enum(["connect", "disconnect", "will"]),
    device,
    micros,
    connections: z.number().int().nonnegative(),
    reason: z.string().optional(),
    transport: z.string().optional(),
  }),
  z.object({ op: z.literal("seen"), device, micros }),
]);
export type PresenceChange = z.infer<typeof presenceEvent>;

export const presenceChanges = topic<PresenceChange>(
  PRESENCE,
  presenceEvent,
  (e) => `${PRESENCE}:${e.device}:${e.micros}:${e.op}`,
);

export interface DevicePresence {
  connections: number;
  lastSeen: number | undefined;
  firstSeen: number | undefined;
  changedAt: number | undefined;
}

export interface PresenceStateView extends View<PresenceChange> {
  get(device: string): DevicePresence;
  readonly size: number;
}

/**
 * Per device: the earliest and latest activity, and the newest change (its
 * time and connections after it). Min, max and newest-wins make a replay and
 * any order of events give the same state.
 */
export function presenceView(): PresenceStateView {
  const seen = new Map<string, { first: number; last: number }>();
  const changed = new Map<string, { micros: number; connections: number }>();
  return {
    apply(event) {
      const times = seen.get(event.device);
      seen.set(event.device, {
        first: Math.min(times?.first ?? event.micros, event.micros),
        last: Math.max(times?.last ?? event.micros, event.micros),
      });
      if (event.op === "seen") return;
      const newest = changed.get(event.device);
      if (!newest || newest.micros < event.micros)
        changed.set(event.device, { micros: event.micros, connections: event.connections });
    },
    get(device) {
      const times = seen.get(device);
      const change = changed.get(device);
      const ms = (m: number | undefined) => (m === undefined ? undefined : microsToMs(m));
      return {
        connections: change?.connections ?? 0,
        lastSeen: ms(times?.last),
        firstSeen: ms(times?.first),
        changedAt: ms(change?.micros),
      };
    },
    get size() {
      return seen.size;
    },
  };
}
