import path from "node:path";
import type { Logger } from "pino";
import { Registry as MetricsRegistry, collectDefaultMetrics } from "prom-client";
import type { Config } from "../config/schema.ts";
import { openStore, type Store } from "../store/index.ts";
import { startRegistry, type Registry } from "../registry/index.ts";
import { startActions, type Actions, type Publisher } from "../actions/index.ts";
import { startRules, type Rules } from "../rules/index.ts";
import { startIngest, type Ingest } from "../ingest/index.ts";
import { startConsent, type Consent } from "../consent/index.ts";
import { startBroker, type Broker } from "../broker/index.ts";
import { startPresence } from "../broker/presence.ts";
import { startApi, type Api } from "../api/index.ts";
import { adminAuthenticator, anyAuthenticator } from "../api/auth.ts";
import { startSubjects, type Subjects } from "../subjects/index.ts";
import { startPrivacy } from "../privacy/index.ts";
import { startKeys } from "../keys/index.ts";
import { startHealth } from "../health/index.ts";

export interface Platform {
  readonly addresses: { mqtt: string; mqtts?: string; http: string; ws: string; influx: string };
  readonly store: Store;
  close(): Promise<void>;
}

export interface PlatformOptions {
  log: Logger;
  /** Where the generated admin token is shown once (stderr by default). */
  announceAdminToken?(token: string): void;
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
    const store = await openStore({ ...config.influx, dataDir: config.dataDir, log });
    closers.push(() => store.close());
    const registry: Registry = await startRegistry(store, log);
    closers.push(() => registry.close());

    // The broker is created after the parts that feed it, so actions publish through a late-bound edge.
    let broker: Broker | undefined;
    const publisher: Publisher = {
      publish: (topic, payload, opts) =>
        broker ? broker.publish(topic, payload, opts) : Promise.reject(new Error("broker not started")),
    };
    // Customers: which devices serve each of them (links, shared-device sessions), and their tokens.
    const subjects: Subjects = await startSubjects({ sessionTtlMs: config.subjects.sessionTtl }, { store, log });
    closers.push(() => subjects.close());
    const { touchpoints } = subjects;
    const actions: Actions = await startActions(
      { suggestionTtlMs: config.rules.suggestionTtl },
      { store, registry, touchpoints, publisher, log },
    );
    closers.push(() => actions.close());
    // Opt-in per subject and purpose, rebuilt from InfluxDB; no record means no.
    const consent: Consent = await startConsent({ store, log });
    closers.push(() => consent.close());
    const rules: Rules = await startRules(
      {
        dir: config.rulesDir,
        promptEverySessions: config.rules.promptEverySessions,
        declineBackoffMs: config.rules.declineBackoff,
        maxCost: config.rules.maxCost,
        warmupMaxAgeMs: config.rules.warmupMaxAge,
      },
      { log, store, actions, consent },
    );
    closers.push(() => rules.close());
    // Devices with news are scored again in the fleet's health view; health starts after the parts it reads.
    let touchHealth: (device: string) => void = () => {};
    const metrics = new MetricsRegistry();
    collectDefaultMetrics({ register: metrics });
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
    // Sessions coming and going trigger `on: presence` rules (device-only, no subject).
    const presence = await startPresence({
      store,
      log,
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
        touchHealth(e.device);
      },
    });
    closers.push(() => presence.close());
    registry.onChange((change) => change.op === "revoked" && actions.delivery.forget(change.device));
    broker = await startBroker(config.mqtt, { registry, ingest, log, presence, outbox: actions.delivery, metrics });
    closers.push(() => broker!.close());
    await actions.publishAllState();

    const admin = await adminAuthenticator({
      token: config.adminToken,
      dataDir: config.dataDir,
      announce:
        options.announceAdminToken ??
        ((token) => process.stderr.write(`\nRefeed admin token (shown once, keep it safe): ${token}\n\n`)),
    });
    // Staff API keys (admin, product, support), rebuilt from InfluxDB.
    const keys = await startKeys({ store, log });
    closers.push(() => keys.close());
    const health = await startHealth(config.health, {
      store,
      log,
      devices: registry,
      links: touchpoints,
      presence,
      actions,
      consent,
    });
    closers.push(() => health.close());
    touchHealth = (device) => health.touch(device);
    // Every kind of bearer token the API takes; the admin's last (see anyAuthenticator).
    const auth = anyAuthenticator(subjects.tokens, keys.authenticator, admin);
    const mqtt = broker;
    const privacy = startPrivacy({
      store,
      log,
      views: { consent, tokens: subjects.tokens, touchpoints, actions, rules, ingest },
    });
    closers.push(() => privacy.close());
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
    });
    closers.push(() => api.close());

    const show = (host: string) => (host === "0.0.0.0" || host === "::" ? "localhost" : host);
    const addresses = {
      mqtt: `mqtt://${show(broker.address.host)}:${broker.address.port}`,
      ...(broker.tlsAddress ? { mqtts: `mqtts://${show(broker.tlsAddress.host)}:${broker.tlsAddress.port}` } : {}),
      http: `http://${show(api.address.host)}:${api.address.port}`,
      ws: `ws://${show(api.address.host)}:${api.address.port}/mqtt`,
      influx: store.url,
    };
    log.info({ ...addresses, db: store.db, rulesDir: config.rulesDir ?? null }, "refeed listening");
    return { addresses, store, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
