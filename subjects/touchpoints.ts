import type { Logger } from "pino";
import type { DeviceMessage } from "../ingest/index.ts";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { provisionedLinks } from "../registry/queries.ts";
import { sessionEvents } from "../ingest/queries.ts";
import { ident, influxql } from "../store/influxql.ts";

export const LINKS = "subject_links";
const SESSION_START = "session_start";
const SESSION_END = "session_end";

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

/** The customer a device serves changed (a link, a session start or end): its `state` must follow. */
export interface TouchpointChange {
  device: string;
  before: string | undefined;
  after: string | undefined;
}

/**
 * Where each customer is. A device or app install is either linked to one
 * subject (a phone app), or shared (an ATM, a kiosk, a TV) and serves the
 * subject of its current session, from `event:session_start` to
 * `event:session_end`, the next session start, or `sessionTtlMs`, whichever
 * comes first. A session's subject wins over a link while it lasts.
 */
export interface Touchpoints {
  subjectOf(device: string): string | undefined;
  linkedSubject(device: string): string | undefined;
  /** Every device that serves the subject: linked ones and shared ones in a session with them now. */
  devicesOf(subject: string): string[];
  linksOf(subject: string): Link[];
  sessionsOf(subject: string): TouchpointSession[];
  /** Links a device to a subject (a device has at most one; a new link replaces the old one). Resolves once stored. */
  link(device: string, subject: string, by: string): Promise<void>;
  /** Unlinks a device; answers the subject it was linked to, if any. */
  unlink(device: string, by: string): Promise<string | undefined>;
  /** Follows session starts and ends (the messages ingest stored). */
  observe(msg: DeviceMessage): void;
  onChange(listener: (change: TouchpointChange) => void): () => void;
  /** Erasure: forgets the subject's links and sessions in memory (InfluxDB is erased apart); answers the devices that served them. */
  forgetSubject(subject: string): string[];
  close(): Promise<void>;
}

export async function startTouchpoints(
  config: { sessionTtlMs: number },
  deps: { store: Store; log: Logger },
): Promise<Touchpoints> {
  const log = deps.log.child({ part: "subjects" });
  const links = new Map<string, Link>();
  const sessions = new Map<string, TouchpointSession>();
  const listeners = new Set<(change: TouchpointChange) => void>();

  // Devices provisioned before links had a measurement of their own carry the subject in device_registry.
  const legacy = await deps.store.query<{ time: Date; device: string; subject: string }>(provisionedLinks());
  const rows = await deps.store.query<{ time: Date; device: string; subject: string; op: string; by?: string }>(
    influxql`SELECT * FROM ${ident(LINKS)}`,
  );
  const history = [...legacy.map((r) => ({ ...r, op: "linked", by: "provisioning" })), ...rows].sort(
    (a, b) => a.time.getTime() - b.time.getTime(),
  );
  for (const row of history) {
    if (row.op === "linked")
      links.set(row.device, { device: row.device, subject: row.subject, since: row.time, by: row.by ?? "unknown" });
    else if (links.get(row.device)?.subject === row.subject) links.delete(row.device);
  }
  const since = Date.now() - config.sessionTtlMs;
  const open = await deps.store.query<{ time: Date; device: string; event: string; subject?: string }>(
    sessionEvents(SESSION_START, SESSION_END, since),
  );
  for (const row of open) follow(row.device, row.event, row.subject ?? undefined, row.time.getTime(), false);
  log.info({ links: links.size, sessions: sessions.size }, "links and open sessions rebuilt from InfluxDB");

  const subjectOf = (device: string) => current(device)?.subject ?? links.get(device)?.subject;

  function current(device: string): TouchpointSession | undefined {
    const session = sessions.get(device);
    if (session && Date.now() - session.since.getTime() >= config.sessionTtlMs) return undefined;
    return session;
  }

  function announce(device: string, before: string | undefined) {
    const after = subjectOf(device);
    if (after === before) return;
    for (const listener of listeners) {
      try {
        listener({ device, before, after });
      } catch (err) {
        log.error({ device, err: (err as Error).message }, "touchpoint change listener failed");
      }
    }
  }

  /** Applies a session start or end of the device's own clock; stale and replayed messages change nothing. */
  function follow(device: string, event: string, subject: string | undefined, ts: number, live: boolean) {
    if (Date.now() - ts >= config.sessionTtlMs) return;
    const session = sessions.get(device);
    if (session && ts < session.since.getTime()) return;
    const before = live ? subjectOf(device) : undefined;
    if (event === SESSION_START) {
      if (subject) sessions.set(device, { device, subject, since: new Date(ts) });
      else sessions.delete(device);
    } else if (session && (!subject || subject === session.subject)) {
      sessions.delete(device);
    }
    if (live) announce(device, before);
  }

  // Sessions whose end never arrived run out; their devices must lose the subject's profile then.
  const sweep = setInterval(
    () => {
      for (const [device, session] of sessions) {
        if (Date.now() - session.since.getTime() < config.sessionTtlMs) continue;
        sessions.delete(device);
        log.info({ device }, "session ran out without a session_end");
        announce(device, session.subject);
      }
    },
    Math.max(1000, Math.min(60_000, Math.floor(config.sessionTtlMs / 4))),
  );
  sweep.unref();

  const write = (device: string, subject: string, op: "linked" | "unlinked", by: string) =>
    deps.store.write([
      { measurement: LINKS, tags: { device, subject }, fields: { op, by }, timestamp: String(nextMicros()) },
    ]);

  return {
    subjectOf,
    linkedSubject: (device) => links.get(device)?.subject,
    devicesOf(subject) {
      const out = new Set<string>();
      for (const link of links.values()) if (link.subject === subject) out.add(link.device);
      for (const device of sessions.keys()) if (current(device)?.subject === subject) out.add(device);
      return [...out];
    },
    linksOf: (subject) => [...links.values()].filter((l) => l.subject === subject),
    sessionsOf(subject) {
      return [...sessions.keys()].map(current).filter((s): s is TouchpointSession => s?.subject === subject);
    },
    async link(device, subject, by) {
      const previous = links.get(device);
      if (previous?.subject === subject) return;
      const before = subjectOf(device);
      if (previous) await write(device, previous.subject, "unlinked", by);
      await write(device, subject, "linked", by);
      links.set(device, { device, subject, since: new Date(), by });
      log.info({ device, by }, "device linked to a subject");
      announce(device, before);
    },
    async unlink(device, by) {
      const previous = links.get(device);
      if (!previous) return undefined;
      const before = subjectOf(device);
      await write(device, previous.subject, "unlinked", by);
      links.delete(device);
      log.info({ device, by }, "device unlinked from its subject");
      announce(device, before);
      return previous.subject;
    },
    observe(msg) {
      if (msg.kind !== "event" || (msg.name !== SESSION_START && msg.name !== SESSION_END)) return;
      follow(msg.device, msg.name, msg.subject, msg.ts, true);
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    forgetSubject(subject) {
      const devices = new Set<string>();
      for (const [device, link] of links) if (link.subject === subject) devices.add(device);
      for (const [device, session] of sessions) if (session.subject === subject) devices.add(device);
      for (const device of devices) {
        const before = subjectOf(device);
        if (links.get(device)?.subject === subject) links.delete(device);
        if (sessions.get(device)?.subject === subject) sessions.delete(device);
        announce(device, before);
      }
      return [...devices];
    },
    async close() {
      clearInterval(sweep);
      listeners.clear();
    },
  };
}
