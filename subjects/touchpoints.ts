import type { Logger } from "pino";
import type { DeviceMessage } from "../ingest/index.ts";
import type { Store } from "../store/index.ts";
import { microsOfRow, nextMicros } from "../store/clock.ts";
import { ident, influxql } from "../store/influxql.ts";
import { provisionedLinks } from "../registry/queries.ts";
import { sessionEvents } from "../ingest/queries.ts";
import { localChangeFeed } from "../changes/local.ts";
import type { ChangeFeed, Origin } from "../changes/index.ts";
import type { ClusterJobs } from "../coordination/jobs.ts";
import {
  LINKS,
  linkChanges,
  linkEvent,
  linkView,
  sessionChanges,
  sessionEvent,
  sessionView,
  type LinkEvent,
  type SessionEvent,
  type TouchpointSession,
  type Link,
} from "./touchpoints-view.ts";

const SESSION_START = "session_start";
const SESSION_END = "session_end";
const isSessionMarker = (msg: DeviceMessage): msg is Extract<DeviceMessage, { kind: "event" }> =>
  msg.kind === "event" && (msg.name === SESSION_START || msg.name === SESSION_END);

export { LINKS } from "./touchpoints-view.ts";
export type { Link, TouchpointSession } from "./touchpoints-view.ts";

/** The customer a device serves changed (a link, a session start or end): its `state` must follow. */
export interface TouchpointChange {
  device: string;
  before: string | undefined;
  after: string | undefined;
  /** Made on this node (or, for a session that ran out, noticed by the node running the cluster's jobs): it acts on it. */
  here: boolean;
}

/**
 * Where each customer is. A device or app install is either linked to one
 * subject (a phone app), or shared (an ATM, a kiosk, a TV) and serves the
 * subject of its current session, from `event:session_start` to
 * `event:session_end`, the next session start, or `sessionTtlMs`, whichever
 * comes first. A session's subject wins over a link while it lasts.
 * Links and sessions are views (./touchpoints-view.ts) rebuilt from InfluxDB
 * and then fed by the change feed only, so a link made or a session seen on
 * another node counts here too; `onChange` fires from that same path.
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
  /**
   * Names whom the records of one publish are about when they do not say (see `attribute` below): sets
   * `subject` on those that have none, in order, before consent is applied to them.
   */
  attribute(messages: readonly DeviceMessage[]): void;
  /** Follows session starts and ends: the markers ingest stored, and those it withheld for want of consent. */
  observe(msg: DeviceMessage): void;
  onChange(listener: (change: TouchpointChange) => void): () => void;
  /** Every device holding the subject in memory (links, sessions even if run out): what erasure will forget. */
  heldDevices(subject: string): string[];
  /** Erasure: forgets the subject's links and sessions in memory (InfluxDB is erased apart); answers the devices that served them. */
  forgetSubject(subject: string): string[];
  close(): Promise<void>;
}

export async function startTouchpoints(
  config: { sessionTtlMs: number },
  deps: { store: Store; log: Logger; changes?: ChangeFeed; jobs?: Pick<ClusterJobs, "leads"> },
): Promise<Touchpoints> {
  const log = deps.log.child({ part: "subjects" });
  // Alone (a test, a tool) touchpoints still take their changes through a feed, a private one.
  const changes = deps.changes ?? localChangeFeed(deps.log);
  const links = linkView();
  const sessions = sessionView({ ttlMs: config.sessionTtlMs });
  const listeners = new Set<(change: TouchpointChange) => void>();

  const subjectOf = (device: string) => current(device)?.subject ?? links.get(device)?.subject;

  function current(device: string): TouchpointSession | undefined {
    const session = sessions.get(device);
    if (session && Date.now() - session.since.getTime() >= config.sessionTtlMs) return undefined;
    return session;
  }

  function announce(device: string, before: string | undefined, here: boolean) {
    const after = subjectOf(device);
    if (after === before) return;
    for (const listener of listeners) {
      try {
        listener({ device, before, after, here });
      } catch (err) {
        log.error({ device, err: (err as Error).message }, "touchpoint change listener failed");
      }
    }
  }

  /** The one way a link or session change reaches the views after the rebuild: from the feed. */
  const following =
    <E extends { device: string }>(apply: (event: E) => void) =>
    (event: E, origin: Origin) => {
      const before = subjectOf(event.device);
      apply(event);
      announce(event.device, before, origin === "here");
    };
  // Following first, then the rebuild: a change arriving meanwhile is not lost, and meeting it twice is harmless.
  const stops = [
    changes.subscribe(
      linkChanges,
      following<LinkEvent>((e) => links.apply(e)),
    ),
    changes.subscribe(
      sessionChanges,
      following<SessionEvent>((e) => sessions.apply(e)),
    ),
  ];

  // At start the views are empty; a resync (a catch-up) announces what it changes, as the feed would have.
  const rebuild = async (resync: boolean) => {
    const applyLink = resync ? following<LinkEvent>((e) => links.apply(e)) : (e: LinkEvent) => links.apply(e);
    const applySession = resync
      ? following<SessionEvent>((e) => sessions.apply(e))
      : (e: SessionEvent) => sessions.apply(e);
    // Devices provisioned before links had a measurement of their own carry the subject in device_registry.
    const legacy = await deps.store.query<{ time: Date; device: string; subject: string }>(provisionedLinks());
    const rows = await deps.store.query(influxql`SELECT * FROM ${ident(LINKS)}`);
    const skipped = (what: string, issue: string | undefined) =>
      log.warn({ measurement: what, issue }, "unreadable row skipped at rebuild");
    for (const row of [...legacy.map((r) => ({ ...r, op: "linked", by: "provisioning" })), ...rows]) {
      const parsed = linkEvent.safeParse({ ...row, by: row.by ?? "unknown", micros: microsOfRow(row.time) });
      if (parsed.success) applyLink(parsed.data, "elsewhere");
      else skipped(LINKS, parsed.error.issues[0]?.message);
    }
    const since = Date.now() - config.sessionTtlMs;
    const open = await deps.store.query<{ time: Date; device: string; event: string; subject?: string }>(
      sessionEvents(SESSION_START, SESSION_END, since),
    );
    for (const row of open) {
      const parsed = sessionEvent.safeParse({
        op: row.event === SESSION_START ? "start" : "end",
        device: row.device,
        subject: row.subject ?? undefined,
        ts: row.time.getTime(),
      });
      if (parsed.success) applySession(parsed.data, "elsewhere");
      else skipped("events", parsed.error.issues[0]?.message);
    }
  };
  await rebuild(false);
  stops.push(changes.onResync?.(() => rebuild(true)) ?? (() => undefined));
  log.info(
    { links: links.all().length, sessions: sessions.devices().length },
    "links and open sessions rebuilt from InfluxDB",
  );

  // Sessions whose end never arrived run out; their devices must lose the subject's profile then.
  const sweep = setInterval(
    () => {
      for (const device of sessions.devices()) {
        const session = sessions.get(device);
        if (session && Date.now() - session.since.getTime() < config.sessionTtlMs) continue;
        sessions.drop(device);
        if (!session) continue;
        log.info({ device }, "session ran out without a session_end");
        announce(device, session.subject, deps.jobs?.leads() ?? true);
      }
    },
    Math.max(1000, Math.min(60_000, Math.floor(config.sessionTtlMs / 4))),
  );
  sweep.unref();

  const write = async (event: LinkEvent) => {
    const { device, subject, op, by, micros } = event;
    await deps.store.write([
      { measurement: LINKS, tags: { device, subject }, fields: { op, by }, timestamp: String(micros) },
    ]);
  };

  /**
   * Whom a record without `subject` is about. A linked device is a customer's own (their phone, their TV):
   * everything it sends is about them, its session markers included. A shared device's events and feedback
   * during a session are that session's customer's (the taps and the complaint are theirs), while its
   * telemetry stays the machine's own (the kiosk's temperature or latency is nobody's), as do its session
   * markers, which open and close sessions as they say. A session's subject wins over a link while it lasts,
   * as it does for the device's state. Nobody: a device-only record, as before.
   */
  const attributed = (msg: DeviceMessage, marker: boolean, opened: string | null | undefined): string | undefined => {
    const linked = links.get(msg.device)?.subject;
    if (marker || msg.kind === "telemetry") return linked;
    const session = opened === undefined ? current(msg.device)?.subject : (opened ?? undefined);
    return session ?? linked;
  };

  const held = (subject: string) => {
    const devices = new Set<string>();
    for (const link of links.all()) if (link.subject === subject) devices.add(link.device);
    for (const device of sessions.devices()) if (sessions.get(device)?.subject === subject) devices.add(device);
    return [...devices];
  };

  return {
    subjectOf,
    linkedSubject: (device) => links.get(device)?.subject,
    devicesOf(subject) {
      const out = new Set<string>();
      for (const link of links.all()) if (link.subject === subject) out.add(link.device);
      for (const device of sessions.devices()) if (current(device)?.subject === subject) out.add(device);
      return [...out];
    },
    linksOf: (subject) => links.all().filter((l: Link) => l.subject === subject),
    sessionsOf(subject) {
      return sessions
        .devices()
        .map(current)
        .filter((s): s is TouchpointSession => s?.subject === subject);
    },
    async link(device, subject, by) {
      const previous = links.get(device);
      if (previous?.subject === subject) return;
      if (previous) await write({ op: "unlinked", device, subject: previous.subject, by, micros: nextMicros() });
      // The unlink row above is history for a rebuild; the new link alone supersedes the old one in every view,
      // so only it travels, and the change is announced once.
      const event: LinkEvent = { op: "linked", device, subject, by, micros: nextMicros() };
      await write(event);
      await changes.publish(linkChanges, event);
      log.info({ device, by }, "device linked to a subject");
    },
    async unlink(device, by) {
      const previous = links.get(device);
      if (!previous) return undefined;
      const event: LinkEvent = { op: "unlinked", device, subject: previous.subject, by, micros: nextMicros() };
      await write(event);
      await changes.publish(linkChanges, event);
      log.info({ device, by }, "device unlinked from its subject");
      return previous.subject;
    },
    attribute(messages) {
      // A marker earlier in the same publish opened (a subject) or closed (null) a session the view has not seen yet.
      let opened: string | null | undefined;
      for (const msg of messages) {
        const marker = isSessionMarker(msg);
        if (msg.subject === undefined) msg.subject = attributed(msg, marker, opened);
        if (marker) opened = msg.name === SESSION_START ? (msg.subject ?? null) : null;
      }
    },
    observe(msg) {
      if (!isSessionMarker(msg)) return;
      // Ingest stored the message; the local feed applies it before publish returns, so the session holds at once.
      changes
        .publish(sessionChanges, {
          op: msg.name === SESSION_START ? "start" : "end",
          device: msg.device,
          ...(msg.subject ? { subject: msg.subject } : {}),
          ts: msg.ts,
        })
        .catch((err: Error) => log.error({ device: msg.device, err: err.message }, "session change not published"));
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    heldDevices: held,
    forgetSubject(subject) {
      const devices = held(subject);
      const before = new Map(devices.map((d) => [d, subjectOf(d)]));
      links.forgetSubject(subject);
      for (const device of devices) if (sessions.get(device)?.subject === subject) sessions.drop(device);
      for (const device of devices) announce(device, before.get(device), true);
      return devices;
    },
    close() {
      clearInterval(sweep);
      for (const stop of stops) stop();
      listeners.clear();
      return Promise.resolve();
    },
  };
}
