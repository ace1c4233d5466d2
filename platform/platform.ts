import path from "node:path";
import type { Logger } from "pino";
import { Registry as MetricsRegistry, collectDefaultMetrics } from "prom-client";
import type { Config } from "../config/schema.ts";
import { redact, type Store } from "../store/index.ts";
import type { KeptRow } from "../store/answers.ts";
import type { ChangeFeed } from "../changes/index.ts";
import { localChangeFeed, type LocalChangeFeed } from "../changes/local.ts";
import { keepSnapshots, type Snapshots } from "../snapshot/index.ts";
import { erasureChanges } from "../privacy/erasures.ts";
import {
  keepsSnapshot,
  openStoreOrSnapshot,
  reachInflux,
  replayChanges,
  snapshotFile,
  SNAPSHOT_TOPICS,
  URGENT_TOPICS,
} from "./snapshot-start.ts";
import { clusterJobs, singleNodeJobs, type ClusterJobs } from "../coordination/jobs.ts";
import { claimClockSlot } from "../coordination/clock-slot.ts";
import { redisChangeFeed, type RedisChangeFeed } from "../changes/redis.ts";
import { registryChanges, startRegistry, type Registry } from "../registry/index.ts";
import { startActions, type Actions, type Publisher } from "../actions/index.ts";
import { startRules, type Rules } from "../rules/index.ts";
import { RULE_PARTITIONS } from "../rules/partitions.ts";
import { startIngest, type Ingest } from "../ingest/index.ts";
import { startConsent, type Consent } from "../consent/index.ts";
import { startBroker, type Broker } from "../broker/index.ts";
import { startPresence } from "../broker/presence.ts";
import { presenceChanges } from "../broker/presence-view.ts";
import { startApi, type Api } from "../api/index.ts";
import { redisTickets } from "../api/tickets.ts";
import { adminAuthenticator, anyAuthenticator } from "../auth/index.ts";
import { startSubjects, type Subjects } from "../subjects/index.ts";
import { startPrivacy } from "../privacy/index.ts";
import { startKeys } from "../keys/index.ts";
import { startHealth } from "../health/index.ts";

export interface Platform {
  readonly addresses: { mqtt: string; mqtts?: string; http: string; ws: string; influx: string };
  readonly store: Store;
  /** Where every change reaches the views; what another node publishes arrives here too. */
  readonly changes: ChangeFeed;
  close(): Promise<void>;
}

export interface PlatformOptions {
  log: Logger;
  /** Where the generated admin token is shown once (stderr by default). */
  announceAdminToken?: (token: string) => void;
  /** The change feed the views follow (in process by default). */
  changes?: ChangeFeed;
}

/**
 * Composes the parts in dependency order. Each part takes its validated config
 * and the small interfaces it needs, and returns something with close();
 * shutdown runs in reverse so that everything accepted is flushed to InfluxDB.
 */
export async function startPlatform(config: Config, options: PlatformOptions): Promise<Platform> {
  const { log } = options;
  const closers: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const close of closers.splice(0).reverse()) {
      try {
        await close();
      } catch (err) {
        log.error({ err: (err as Error).message }, "error during shutdown");
      }
    }
  };

  try {
    // Before anything stamps a time: in a cluster this node's timestamps are its own.
    if (config.redis.url) {
      const clock = await claimClockSlot({ url: config.redis.url, node: config.nodeId }, log);
      closers.push(() => clock.close());
    }
    // InfluxDB, or (a single node whose InfluxDB is down) the views' last verified snapshot until it is back.
    const opened = await openStoreOrSnapshot(config, log);
    const store: Store = opened.store;
    closers.push(() => store.close());
    // One feed for every view; it closes after the parts, which stop following it as they close.
    // In cluster mode the feed is a Redis stream every node follows; it opens before any view rebuilds.
    const redisFeed: RedisChangeFeed | undefined =
      !options.changes && config.redis.url
        ? await redisChangeFeed({ url: config.redis.url, node: config.nodeId }, log)
        : undefined;
    const localFeed: LocalChangeFeed | undefined = options.changes || redisFeed ? undefined : localChangeFeed(log);
    const changes = options.changes ?? redisFeed ?? localFeed!;
    closers.push(() => changes.close());
    // The views' snapshot follows the feed from here; it is written once the platform has started, and last at shutdown.
    const snapshots: Snapshots | undefined = keepsSnapshot(config)
      ? keepSnapshots(
          { file: snapshotFile(config), everyMs: config.snapshot.every },
          {
            log,
            changes,
            topics: SNAPSHOT_TOPICS,
            urgent: URGENT_TOPICS,
            erasures: erasureChanges,
            influx: { url: redact(config.influx.url!), db: config.influx.db },
            answers:
              opened.kind === "live"
                ? (opened.answers ?? new Map<string, KeptRow[]>())
                : new Map(opened.snapshot.answers),
            ...(opened.kind === "snapshot" ? { events: opened.snapshot.events } : {}),
            store,
            live: () => opened.kind === "live" || opened.store.live,
          },
        )
      : undefined;
    if (snapshots) closers.push(() => snapshots.close());
    // Started from the snapshot: its changes reach the views that follow them by then (again at the end, for later parts).
    const replaySnapshot = () =>
      opened.kind === "snapshot" && localFeed ? replayChanges(localFeed, opened.snapshot, log) : Promise.resolve();
    // Jobs that must run once for the cluster run where the jobs lease is (always here on a single node).
    const jobs: ClusterJobs = config.redis.url
      ? await clusterJobs({ url: config.redis.url, node: config.nodeId }, log)
      : singleNodeJobs;
    closers.push(() => jobs.close());
    const registry: Registry = await startRegistry(store, log, changes);
    closers.push(() => registry.close());

    // The broker is created after the parts that feed it, so actions publish through a late-bound edge.
    let broker: Broker | undefined = undefined;
    const publisher: Publisher = {
      publish: (topic, payload, opts) =>
        broker ? broker.publish(topic, payload, opts) : Promise.reject(new Error("broker not started")),
    };
    // Customers: which devices serve each of them (links, shared-device sessions), and their tokens.
    const subjects: Subjects = await startSubjects(
      { sessionTtlMs: config.subjects.sessionTtl },
      { store, log, changes, jobs },
    );
    closers.push(() => subjects.close());
    const { touchpoints } = subjects;
    const metrics = new MetricsRegistry();
    collectDefaultMetrics({ register: metrics });
    const actions: Actions = await startActions(
      { suggestionTtlMs: config.rules.suggestionTtl },
      { store, registry, touchpoints, publisher, feed: changes, jobs, log, metrics },
    );
    closers.push(() => actions.close());
    // Opt-in per subject and purpose, rebuilt from InfluxDB; no record means no.
    const consent: Consent = await startConsent({ store, log, changes });
    closers.push(() => consent.close());
    const rules: Rules = await startRules(
      {
        dir: config.rulesDir,
        promptEverySessions: config.rules.promptEverySessions,
        declineBackoffMs: config.rules.declineBackoff,
        maxCost: config.rules.maxCost,
        warmupMaxAgeMs: config.rules.warmupMaxAge,
        cluster: config.redis.url
          ? { redisUrl: config.redis.url, node: config.nodeId, partitions: RULE_PARTITIONS }
          : undefined,
      },
      { log, store, actions, consent, changes, jobs, metrics },
    );
    closers.push(() => rules.close());
    // Devices with news are scored again in the fleet's health view. Health starts after the parts it
    // reads, but devices connect and publish as soon as the broker is up: their news waits here for it.
    const earlyNews = new Set<string>();
    let touchHealth: (device: string) => void = (device) => earlyNews.add(device);
    const ingest: Ingest = await startIngest(
      {
        ...config.ingest,
        spoolDir: path.join(config.dataDir, "spool"),
        commitLogDir: path.join(config.dataDir, "commit-log"),
        subjectKeyFile: path.join(config.dataDir, "subject-hash.key"),
      },
      {
        store,
        log,
        consent,
        metrics,
        attribute: (messages) => touchpoints.attribute(messages),
        onWithheld: (msg) => touchpoints.observe(msg),
        onMessage: (msg) => {
          touchpoints.observe(msg);
          rules.handle(msg);
          touchHealth(msg.device);
        },
        onAck: (ack) => {
          actions.ack(ack);
          touchHealth(ack.device);
        },
      },
    );
    closers.push(() => ingest.close());
    // Sessions coming and going trigger `on: presence` rules (device-only, no subject) on the node that took them.
    const presence = await startPresence({
      store,
      log,
      changes,
      onEvent: (e) => {
        rules.handle({
          kind: "presence",
          device: e.device,
          subject: undefined,
          ts: e.ts,
          tsFromDevice: false,
          event: e.event,
          reason: e.reason,
          transport: e.transport,
        });
      },
    });
    closers.push(() => presence.close());
    // A device's presence changed here or on another node: its health score is due again.
    const stopPresenceHealth = changes.subscribe(presenceChanges, (e) => e.op !== "seen" && touchHealth(e.device));
    closers.push(() => {
      stopPresenceHealth();
      return Promise.resolve();
    });
    // A device revoked here or on another node leaves nothing queued for it.
    changes.subscribe(registryChanges, (event) => event.op === "revoked" && actions.delivery.forget(event.device));
    await replaySnapshot();
    const mqttBroker = await startBroker(config.mqtt, {
      registry,
      ingest,
      log,
      presence,
      outbox: actions.delivery,
      metrics,
      ...(config.redis.url ? { cluster: { redisUrl: config.redis.url, node: config.nodeId } } : {}),
    });
    broker = mqttBroker;
    closers.push(() => mqttBroker.close());
    // In a cluster the retained store is shared (Redis): the node running the jobs republishes it, once.
    if (jobs.leads()) await actions.publishAllState();

    const admin = await adminAuthenticator({
      token: config.adminToken,
      dataDir: config.dataDir,
      announce:
        options.announceAdminToken ??
        ((token) => process.stderr.write(`\nRefeed admin token (shown once, keep it safe): ${token}\n\n`)),
    });
    // Staff API keys (admin, product, support), rebuilt from InfluxDB.
    const keys = await startKeys({ store, log, changes });
    closers.push(() => keys.close());
    const health = await startHealth(config.health, {
      store,
      log,
      devices: registry,
      links: touchpoints,
      presence,
      actions,
      consent,
      ...(config.redis.url
        ? { cluster: { redisUrl: config.redis.url, node: config.nodeId, leads: () => jobs.leads() } }
        : {}),
    });
    closers.push(() => health.close());
    touchHealth = (device) => health.touch(device);
    for (const device of earlyNews) health.touch(device);
    earlyNews.clear();
    // Every kind of bearer token the API takes; the admin's last (see anyAuthenticator).
    const auth = anyAuthenticator(subjects.tokens, keys.authenticator, admin);
    const mqtt = broker;
    const privacy = await startPrivacy({
      node: config.nodeId,
      store,
      log,
      changes,
      views: { consent, tokens: subjects.tokens, touchpoints, actions, rules, ingest, health },
    });
    closers.push(() => privacy.close());
    // Live-stream tickets: issued by one node, redeemed by whichever the stream lands on.
    const tickets = config.redis.url
      ? await redisTickets({ url: config.redis.url, node: config.nodeId, ttlMs: 30_000 })
      : undefined;
    if (tickets) closers.push(() => tickets.close());
    let views: "snapshot" | "rebuilt" = "snapshot";
    const api: Api = await startApi(config.http, {
      log,
      store,
      registry,
      auth,
      mqtt,
      rules,
      actions,
      presence,
      delivery: actions.delivery,
      ingest,
      consent,
      metrics,
      touchpoints,
      tokens: subjects.tokens,
      privacy,
      keys,
      health,
      ...(redisFeed ? { redis: () => redisFeed.link() } : {}),
      ...(opened.kind === "snapshot" ? { views: () => views } : {}),
      ...(tickets ? { tickets } : {}),
    });
    closers.push(() => api.close());

    if (opened.kind === "snapshot") {
      await replaySnapshot();
      const unanswered = opened.store.endStart();
      if (unanswered.length > 0)
        log.warn(
          { part: "snapshot", queries: unanswered.length },
          "queries the snapshot has no answer to (time ranges, windows' history) started empty; the views catch up when InfluxDB is back",
        );
      // Catch-up: once InfluxDB answers, every view applies its stored changes again, and the spool drains by itself.
      let stopping = false;
      const catchUp = (async () => {
        if (!(await reachInflux(config, log, opened.store, () => stopping))) return;
        log.info({ part: "snapshot", influx: store.url }, "InfluxDB is reachable again: the views catch up from it");
        while (!stopping) {
          const failed = localFeed ? await localFeed.resync() : 0;
          if (failed === 0) break;
          log.warn({ part: "snapshot", failed }, "views could not catch up from InfluxDB yet; trying again");
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
        if (stopping) return;
        await snapshots?.renew();
        views = "rebuilt";
        log.info({ part: "snapshot", influx: store.url }, "views caught up from InfluxDB: no longer degraded");
      })().catch((err: Error) =>
        log.error({ part: "snapshot", err: err.message }, "the catch-up from InfluxDB failed; restart Refeed"),
      );
      closers.push(async () => {
        stopping = true;
        await catchUp;
      });
    } else opened.endStart();
    snapshots?.begin();

    const show = (host: string) => (host === "0.0.0.0" || host === "::" ? "localhost" : host);
    const addresses = {
      mqtt: `mqtt://${show(broker.address.host)}:${broker.address.port}`,
      ...(broker.tlsAddress ? { mqtts: `mqtts://${show(broker.tlsAddress.host)}:${broker.tlsAddress.port}` } : {}),
      http: `http://${show(api.address.host)}:${api.address.port}`,
      ws: `ws://${show(api.address.host)}:${api.address.port}/mqtt`,
      influx: store.url,
    };
    log.info(
      {
        ...addresses,
        db: store.db,
        rulesDir: config.rulesDir ?? null,
        ...(config.redis.url ? { node: config.nodeId, redis: redactedUrl(config.redis.url) } : {}),
        ...(opened.kind === "snapshot" ? { degraded: true, views: "snapshot" } : {}),
      },
      "refeed listening",
    );
    return { addresses, store, changes, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** A Redis URL without its password, for logs. */
function redactedUrl(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}
