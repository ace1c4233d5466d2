import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { sortRows, type FleetRow } from "./fleet.ts";

/** The fleet scored over one window, worst first, as every caller sees it. */
export interface FleetSnapshot {
  from: number;
  to: number;
  /** When the rows were last brought up to date (whole fleet or the devices with news). */
  computedAt: number;
  rows: FleetRow[];
  /** Changes whenever any row's score, presence or latest negative feedback changes. */
  digest: string;
}

/** Scores devices over [to - windowMs, to]: the given ones, or the whole registry. */
export type ScoreDevices = (
  windowMs: number,
  devices?: readonly string[],
) => Promise<{ from: number; to: number; rows: FleetRow[] }>;

export interface FleetViewOptions {
  windowMs: number;
  /** Devices with news are scored again at most this often. */
  refreshMs: number;
  /** The whole fleet is scored again this often: the window slides, and other nodes' devices have news too. */
  fullRefreshMs: number;
  /** The view stops refreshing when nobody asked for it for this long. */
  idleMs: number;
  /** News is scored this long after it was announced (default 1 s). */
  settleMs?: number;
  log: Logger;
}

export interface FleetView {
  snapshot(): Promise<FleetSnapshot>;
  /** Something about the device changed (a message, an answer, a connection): score it again soon. */
  touch(device: string): void;
  readonly idle: boolean;
  close(): void;
}

/** At most this many devices in one batch of InfluxQL filters. */
const BATCH = 500;
/**
 * News is scored once it has had time to reach InfluxDB: messages are durable
 * before they are announced, but acks, action log rows and presence events are
 * written in group commits of up to 100 ms.
 */
const SETTLE_MS = 1000;

/**
 * A materialized view of the fleet's health for one window. Scoring the whole
 * fleet costs InfluxDB a dozen GROUP BY queries over every device's series,
 * seconds for ten thousand devices; so the view scores the whole fleet once
 * and then, every `refreshMs`, only the devices that had news since (the same
 * queries, filtered to those devices). A request is answered from the view.
 */
export function createFleetView(
  scoreDevices: ScoreDevices,
  registry: () => readonly string[],
  options: FleetViewOptions,
): FleetView {
  const rows = new Map<string, FleetRow>();
  let sorted: FleetRow[] = [];
  let range = { from: 0, to: 0 };
  let computedAt = 0;
  let digest = "";
  let fullAt = 0;
  let lastUsed = Date.now();
  // device -> when its latest news was announced
  const dirty = new Map<string, number>();
  let first: Promise<void> | undefined;
  let chain: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const settleMs = options.settleMs ?? SETTLE_MS;

  const publish = () => {
    sorted = sortRows([...rows.values()], "score");
    const hash = createHash("sha1");
    for (const r of sorted) hash.update(`${r.device}|${r.score}|${r.online}|${r.feedback.latestNegative?.at ?? ""}\n`);
    digest = hash.digest("base64url");
    computedAt = Date.now();
  };

  const full = async () => {
    const started = performance.now();
    const since = Date.now() - settleMs;
    for (const [id, at] of dirty) if (at <= since) dirty.delete(id);
    const result = await scoreDevices(options.windowMs);
    rows.clear();
    for (const r of result.rows) rows.set(r.device, r);
    range = { from: result.from, to: result.to };
    fullAt = Date.now();
    publish();
    options.log.info(
      { devices: rows.size, windowMs: options.windowMs, ms: Math.round(performance.now() - started) },
      "fleet health computed",
    );
  };

  const partial = async () => {
    const known = new Set(registry());
    const settled = Date.now() - settleMs;
    const due = new Set<string>();
    for (const [id, at] of dirty) {
      if (at > settled) continue;
      dirty.delete(id);
      if (known.has(id)) due.add(id);
    }
    // Devices provisioned since, or gone from the registry, are reconciled here too.
    for (const id of known) if (!rows.has(id)) due.add(id);
    for (const id of rows.keys()) if (!known.has(id)) rows.delete(id);
    const todo = [...due];
    for (let i = 0; i < todo.length; i += BATCH) {
      const result = await scoreDevices(options.windowMs, todo.slice(i, i + BATCH));
      for (const r of result.rows) rows.set(r.device, r);
    }
    if (todo.length > 0 || rows.size !== sorted.length) publish();
  };

  /** One refresh loop per view: a refresh, then the next one `refreshMs` after it finished. */
  let looping = false;
  const refresh = () => (Date.now() - fullAt >= options.fullRefreshMs ? full() : partial());
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

  return {
    async snapshot() {
      // Back after a pause without refreshes: catch up before answering.
      const resumed = first !== undefined && !looping;
      lastUsed = Date.now();
      if (resumed) await (chain = chain.then(refresh));
      if (!first) {
        first = chain = full();
        first.catch(() => (first = undefined));
      }
      await first;
      loop();
      return { ...range, computedAt, rows: sorted, digest };
    },
    touch(device) {
      dirty.set(device, Date.now());
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
