import type { Logger } from "pino";
import type { ActionRecord } from "../actions/index.ts";
import type { PresenceView } from "../broker/presence.ts";
import type { HealthConfig } from "../config/schema.ts";
import type { ConsentChange } from "../consent/index.ts";
import { SUBJECT_ID, type Device } from "../registry/index.ts";
import type { Store } from "../store/index.ts";
import { filterRows, sortRows, type FleetFilter, type FleetRow, type FleetSort } from "./fleet.ts";
import { createFleetView, type FleetSnapshot, type FleetView } from "./view.ts";
import { redisSharedFleet } from "./shared.ts";
import { healthStatements, queryAggregates } from "./queries.ts";
import { devicesOfSubject as subjectDevicesQuery, newestTelemetry, subjectsOfDevice } from "../ingest/queries.ts";
import {
  aggregatesSchema,
  emptyAggregates,
  healthComponents,
  score,
  statusOf,
  type Aggregates,
  type Component,
  type DeviceContext,
  type HealthComponent,
  type HealthStatus,
  type Range,
} from "./score.ts";
import {
  decodeCursor,
  entryTypes,
  telemetrySummary,
  timelinePage,
  timelineSince,
  type Entry,
  type EntryType,
  type TelemetrySummary,
  type TimelineSources,
} from "./timeline.ts";

export { entryTypes, type Entry, type EntryType, type TelemetrySummary } from "./timeline.ts";
/** What a timeline can hold: its entries' types, and the telemetry summaries. */
export const timelineTypes = [...entryTypes, "telemetry"] as const;
export type TimelineType = (typeof timelineTypes)[number];
export { fleetSorts, type FleetRow, type FleetSort } from "./fleet.ts";
export { healthComponents, type HealthComponent, type HealthStatus } from "./score.ts";
export type { FleetSnapshot } from "./view.ts";

export interface HealthDeps {
  store: Store;
  log: Logger;
  devices: { list(): Device[]; get(id: string): Device | undefined };
  /** The customer a personal device or app is linked to (shared devices have none). */
  links: { linkedSubject(device: string): string | undefined };
  presence: { view(device: string): PresenceView };
  actions: { get(id: string): ActionRecord | undefined };
  consent: { history(subject: string): ConsentChange[] };
  /** In a cluster: the jobs-lease holder measures the default window's view for every node, through Redis. */
  cluster?: { redisUrl: string; node: string; leads: () => boolean };
}

export interface FleetQuery extends Omit<FleetFilter, "subjectDevices"> {
  windowMs: number;
  sort: FleetSort;
  offset: number;
  limit: number;
}

export interface FleetPage {
  from: string;
  to: string;
  computedAt: string;
  total: number;
  offset: number;
  limit: number;
  summary: Record<HealthStatus, number> & { devices: number };
  devices: FleetRow[];
}

export interface DeviceHealth {
  device: string;
  kind: string | null;
  subjects: string[];
  revoked: boolean;
  online: boolean;
  connections: number;
  lastSeen: string | null;
  from: string;
  to: string;
  computedAt: string;
  score: number | null;
  status: HealthStatus;
  components: Record<HealthComponent, Component>;
  feedback: FleetRow["feedback"];
}

export interface TimelineRequest {
  from: number;
  to: number;
  cursor?: string | undefined;
  limit: number;
  /** Entry types, and `telemetry` for the summaries. */
  types: ReadonlySet<TimelineType>;
  /** Telemetry bucket in ms; undefined picks one for about 120 buckets. */
  interval?: number | undefined;
}

export interface Timeline {
  device: string;
  from: string;
  to: string;
  subjects: string[];
  /** Only on the first page (no cursor), and when `telemetry` is among the types. */
  telemetry: TelemetrySummary | null;
  entries: Entry[];
  next: string | null;
  /** Where a live stream of this timeline picks up (epoch microseconds). */
  after: number;
}

export class HealthError extends Error {
  constructor(
    readonly code: "BAD_CURSOR" | "TOO_MANY_BUCKETS",
    message: string,
  ) {
    super(message);
  }
}

export interface Health {
  readonly config: HealthConfig;
  fleet(query: FleetQuery): Promise<FleetPage>;
  snapshot(windowMs: number): Promise<FleetSnapshot>;
  /** Undefined for a device the registry does not know. */
  device(id: string, windowMs: number): Promise<DeviceHealth | undefined>;
  timeline(id: string, request: TimelineRequest): Promise<Timeline | undefined>;
  /** Something about the device changed (a message, an ack, a connection): its fleet row is scored again soon. */
  touch(device: string): void;
  /** New timeline entries since `afterMicros` (live updates). */
  since(
    id: string,
    afterMicros: number,
    types: ReadonlySet<EntryType>,
  ): Promise<{ entries: Entry[]; truncated: boolean; newestTelemetry: number | undefined }>;
  close(): Promise<void>;
}

const BUCKETS = [
  10_000, 30_000, 60_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000, 43_200_000,
  86_400_000,
];
const MAX_BUCKETS = 1000;
const MAX_SUBJECTS = 100;
const MAX_WINDOWS = 8;
/** A window's view stops refreshing when nobody looked at it for this long. */
const IDLE_MS = 10 * 60_000;

/**
 * Experience health: scores per device from InfluxQL aggregations (queries.ts)
 * and the pure model (score.ts), the fleet sorted worst first, and each
 * device's timeline.
 */
export async function startHealth(config: HealthConfig, deps: HealthDeps): Promise<Health> {
  const log = deps.log.child({ part: "health" });
  const timelineSources: TimelineSources = {
    store: deps.store,
    action: (id) => deps.actions.get(id),
    consentHistory: (s) => deps.consent.history(s),
  };

  const contextOf = (d: Device): DeviceContext => {
    const p = deps.presence.view(d.id);
    return {
      kind: d.kind,
      createdAt: d.createdAt.getTime(),
      online: p.online,
      changedAt: p.changedAt?.getTime(),
      firstSeen: p.firstSeen?.getTime(),
    };
  };
  const feedbackOf = (agg: Aggregates): FleetRow["feedback"] => ({
    negative: agg.negativeTexts,
    latestNegative: agg.latestNegative
      ? { ...agg.latestNegative, at: new Date(agg.latestNegative.at).toISOString() }
      : null,
  });
  const presenceOf = (d: Device) => {
    const p = deps.presence.view(d.id);
    return { online: p.online, connections: p.connections, lastSeen: p.lastSeen?.toISOString() ?? null };
  };

  const rowOf = (d: Device, agg: Aggregates, range: Range): FleetRow => {
    const scored = score(agg, contextOf(d), range, config);
    const { online, lastSeen } = presenceOf(d);
    return {
      device: d.id,
      kind: d.kind ?? null,
      subject: deps.links.linkedSubject(d.id) ?? null,
      revoked: d.revoked,
      online,
      lastSeen,
      score: scored.score,
      status: scored.status,
      components: Object.fromEntries(healthComponents.map((c) => [c, scored.components[c].score])) as Record<
        HealthComponent,
        number | null
      >,
      feedback: feedbackOf(agg),
    };
  };

  /** The InfluxQL aggregations for these devices (or the whole registry). */
  const measure = async (windowMs: number, ids?: readonly string[]) => {
    const to = Date.now();
    const aggregates = await queryAggregates(deps.store, healthStatements(config, { from: to - windowMs, to }, ids));
    const devices = ids ? ids.flatMap((id) => deps.devices.get(id) ?? []) : deps.devices.list();
    const values = new Map(devices.map((d) => [d.id, aggregates.get(d.id) ?? emptyAggregates()] as const));
    return { from: to - windowMs, to, values };
  };
  /** Rows scored now from measurements: presence and the time since are read at this moment. */
  const render = (values: ReadonlyMap<string, Aggregates>, windowMs: number) => {
    const to = Date.now();
    const range: Range = { from: to - windowMs, to };
    const rows = new Map<string, FleetRow>();
    for (const [id, agg] of values) {
      const d = deps.devices.get(id);
      if (d) rows.set(id, rowOf(d, agg, range));
    }
    return { ...range, values: rows };
  };

  const shared =
    deps.cluster && config.refreshMs > 0
      ? await redisSharedFleet(
          { url: deps.cluster.redisUrl, node: deps.cluster.node, windowMs: config.window, leads: deps.cluster.leads },
          aggregatesSchema,
        )
      : undefined;
  const views = new Map<number, FleetView>();
  /** The view of a window, made on first use; a handful of windows at a time, the least recently made goes first. */
  const snapshot = async (windowMs: number): Promise<FleetSnapshot> => {
    if (config.refreshMs === 0) {
      const { from, to, values } = render((await measure(windowMs)).values, windowMs);
      return {
        from,
        to,
        computedAt: Date.now(),
        rows: sortRows([...values.values()], "score"),
        digest: String(Date.now()),
      };
    }
    for (const [w, view] of views) {
      if (!view.idle || w === windowMs) continue;
      view.close();
      views.delete(w);
    }
    let view = views.get(windowMs);
    if (!view) {
      view = createFleetView(
        measure,
        render,
        () => deps.devices.list().map((d) => d.id),
        { windowMs, refreshMs: config.refreshMs, fullRefreshMs: config.fullRefreshMs, idleMs: IDLE_MS, log },
        // In a cluster the default window is measured once, by the jobs-lease holder, for every node.
        windowMs === config.window ? shared : undefined,
      );
      views.set(windowMs, view);
      if (views.size > MAX_WINDOWS) {
        const [oldest, old] = views.entries().next().value!;
        old.close();
        views.delete(oldest);
      }
    }
    return view.snapshot();
  };

  /** Devices that carried data about this subject: the tag index answers, no points are read. */
  const devicesOfSubject = async (subject: string): Promise<Set<string>> => {
    if (!SUBJECT_ID.test(subject)) return new Set();
    const rows = await deps.store.query(subjectDevicesQuery(subject));
    return new Set(rows.map((r) => String(r.value)));
  };

  const subjectsOf = async (d: Device): Promise<string[]> => {
    const rows = await deps.store.query(subjectsOfDevice(d.id));
    const linked = deps.links.linkedSubject(d.id);
    const seen = new Set<string>(linked ? [linked] : []);
    for (const r of rows) if (seen.size < MAX_SUBJECTS) seen.add(String(r.value));
    return [...seen];
  };

  // The default window's view is scored at start, so the first agent to look does not wait for it.
  if (config.refreshMs > 0)
    snapshot(config.window).catch((err: Error) =>
      log.warn({ err: err.message }, "fleet health not computed at start; it is on first request"),
    );

  return {
    config,
    snapshot,

    async fleet(query) {
      const [snap, subjectDevices] = await Promise.all([
        snapshot(query.windowMs),
        query.q ? devicesOfSubject(query.q) : Promise.resolve(undefined),
      ]);
      const visible = snap.rows.filter((r) => query.revoked || !r.revoked);
      const summary = { devices: visible.length, good: 0, fair: 0, poor: 0, unknown: 0 };
      for (const r of visible) summary[r.status] += 1;
      const matching = filterRows(snap.rows, { ...query, subjectDevices });
      const sorted = query.sort === "score" ? matching : sortRows(matching, query.sort);
      return {
        from: new Date(snap.from).toISOString(),
        to: new Date(snap.to).toISOString(),
        computedAt: new Date(snap.computedAt).toISOString(),
        total: sorted.length,
        offset: query.offset,
        limit: query.limit,
        summary,
        devices: sorted.slice(query.offset, query.offset + query.limit),
      };
    },

    touch(device) {
      for (const view of views.values()) view.touch(device);
    },

    async device(id, windowMs) {
      const d = deps.devices.get(id);
      if (!d) return undefined;
      const to = Date.now();
      const range: Range = { from: to - windowMs, to };
      const [aggregates, subjects] = await Promise.all([
        queryAggregates(deps.store, healthStatements(config, range, [d.id])),
        subjectsOf(d),
      ]);
      const agg = aggregates.get(d.id) ?? emptyAggregates();
      const scored = score(agg, contextOf(d), range, config);
      return {
        device: d.id,
        kind: d.kind ?? null,
        subjects,
        revoked: d.revoked,
        ...presenceOf(d),
        from: new Date(range.from).toISOString(),
        to: new Date(to).toISOString(),
        computedAt: new Date().toISOString(),
        score: scored.score,
        status: statusOf(scored.score),
        components: scored.components,
        feedback: feedbackOf(agg),
      };
    },

    async timeline(id, request) {
      const d = deps.devices.get(id);
      if (!d) return undefined;
      const cursor = request.cursor === undefined ? undefined : decodeCursor(request.cursor);
      if (request.cursor !== undefined && !cursor)
        throw new HealthError("BAD_CURSOR", "cursor: not a cursor from a previous page's 'next'");
      const span = request.to - request.from;
      const interval = request.interval ?? BUCKETS.find((b) => span / b <= 120) ?? BUCKETS.at(-1)!;
      if (span / interval > MAX_BUCKETS)
        throw new HealthError(
          "TOO_MANY_BUCKETS",
          `interval: ${interval} ms gives more than ${MAX_BUCKETS} buckets over this range; pick a longer one`,
        );
      const subjects = await subjectsOf(d);
      const untilMicros = cursor?.untilMicros ?? request.to * 1000;
      const types = new Set([...request.types].filter((t): t is EntryType => t !== "telemetry"));
      const [page, telemetry] = await Promise.all([
        types.size > 0
          ? timelinePage(timelineSources, {
              device: d.id,
              subjects,
              from: request.from,
              untilMicros,
              skip: cursor?.skip ?? 0,
              limit: request.limit,
              types,
            })
          : Promise.resolve({ entries: [], next: null }),
        cursor || !request.types.has("telemetry")
          ? Promise.resolve(null)
          : telemetrySummary(deps.store, d.id, request.from, request.to, interval),
      ]);
      return {
        device: d.id,
        from: new Date(request.from).toISOString(),
        to: new Date(request.to).toISOString(),
        subjects,
        telemetry,
        entries: page.entries,
        next: page.next,
        after: request.to * 1000,
      };
    },

    async since(id, afterMicros, types) {
      const d = deps.devices.get(id);
      if (!d) return { entries: [], truncated: false, newestTelemetry: undefined };
      const subjects = await subjectsOf(d);
      const [news, telemetry] = await Promise.all([
        timelineSince(timelineSources, { device: d.id, subjects, types, limit: 200, afterMicros }),
        deps.store.query(newestTelemetry(d.id, afterMicros)),
      ]);
      return { ...news, newestTelemetry: telemetry[0] ? telemetry[0].time.getTime() : undefined };
    },

    async close() {
      for (const view of views.values()) view.close();
      views.clear();
      await shared?.close();
    },
  };
}
