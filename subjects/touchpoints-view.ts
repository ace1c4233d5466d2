import { z } from "zod";
import { topic, type View } from "../changes/index.ts";
import { microsToMs } from "../store/clock.ts";

export const LINKS = "subject_links";
export const SESSIONS = "subject_sessions";

const name = z.string().min(1);
const micros = z.number().int().positive();

/** A device linked to or unlinked from a subject: a row of `subject_links`, and what the feed carries. */
export const linkEvent = z.object({
  op: z.enum(["linked", "unlinked"]),
  device: name,
  subject: name,
  by: z.string(),
  micros,
});
export type LinkEvent = z.infer<typeof linkEvent>;
export const linkChanges = topic<LinkEvent>(LINKS, linkEvent, (e) => `${LINKS}:${e.device}:${e.micros}`);

/** A shared device's session start or end, at the device's own `ts` (ms), as ingest stored it in `events`. */
export const sessionEvent = z.object({
  op: z.enum(["start", "end"]),
  device: name,
  subject: name.optional(),
  ts: z.number().int().positive(),
});
export type SessionEvent = z.infer<typeof sessionEvent>;
export const sessionChanges = topic<SessionEvent>(
  SESSIONS,
  sessionEvent,
  (e) => `${SESSIONS}:${e.device}:${e.ts * 1000}:${e.op}`,
);

export interface Link {
  device: string;
  subject: string;
  since: Date;
  by: string;
}

export interface TouchpointSession {
  device: string;
  subject: string;
  /** When the session started (the device's `ts`). */
  since: Date;
}

export interface LinkView extends View<LinkEvent> {
  get(device: string): Link | undefined;
  all(): Link[];
  /** Erasure: the subject's links are gone, and older events of those devices stay without effect. */
  forgetSubject(subject: string): string[];
}

/**
 * A device's link is its newest `linked` event unless an `unlinked` of the
 * same subject came after it; keeping the newest of each, per device, makes
 * any order and any replay of the events give the same links.
 */
export function linkView(): LinkView {
  const linked = new Map<string, LinkEvent>();
  // device -> subject -> micros of its newest unlink
  const unlinked = new Map<string, Map<string, number>>();
  const floor = new Map<string, number>();

  const get = (device: string): Link | undefined => {
    const link = linked.get(device);
    if (!link) return undefined;
    const undone = unlinked.get(device)?.get(link.subject);
    if (undone !== undefined && undone > link.micros) return undefined;
    return { device, subject: link.subject, since: new Date(microsToMs(link.micros)), by: link.by };
  };

  return {
    apply(event) {
      if (event.micros <= (floor.get(event.device) ?? 0)) return;
      if (event.op === "linked") {
        const newest = linked.get(event.device);
        if (!newest || newest.micros < event.micros) linked.set(event.device, event);
        return;
      }
      const bySubject = unlinked.get(event.device) ?? new Map<string, number>();
      unlinked.set(event.device, bySubject);
      bySubject.set(event.subject, Math.max(bySubject.get(event.subject) ?? 0, event.micros));
    },
    get,
    all: () => [...linked.keys()].map(get).filter((l): l is Link => l !== undefined),
    forgetSubject(subject) {
      const devices: string[] = [];
      for (const [device, link] of linked) {
        if (link.subject !== subject) continue;
        devices.push(device);
        floor.set(device, link.micros);
        linked.delete(device);
        unlinked.delete(device);
      }
      for (const bySubject of unlinked.values()) bySubject.delete(subject);
      return devices;
    },
  };
}

export interface SessionView extends View<SessionEvent> {
  /** The device's session by its events alone; whether it ran out is the caller's (it depends on now). */
  get(device: string): TouchpointSession | undefined;
  devices(): string[];
  /** Ends the device's session as of its start (ran out, or erased): older events stay without effect. */
  drop(device: string): void;
}

/**
 * A device's session is its newest start, unless an end of the same subject
 * (or of no subject) at or after it came. Events older than `ttlMs` are
 * history, not sessions. Newest-wins per kind makes order and replays moot.
 */
export function sessionView(config: { ttlMs: number; now?: () => number }): SessionView {
  const now = config.now ?? Date.now;
  const starts = new Map<string, SessionEvent>();
  // device -> subject ('' for an end naming nobody) -> ts of its newest end
  const ends = new Map<string, Map<string, number>>();
  const floor = new Map<string, number>();

  const get = (device: string): TouchpointSession | undefined => {
    const start = starts.get(device);
    if (!start?.subject) return undefined;
    const bySubject = ends.get(device);
    const ended = Math.max(bySubject?.get(start.subject) ?? 0, bySubject?.get("") ?? 0);
    if (ended >= start.ts) return undefined;
    return { device, subject: start.subject, since: new Date(start.ts) };
  };

  return {
    apply(event) {
      if (now() - event.ts >= config.ttlMs || event.ts <= (floor.get(event.device) ?? 0)) return;
      const start = starts.get(event.device);
      if (event.op === "start") {
        if (start && start.ts >= event.ts) return;
        starts.set(event.device, event);
        // Ends before the newest start can no longer matter.
        const bySubject = ends.get(event.device);
        for (const [subject, ts] of bySubject ?? []) if (ts < event.ts) bySubject?.delete(subject);
        return;
      }
      if (start && event.ts < start.ts) return;
      const bySubject = ends.get(event.device) ?? new Map<string, number>();
      ends.set(event.device, bySubject);
      const key = event.subject ?? "";
      bySubject.set(key, Math.max(bySubject.get(key) ?? 0, event.ts));
    },
    get,
    devices: () => [...starts.keys()],
    drop(device) {
      const start = starts.get(device);
      if (start) floor.set(device, start.ts);
      starts.delete(device);
      ends.delete(device);
    },
  };
}
