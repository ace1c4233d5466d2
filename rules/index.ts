import { watch, type FSWatcher } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { RuleMessage } from "./message.ts";
import type { Store } from "../store/index.ts";
import type { ChangeFeed } from "../changes/index.ts";
import type { ClusterJobs } from "../coordination/jobs.ts";
import { backtest, type BacktestReport } from "./backtest.ts";
import { Catalog, type CatalogEntry, type RuleVersion } from "./catalog.ts";
import {
  RuleEngine,
  SESSION_START,
  keyOf,
  triggerOf,
  type GuardConfig,
  type Guards,
  type Outcome,
  type ProposedAction,
  type Scope,
} from "./engine.ts";
import { recordIdentity } from "./identity.ts";
import { partitionOf, partitionRouter, type PartitionRouter, type PartitionStatus } from "./partitions.ts";
import { readHistory } from "./history.ts";
import { loadRule, RuleError, type CompiledRule } from "./load.ts";
import type { Source } from "./aggregates.ts";
import { Registry } from "prom-client";
import { ERROR_LOG_EVERY_MS, ruleOutcomes } from "./metrics.ts";
import { assignmentLog } from "./assignments.ts";
import { ruleReport } from "./report.ts";

export { loadRule, RuleError } from "./load.ts";
export { CatalogError } from "./catalog.ts";
export type { ProposedAction } from "./engine.ts";
export type { PresenceMessage, RuleMessage } from "./message.ts";
export type { BacktestReport } from "./backtest.ts";
export type { CatalogEntry, RuleVersion } from "./catalog.ts";
export type { PartitionStatus } from "./partitions.ts";

/** What the rules engine needs from the action side: to propose, and the action log's memory. */
export interface ActionSink {
  propose(action: ProposedAction): Promise<unknown>;
  lastFired(rule: string, target: string): number | undefined;
  lastPrompt(target: string): number | undefined;
  declinedAt(rule: string, target: string): number | undefined;
  /** An owner's own profile keys ("device:<id>" or "subject:<id>"). */
  profileOf(owner: `device:${string}` | `subject:${string}`): Readonly<Record<string, unknown>> | undefined;
}

export interface RulesConfig extends GuardConfig {
  dir: string | undefined;
  maxCost: number;
  /** How far back windows that are not time-bounded (last N sessions/events) are warmed. */
  warmupMaxAgeMs: number;
  /** Cluster mode: the windows are split in partitions, each owned by one node (partitions.ts). */
  cluster?: { redisUrl: string; node: string; partitions: number; leaseMs?: number } | undefined;
}

export interface Rules {
  /** Updates windows and evaluates the rules indexed under the message's trigger. */
  handle(msg: RuleMessage): void;
  list(): CatalogEntry[];
  get(id: string): CatalogEntry | undefined;
  versions(id: string): RuleVersion[];
  /** Creates or updates an API rule from YAML or JSON text. */
  put(text: string, by: string): Promise<CatalogEntry>;
  setEnabled(id: string, enabled: boolean, by: string): Promise<CatalogEntry>;
  remove(id: string, by: string): Promise<void>;
  /** Replays history through a stored rule, or through `text` (a new or changed rule). Sends nothing. */
  backtest(id: string, options: { sinceMs: number; text?: string }): Promise<BacktestReport>;
  /** What the rule's actions achieved since a time, per version, and its experiment's result (report.ts); undefined for no such rule. */
  report(
    id: string,
    options: { since: number; until: number; bucketMs: number },
  ): Promise<Awaited<ReturnType<typeof ruleReport>> | undefined>;
  /** Re-reads the rules directory now (the watcher calls this on changes). */
  reload(): Promise<void>;
  /** Where the windows live: every partition's owner and backlog (one partition, this node's, when not in a cluster). */
  partitions(): Promise<PartitionStatus[]>;
  /**
   * Erasure: forgets a subject's windows and sessions, and warms the device
   * windows of the devices they used again from InfluxDB (already erased), so
   * memory holds what a restart would build.
   */
  forgetSubject(subject: string, devices: readonly string[]): Promise<void>;
  readonly stats: RuleEngine["stats"];
  close(): Promise<void>;
}

const SCOPES: readonly Scope[] = ["device", "subject"];
/** How long records a taken partition warmed are remembered, against its stream replaying them. */
const RECENT_MS = 5 * 60_000;

export interface RulesDeps {
  log: Logger;
  store: Store;
  actions: ActionSink;
  consent: { allows(subject: string, purpose: string): boolean };
  /** Where rule changes travel; without one, a feed of this process alone. */
  changes?: ChangeFeed;
  /** Cluster mode: every node runs its rule files; the node running the cluster's jobs records their versions. */
  jobs?: Pick<ClusterJobs, "leads" | "onLead">;
  /** The platform's Prometheus registry; rules register their series there. */
  metrics?: Registry;
}

export async function startRules(config: RulesConfig, deps: RulesDeps): Promise<Rules> {
  const log = deps.log.child({ part: "rules" });
  const loadOptions = { maxCost: config.maxCost };
  const catalog = await Catalog.open(deps.store, log, loadOptions, deps.changes);
  const counted = ruleOutcomes(deps.metrics ?? new Registry(), log);
  const assignments = await assignmentLog(deps.store, log);
  const errorFlush = setInterval(() => counted.flush(Date.now()), ERROR_LOG_EVERY_MS).unref();
  const { cluster } = config;
  // The rule set's index, to tell which records any rule reads; it holds no windows.
  const index = new RuleEngine(config);
  /** Windows by partition: one on a single node; in a cluster, those of the partitions this node owns. */
  const engines = new Map<number, RuleEngine>();
  const partOf = (key: string) => (cluster ? partitionOf(key, cluster.partitions) : 0);
  /** Records a taken partition warmed from InfluxDB that its stream may still hold: evaluated, not counted twice. */
  const warmed = new Map<string, number>();
  /** file name -> last good rule from it; a broken edit keeps the previous version running. */
  const byFile = new Map<string, CompiledRule>();
  const guards: Guards = {
    lastFired: (rule, target) => deps.actions.lastFired(rule, target),
    lastPrompt: (target) => deps.actions.lastPrompt(target),
    declinedAt: (rule, target) => deps.actions.declinedAt(rule, target),
    consent: (subject, purpose) => deps.consent.allows(subject, purpose),
    profile: (target) => deps.actions.profileOf(target as `device:${string}`),
  };

  interface WarmJob {
    engine: RuleEngine;
    /** The sources to fill. */
    sources: Source[];
    /** Everything (a partition taken, the start), sessions included; else only `sources`. */
    all: boolean;
  }
  /** Reads the history the jobs need, once for all of them, so windows start full. */
  const warm = async (jobs: Map<number, WarmJob>) => {
    const all = [...jobs.values()];
    const sources = all.flatMap((j) => j.sources);
    const withSessions = all.some((j) => j.all);
    if (sources.length === 0 && !withSessions) return;
    const now = Date.now();
    const lookback = Math.max(
      config.warmupMaxAgeMs,
      ...sources.map((s) => (s.window.kind === "time" ? s.window.ms : 0)),
    );
    const triggers = new Set(sources.map((s) => s.of).filter((t): t is string => t !== undefined));
    if (withSessions) triggers.add(`event:${SESSION_START}`);
    const only = new Map(all.map((j) => [j, j.all ? undefined : new Set(j.sources)]));
    const recentFrom = cluster ? now - RECENT_MS : Infinity;
    const started = Date.now();
    const count = await readHistory(deps.store, triggers, now - lookback, now, (msg) => {
      for (const scope of SCOPES) {
        const key = keyOf(scope, msg);
        if (key === undefined) continue;
        const part = partOf(key);
        const job = jobs.get(part);
        if (!job) continue;
        job.engine.observe(msg, only.get(job), undefined, scope);
        if (job.all && msg.ts >= recentFrom) warmed.set(`${part}|${recordIdentity(msg)}`, now + RECENT_MS);
      }
    });
    log.info(
      { warmed: sources.length, partitions: jobs.size, messages: count, ms: Date.now() - started },
      "windows warmed from InfluxDB",
    );
  };
  // Warms run one at a time: a rule change and a partition taken must not fill one window twice.
  let warming: Promise<void> = Promise.resolve();
  const serially = (run: () => Promise<void>): Promise<void> => {
    const next = warming.then(run);
    warming = next.catch(() => undefined);
    return next;
  };

  const take = (parts: readonly number[]) =>
    serially(async () => {
      const active = catalog.active();
      const jobs = new Map<number, WarmJob>();
      for (const part of parts) {
        const engine = new RuleEngine(config);
        engine.timed = (rule, ms) => counted.timed(rule, ms);
        engines.set(part, engine);
        jobs.set(part, { engine, sources: engine.setRules(active), all: true });
      }
      await warm(jobs);
    });
  const drop = (parts: readonly number[]) => {
    for (const part of parts) engines.delete(part);
    for (const key of warmed.keys()) if (parts.includes(Number(key.slice(0, key.indexOf("|"))))) warmed.delete(key);
  };

  const apply = () =>
    serially(async () => {
      const active = catalog.active();
      index.setRules(active);
      const jobs = new Map<number, WarmJob>();
      for (const [part, engine] of engines) jobs.set(part, { engine, sources: engine.setRules(active), all: false });
      await warm(jobs);
    });

  /** Proposes what fired; settles once every proposal is in the action log (or failed, logged). */
  const fire = (msg: RuleMessage, outcomes: Outcome[]): Promise<unknown> => {
    const proposals: Array<Promise<unknown>> = [];
    // Errors are warnings here, at most once a minute per rule with their count (metrics.ts).
    counted.record(outcomes, msg.device, Date.now());
    for (const outcome of outcomes) {
      if (outcome.fired || outcome.reason === "held_out") {
        const spec = catalog.get(outcome.rule)?.rule.spec;
        if (spec?.experiment)
          assignments.note(
            spec.id,
            spec.scope === "subject" ? `subject:${msg.subject}` : `device:${msg.device}`,
            spec.experiment.holdout,
          );
      }
      if (!outcome.fired) {
        if (outcome.reason !== "condition_false" && outcome.reason !== "error")
          log.debug(
            { rule: outcome.rule, device: msg.device, reason: outcome.reason, detail: outcome.detail },
            "rule held back",
          );
        continue;
      }
      for (const action of outcome.actions) {
        proposals.push(
          deps.actions
            .propose(action)
            .catch((err: Error) =>
              log.error({ rule: action.rule, device: action.device, err: err.message }, "action could not be proposed"),
            ),
        );
      }
    }
    return proposals.length === 0 ? Promise.resolve() : Promise.all(proposals);
  };

  const reload = async () => {
    if (!config.dir) return;
    let names: string[];
    try {
      names = (await readdir(config.dir)).filter((n) => /\.(ya?ml|json)$/.test(n)).sort();
    } catch (err) {
      log.error({ dir: config.dir, err: (err as Error).message }, "cannot read the rules directory");
      return;
    }
    const seen = new Set<string>();
    const ids = new Map<string, string>();
    for (const name of names) {
      seen.add(name);
      const file = path.join(config.dir, name);
      let rule: CompiledRule;
      try {
        rule = loadRule(await readFile(file, "utf8"), file, loadOptions);
      } catch (err) {
        const e = err as Error;
        const kept = byFile.get(name);
        if (e instanceof RuleError)
          log.error(
            { file, line: e.line, field: e.field, reason: e.reason, kept: kept?.spec.id ?? null },
            `rule refused: ${e.message}`,
          );
        else log.error({ file, err: e.message }, "cannot read rule file");
        if (kept) ids.set(kept.spec.id, file);
        continue;
      }
      const clash = ids.get(rule.spec.id);
      if (clash) {
        log.error(
          { file, field: "id", other: clash },
          `rule refused: ${file}: id: '${rule.spec.id}' is already defined in ${clash}`,
        );
        continue;
      }
      ids.set(rule.spec.id, file);
      byFile.set(name, rule);
    }
    for (const name of [...byFile.keys()]) if (!seen.has(name)) byFile.delete(name);
    await catalog.syncFiles([...byFile.values()], deps.jobs?.leads() ?? true);
  };

  try {
    await reload();
  } catch (err) {
    // Started from the views' snapshot while InfluxDB is down: the files run, their versions wait for it.
    if ((err as { code?: string }).code !== "REFEED_INFLUX_WRITE") throw err;
    log.warn(
      { err: (err as Error).message },
      "rule files run, but their new versions wait for InfluxDB to be recorded",
    );
  }
  index.setRules(catalog.active());
  let router: PartitionRouter | undefined;
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [key, until] of warmed) if (until < now) warmed.delete(key);
  }, RECENT_MS).unref();
  if (cluster) {
    router = await partitionRouter(
      { url: cluster.redisUrl, node: cluster.node, partitions: cluster.partitions, leaseMs: cluster.leaseMs },
      {
        take,
        drop,
        wants: (msg, scope) => index.wants(triggerOf(msg), scope),
        run(part, msg, scope) {
          const engine = engines.get(part);
          if (!engine) return Promise.resolve();
          const again = warmed.size > 0 && warmed.has(`${part}|${recordIdentity(msg)}`);
          const now = Date.now();
          return fire(msg, again ? engine.evaluate(msg, now, guards, scope) : engine.handle(msg, now, guards, scope));
        },
      },
      log,
    );
  } else await take([0]);
  let watcher: FSWatcher | undefined;
  let debounce: NodeJS.Timeout | undefined;
  let reloading = Promise.resolve();
  if (config.dir) {
    watcher = watch(config.dir, () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        reloading = reloading
          .then(async () => {
            await reload();
            await apply();
          })
          .catch((err: Error) => log.error({ err: err.message }, "rules reload failed"));
      }, 100);
    });
    watcher.on("error", (err) => log.error({ err: err.message }, "rules directory watch failed"));
  }
  // A rule changed on another node runs here too; this process's own changes apply themselves below.
  const stopFollowing = catalog.onChange(() => {
    reloading = reloading
      .then(() => apply())
      .catch((err: Error) => log.error({ err: err.message }, "rules could not follow a change"));
  });
  // A node that takes the cluster's jobs over syncs the directory, which may have changed meanwhile.
  const stopLeading = deps.jobs?.onLead(() => {
    reloading = reloading
      .then(async () => {
        await reload();
        await apply();
      })
      .catch((err: Error) => log.error({ err: err.message }, "rules reload failed"));
  });
  // A catch-up (InfluxDB back after a start from the snapshot, or a trimmed feed): the files' versions are recorded.
  const stopResync = deps.changes?.onResync?.(
    () =>
      (reloading = reloading
        .then(async () => {
          await reload();
          await apply();
        })
        .catch((err: Error) => log.error({ err: err.message }, "rules reload failed"))),
  );
  log.info({ dir: config.dir ?? null, rules: catalog.list().length }, "rules loaded");

  return {
    handle(msg) {
      if (router) return router.route(msg);
      void fire(msg, engines.get(0)!.handle(msg, Date.now(), guards));
    },
    list: () => catalog.list(),
    get: (id) => catalog.get(id),
    versions: (id) => catalog.versions(id),
    async put(text, by) {
      const entry = await catalog.put(text, by);
      await apply();
      return entry;
    },
    async setEnabled(id, enabled, by) {
      const entry = await catalog.setEnabled(id, enabled, by);
      await apply();
      return entry;
    },
    async remove(id, by) {
      await catalog.remove(id, by);
      await apply();
    },
    async backtest(id, options) {
      const rule = options.text !== undefined ? loadRule(options.text, "backtest", loadOptions) : catalog.get(id)?.rule;
      if (!rule) throw new RuleError("backtest", undefined, "", `no rule '${id}'`);
      const lookback = Math.max(
        0,
        ...rule.aggregates.map((a) => (a.spec.window.kind === "time" ? a.spec.window.ms : config.warmupMaxAgeMs)),
      );
      return backtest(deps.store, rule, {
        sinceMs: options.sinceMs,
        now: Date.now(),
        guards: config,
        lookbackMs: lookback,
        consent: (subject: string, purpose: string) => deps.consent.allows(subject, purpose),
      });
    },
    async report(id, options) {
      const entry = catalog.get(id);
      if (!entry) return undefined;
      return ruleReport(deps.store, entry.rule.spec, catalog.versions(id), options);
    },
    reload: async () => {
      await reload();
      await apply();
    },
    partitions: async () => (router ? router.status() : [{ partition: 0, owner: null, pending: 0, lag: 0 }]),
    forgetSubject: (subject, devices) =>
      serially(async () => {
        for (const engine of engines.values()) engine.forgetSubject(subject);
        assignments.forgetOwner(`subject:${subject}`);
        // Records about them still waiting in a partition stream would be evaluated after the erasure.
        await router?.forgetSubject(subject);
        if (devices.length === 0) return;
        const set = new Set(devices);
        const held = [...engines.values()];
        for (const engine of held) engine.forgetDevices(set);
        const now = Date.now();
        const lookback = Math.max(config.warmupMaxAgeMs, ...held.flatMap((e) => e.deviceWindows));
        const triggers = new Set(held.flatMap((e) => [...e.deviceTriggers]));
        const count = await readHistory(
          deps.store,
          triggers,
          now - lookback,
          now,
          (msg) => engines.get(partOf(msg.device))?.observe(msg, undefined, set, "device"),
          devices,
        );
        log.info({ devices: devices.length, messages: count }, "device windows warmed again after an erasure");
      }),
    get stats() {
      const total = { rules: index.stats.rules, sources: index.stats.sources, keys: 0, sessionKeys: 0 };
      for (const engine of engines.values()) {
        const { keys, sessionKeys } = engine.stats;
        total.keys += keys;
        total.sessionKeys += sessionKeys;
      }
      return total;
    },
    async close() {
      await router?.close();
      clearInterval(sweep);
      clearInterval(errorFlush);
      counted.flush(Date.now(), true);
      clearTimeout(debounce);
      watcher?.close();
      stopFollowing();
      stopLeading?.();
      stopResync?.();
      catalog.close();
      await reloading;
      await assignments.close();
    },
  };
}
