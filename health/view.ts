import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { sortRows, type FleetRow } from "./fleet.ts";

/** The fleet scored over one window, worst first, as every caller sees it. */
export interface FleetSnapshot {
  from: number;
  to: number;
  /** When the oldest measurement the rows are built from was taken. */
  computedAt: number;
  rows: FleetRow[];
  /** Changes whenever any row's score, presence or latest negative feedback changes. */
  digest: string;
}

/** What InfluxDB said about some devices over [to - windowMs, to]: the given ones, or the whole registry. */
export interface Measurement<A> {
  from: number;
  to: number;
  values: Map<string, A>;
}
export type MeasureDevices<A> = (windowMs: number, devices?: readonly string[]) => Promise<Measurement<A>>;

/**
 * Rows from measurements, scored now: presence and the time since a device was
 * last seen are read at this moment, so a row never goes stale while a device
 * merely stays offline.
 */
export type RenderRows<A> = (values: ReadonlyMap<string, A>, windowMs: number) => Measurement<FleetRow>;

/** One device's measurement and when it was taken (ms). */
export interface Measured<A> {
  value: A;
  at: number;
}

/**
 * The cluster's share of one window's view (./shared.ts): the node holding the
 * jobs lease measures for everyone and publishes what it measured; the others
 * read it and hand it the devices they heard news of.
 */
export interface SharedFleet<A> {
  leads(): boolean;
  /** Devices this node heard news of, for the leader to measure. */
  announce(devices: readonly string[]): Promise<void>;
  /** The leader takes the devices any node announced. */
  takeNews(): Promise<string[]>;
  /** The leader's measurements; `full` replaces everything readers hold, `removed` leave. */
  publish(change: { full: boolean; entries: Map<string, Measured<A>>; removed: readonly string[] }): Promise<void>;
  /** What the leader published since `position` (undefined: from scratch); `full` when the reader must replace all it holds. */
  pull(position: string | undefined): Promise<{
    position: string | undefined;
    full: boolean;
    entries: Map<string, Measured<A>>;
    removed: string[];
  }>;
  close(): Promise<void>;
}

export interface FleetViewOptions {
  windowMs: number;
  /** Devices with news are measured again at most this often. */
  refreshMs: number;
  /** The whole fleet is measured again this often: the window slides. */
  fullRefreshMs: number;
  /** The view stops refreshing when nobody asked for it for this long. */
  idleMs: number;
  /** News is measured again this long after it was announced (default 1 s). */
  settleMs?: number;
  /** At most this many devices are measured while a request waits (default 500). */
  inlineMax?: number;
  log: Logger;
}

export interface FleetView {
  snapshot(): Promise<FleetSnapshot>;
  /** Something about the device changed (a message, an answer, a connection): measure it again. */
  touch(device: string): void;
  readonly idle: boolean;
  close(): void;
}

/** At most this many devices in one batch of InfluxQL filters. */
const BATCH = 500;
/**
 * News is measured again once it has had time to reach InfluxDB: messages are
 * durable before they are announced, but acks, action log rows and presence
 * events are written in group commits of up to 100 ms.
 */
const SETTLE_MS = 1000;

/**
 * Who keeps the view: one node on its own, or, in a cluster, the jobs-lease
 * holder (measures and publishes) and every other node (reads what it published).
 */
export type ViewMode = "alone" | "leading" | "following";
export const modeOf = (shared: boolean, leads: boolean): ViewMode =>
  !shared ? "alone" : leads ? "leading" : "following";

/**
 * A materialized view of the fleet's health for one window. Measuring the whole
 * fleet costs InfluxDB a dozen GROUP BY queries over every device's series,
 * seconds for ten thousand devices; so the view measures the whole fleet once,
 * then only the devices that had news since, and renders rows from those
 * measurements at every request. A request first measures the devices whose
 * news came after their last measurement (up to `inlineMax`), so what it answers
 * agrees with each device's own health from the first answer on.
 */
export function createFleetView<A>(
  measure: MeasureDevices<A>,
  render: RenderRows<A>,
  registry: () => readonly string[],
  options: FleetViewOptions,
  shared?: SharedFleet<A>,
): FleetView {
  const entries = new Map<string, Measured<A>>();
  // device -> when its latest news was heard; cleared by a measurement taken a settle time after it.
  const dirty = new Map<string, number>();
  // Devices heard of here that the leader has not been told about yet.
  const outbox = new Set<string>();
  // As leader: measurements (and departures) Redis has not taken yet.
  const unpublished = new Set<string>();
  const unpublishedGone = new Set<string>();
  let mode: ViewMode = modeOf(shared !== undefined, shared?.leads() ?? false);
  let position: string | undefined;
  let fullAt = 0;
  let lastUsed = Date.now();
  let version = 0;
  let rendered: { version: number; at: number; costMs: number; snapshot: FleetSnapshot } | undefined;
  let first: Promise<void> | undefined;
  let chain: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  let looping = false;
  let closed = false;
  const settleMs = options.settleMs ?? SETTLE_MS;
  const inlineMax = options.inlineMax ?? BATCH;

  const store = (values: Map<string, A>, at: number) => {
    const fresh = new Map<string, Measured<A>>();
    for (const [id, value] of values) {
      const m = { value, at };
      entries.set(id, m);
      fresh.set(id, m);
      const news = dirty.get(id);
      if (news !== undefined && at >= news + settleMs) dirty.delete(id);
    }
    version += 1;
    return fresh;
  };

  const measureSome = async (ids: readonly string[]) => {
    const all = new Map<string, Measured<A>>();
    for (let i = 0; i < ids.length; i += BATCH) {
      const at = Date.now();
      const result = await measure(options.windowMs, ids.slice(i, i + BATCH));
      for (const [id, m] of store(result.values, at)) all.set(id, m);
    }
    return all;
  };

  const full = async () => {
    const started = performance.now();
    const at = Date.now();
    const result = await measure(options.windowMs);
    entries.clear();
    const fresh = store(result.values, at);
    fullAt = Date.now();
    if (mode === "leading")
      await shared!.publish({ full: true, entries: fresh, removed: [] }).then(
        () => unpublished.clear(),
        (err: Error) => {
          fullAt = 0;
          throw err;
        },
      );
    options.log.info(
      { devices: entries.size, windowMs: options.windowMs, ms: Math.round(performance.now() - started), mode },
      "fleet health measured",
    );
  };

  /** Devices provisioned since are measured; devices gone from the registry leave. */
  const reconcile = () => {
    const known = new Set(registry());
    const unknown = [...known].filter((id) => !entries.has(id));
    const gone = [...entries.keys()].filter((id) => !known.has(id));
    for (const id of gone) entries.delete(id);
    if (gone.length > 0) version += 1;
    return { unknown, gone };
  };

  const partial = async () => {
    if (mode === "leading") for (const id of await shared!.takeNews()) hear(id);
    const { unknown, gone } = reconcile();
    const settled = Date.now() - settleMs;
    const due = new Set(unknown);
    for (const [id, news] of dirty) {
      const m = entries.get(id);
      if (news <= settled && (!m || m.at < news + settleMs)) due.add(id);
    }
    const fresh = await measureSome([...due]);
    if (mode !== "leading") return;
    // What Redis did not take last time goes out with this round.
    for (const id of unpublished) {
      const m = entries.get(id);
      if (m && !fresh.has(id)) fresh.set(id, m);
    }
    const removed = [...new Set([...gone, ...unpublishedGone])];
    if (fresh.size === 0 && removed.length === 0) return;
    await shared!.publish({ full: false, entries: fresh, removed }).then(
      () => {
        unpublished.clear();
        unpublishedGone.clear();
      },
      (err: Error) => {
        for (const id of fresh.keys()) unpublished.add(id);
        for (const id of removed) unpublishedGone.add(id);
        throw err;
      },
    );
  };

  const follow = async () => {
    if (outbox.size > 0) {
      const devices = [...outbox];
      outbox.clear();
      await shared!.announce(devices).catch((err: Error) => {
        for (const id of devices) outbox.add(id);
        throw err;
      });
    }
    const change = await shared!.pull(position);
    position = change.position;
    if (change.full) entries.clear();
    for (const id of change.removed) entries.delete(id);
    for (const [id, m] of change.entries) {
      const mine = entries.get(id);
      if (mine && mine.at > m.at) continue;
      entries.set(id, m);
      const news = dirty.get(id);
      if (news !== undefined && m.at >= news + settleMs) dirty.delete(id);
    }
    if (change.full || change.entries.size > 0 || change.removed.length > 0) version += 1;
    // The leader has never published (the cluster has just started): measure here rather than answer empty.
    if (position === undefined && entries.size === 0 && registry().length > 0) await full();
  };

  const refresh = async () => {
    const was = mode;
    mode = modeOf(shared !== undefined, shared?.leads() ?? false);
    // A new leader measures everything at once: what it read while following may be behind.
    if (mode === "leading" && was !== "leading") fullAt = 0;
    if (mode !== "following") outbox.clear();
    if (mode === "following") {
      if (was !== "following") position = undefined;
      return follow();
    }
    return Date.now() - fullAt >= options.fullRefreshMs ? full() : partial();
  };

  /** Measures, while the request waits, what had news since its last measurement. */
  const catchUp = async () => {
    const { unknown } = reconcile();
    const due = new Set(unknown);
    for (const [id, news] of dirty) if ((entries.get(id)?.at ?? 0) <= news) due.add(id);
    if (due.size === 0 || due.size > inlineMax) return;
    await measureSome([...due]);
  };

  const tick = () => {
    timer = undefined;
    if (closed || Date.now() - lastUsed > options.idleMs) {
      looping = false;
      return;
    }
    chain = chain
      .then(refresh)
      .catch((err: Error) =>
        options.log.warn({ part: "health", err: err.message }, "fleet health refresh failed; retrying"),
      )
      .finally(() => {
        if (closed) looping = false;
        else timer = setTimeout(tick, options.refreshMs).unref();
      });
  };
  const loop = () => {
    if (looping || closed) return;
    looping = true;
    timer = setTimeout(tick, options.refreshMs).unref();
  };

  /** Runs after what is queued; a failure is logged and the view answers with what it has. */
  const step = (run: () => Promise<void>) =>
    (chain = chain
      .then(run)
      .catch((err: Error) =>
        options.log.warn(
          { part: "health", err: err.message },
          "fleet health not brought up to date; answering from the view",
        ),
      ));

  const hear = (device: string) => {
    dirty.set(device, Date.now());
    version += 1;
  };

  const snapshotNow = (): FleetSnapshot => {
    // Scores move with the clock (time offline, time in service); an answer is rendered anew unless
    // the last one is younger than ten times what it cost, so a big fleet polled hard spends at most
    // a tenth of a core on rendering.
    const started = performance.now();
    if (rendered && rendered.version === version && started - rendered.at < 10 * rendered.costMs)
      return rendered.snapshot;
    const values = new Map<string, A>();
    let oldest = Infinity;
    for (const [id, m] of entries) {
      values.set(id, m.value);
      oldest = Math.min(oldest, m.at);
    }
    const { from, to, values: rows } = render(values, options.windowMs);
    const sorted = sortRows([...rows.values()], "score");
    const hash = createHash("sha1");
    for (const r of sorted) hash.update(`${r.device}|${r.score}|${r.online}|${r.feedback.latestNegative?.at ?? ""}\n`);
    const snapshot = {
      from,
      to,
      computedAt: Number.isFinite(oldest) ? oldest : Date.now(),
      rows: sorted,
      digest: hash.digest("base64url"),
    };
    rendered = { version, at: started, costMs: performance.now() - started, snapshot };
    return snapshot;
  };

  return {
    async snapshot() {
      // Back after a pause without refreshes: catch up before answering.
      const resumed = first !== undefined && !looping;
      lastUsed = Date.now();
      if (resumed) await step(refresh);
      if (!first) {
        first = chain = refresh();
        first.catch(() => (first = undefined));
      }
      await first;
      loop();
      await step(catchUp);
      return snapshotNow();
    },
    touch(device) {
      hear(device);
      if (mode === "following") outbox.add(device);
    },
    get idle() {
      return Date.now() - lastUsed > options.idleMs;
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
    },
  };
}
