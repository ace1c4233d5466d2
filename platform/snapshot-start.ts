import path from "node:path";
import type { Logger } from "pino";
import type { Config } from "../config/schema.ts";
import type { Topic } from "../changes/index.ts";
import type { LocalChangeFeed } from "../changes/local.ts";
import { openStore, redact, type Store } from "../store/index.ts";
import { ident, influxql } from "../store/influxql.ts";
import { recordingStore, snapshotStore, type Answers, type SwitchingStore } from "../store/answers.ts";
import { readSnapshot, SNAPSHOT_FILE, type ViewSnapshot } from "../snapshot/index.ts";
import { registryChanges } from "../registry/index.ts";
import { consentChanges } from "../consent/view.ts";
import { keyChanges } from "../keys/view.ts";
import { ruleChanges } from "../rules/catalog-view.ts";
import { linkChanges, sessionChanges, tokenChanges } from "../subjects/index.ts";
import { ACTION_LOG_TOPIC, PROFILE_TOPIC } from "../actions/events.ts";
import { REGISTRY_MEASUREMENT } from "../registry/view.ts";
import { CONSENT_MEASUREMENT } from "../consent/view.ts";
import { KEYS_MEASUREMENT } from "../keys/view.ts";
import { RULES_MEASUREMENT } from "../rules/catalog-view.ts";
import { LINKS, TOKENS } from "../subjects/index.ts";
import { ACTION_LOG } from "../actions/queries.ts";
import { PROFILE_CHANGES } from "../actions/rows.ts";
import { PRESENCE } from "../broker/queries.ts";
import { ERASURES } from "../privacy/names.ts";

/**
 * The changes a snapshot keeps beside InfluxDB's answers: the views of the
 * registry, keys, consent, customers (links, sessions, tokens), the rule
 * catalog, the action log (pending actions) and the profiles. Presence is
 * not kept: devices say again who is online as they connect.
 */
export const SNAPSHOT_TOPICS = [
  registryChanges,
  keyChanges,
  consentChanges,
  linkChanges,
  sessionChanges,
  tokenChanges,
  ruleChanges,
  ACTION_LOG_TOPIC,
  PROFILE_TOPIC,
] as unknown as readonly Topic<unknown>[];

/** The measurements of the platform's own state, which the views rebuild from. */
const STATE = [
  REGISTRY_MEASUREMENT,
  KEYS_MEASUREMENT,
  CONSENT_MEASUREMENT,
  LINKS,
  TOKENS,
  RULES_MEASUREMENT,
  ACTION_LOG,
  PROFILE_CHANGES,
  PRESENCE,
  ERASURES,
].map((m) => influxql`FROM ${ident(m)}`.text);

/**
 * A view's rebuild query: over the platform's own state and not bounded in
 * time. A query over a time range (open sessions, the health of the last 7
 * days, a window's history) could not be answered from the snapshot later
 * anyway, and device data does not belong in it.
 */
export const isViewQuery = (text: string): boolean =>
  !/\btime\s*[<>=]/.test(text) && STATE.some((from) => text.includes(from));

/**
 * Written at once, not at the next interval: who may connect or call (devices, keys, customers'
 * tokens) and what may be stored about a customer (consent).
 */
export const URGENT_TOPICS: ReadonlySet<string> = new Set(
  [registryChanges, keyChanges, tokenChanges, consentChanges].map((t) => t.name),
);

export type OpenedStore =
  /** InfluxDB answered; `answers` fills with what the views ask of it while they start (none when no snapshot is kept). */
  | { kind: "live"; store: Store; answers?: Answers; endStart(): void }
  /** InfluxDB did not answer; the views start from the verified snapshot, and `store` becomes InfluxDB once it is back. */
  | { kind: "snapshot"; store: SwitchingStore; snapshot: ViewSnapshot };

/**
 * Whether this node keeps a snapshot and may start from it: a single node on
 * an InfluxDB of its own configuring. A cluster node's views follow a Redis
 * stream from a position noted before its rebuild, which a snapshot cannot
 * vouch for; a managed influxd that does not start is no outage to ride out.
 */
export const keepsSnapshot = (config: Config): boolean => !config.redis.url && config.influx.url !== undefined;

export const snapshotFile = (config: Config): string => path.join(config.dataDir, SNAPSHOT_FILE);

/**
 * Opens InfluxDB, or, when it does not answer and a verified snapshot of its
 * database is in the data dir, the snapshot. A snapshot that does not verify
 * is never used: the start fails as it did without one, saying why.
 */
export async function openStoreOrSnapshot(config: Config, log: Logger): Promise<OpenedStore> {
  const options = { ...config.influx, dataDir: config.dataDir, log };
  if (!keepsSnapshot(config)) {
    try {
      return { kind: "live", store: await openStore(options), endStart: () => undefined };
    } catch (err) {
      if (config.redis.url && (err as { code?: string }).code === "REFEED_INFLUX_UNREACHABLE")
        log.error(
          { part: "snapshot", influx: redact(config.influx.url ?? "") },
          "InfluxDB is unreachable; a cluster node does not start from a views snapshot (single node only), so it waits for InfluxDB",
        );
      throw err;
    }
  }
  const url = redact(config.influx.url!);
  const file = snapshotFile(config);
  const read = await readSnapshot(file, { url, db: config.influx.db });
  // With a snapshot to fall back on, devices should not wait the full connect timeout to be let in.
  const connectTimeoutMs = read.ok
    ? Math.min(config.influx.connectTimeoutMs, config.snapshot.startWait)
    : config.influx.connectTimeoutMs;
  try {
    const recording = recordingStore(await openStore({ ...options, connectTimeoutMs }), isViewQuery);
    return { kind: "live", store: recording.store, answers: recording.answers, endStart: () => recording.stop() };
  } catch (err) {
    if ((err as { code?: string }).code !== "REFEED_INFLUX_UNREACHABLE") throw err;
    if (!read.ok) {
      log.error(
        { part: "snapshot", influx: url, file, reason: read.reason, detail: read.detail },
        read.reason === "missing"
          ? "InfluxDB is unreachable and there is no views snapshot to start from"
          : "InfluxDB is unreachable and the views snapshot is not used: it does not verify",
      );
      throw err;
    }
    log.warn(
      {
        part: "snapshot",
        influx: url,
        err: (err as Error).message,
        file,
        writtenAt: read.snapshot.writtenAt,
        changes: read.snapshot.events.length,
      },
      "InfluxDB is unreachable: starting degraded from the verified views snapshot; device data is acknowledged into the commit log and spool, changes are refused until InfluxDB is back",
    );
    return {
      kind: "snapshot",
      store: snapshotStore({ url, db: config.influx.db, answers: new Map(read.snapshot.answers) }),
      snapshot: read.snapshot,
    };
  }
}

/** Applies the snapshot's changes to the views that follow them now (applying one twice changes nothing). */
export async function replayChanges(feed: LocalChangeFeed, snapshot: ViewSnapshot, log: Logger): Promise<void> {
  let skipped = 0;
  for (const { topic, event } of snapshot.events) {
    const t = SNAPSHOT_TOPICS.find((x) => x.name === topic);
    if (!t) {
      skipped++;
      continue;
    }
    await feed.deliver(t, event, "elsewhere").catch(() => skipped++);
  }
  if (skipped > 0) log.warn({ part: "snapshot", skipped }, "snapshot changes that are not valid events were skipped");
}

/**
 * Retries InfluxDB until it answers (or `stopped()`), then makes it the
 * store. Answers the store, or undefined when stopped first.
 */
export async function reachInflux(
  config: Config,
  log: Logger,
  store: SwitchingStore,
  stopped: () => boolean,
): Promise<Store | undefined> {
  for (;;) {
    if (stopped()) return undefined;
    try {
      const real = await openStore({ ...config.influx, dataDir: config.dataDir, log, connectTimeoutMs: 1000 });
      if (stopped()) {
        await real.close();
        return undefined;
      }
      store.goLive(real);
      return real;
    } catch (err) {
      if ((err as { code?: string }).code !== "REFEED_INFLUX_UNREACHABLE")
        log.warn({ part: "snapshot", err: (err as Error).message }, "InfluxDB answered but could not be opened");
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}
