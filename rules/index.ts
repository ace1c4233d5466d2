import { watch, type FSWatcher } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { RuleMessage } from "./message.ts";
import type { Store } from "../store/index.ts";
import type { ChangeFeed } from "../changes/index.ts";
import { backtest, type BacktestReport } from "./backtest.ts";
import { Catalog, type CatalogEntry, type RuleVersion } from "./catalog.ts";
import { RuleEngine, SESSION_START, type GuardConfig, type Guards, type ProposedAction } from "./engine.ts";
import { readHistory } from "./history.ts";
import { loadRule, RuleError, type CompiledRule } from "./load.ts";
import type { Source } from "./aggregates.ts";

export { loadRule, RuleError } from "./load.ts";
export { CatalogError } from "./catalog.ts";
export type { ProposedAction } from "./engine.ts";
export type { PresenceMessage, RuleMessage } from "./message.ts";
export type { BacktestReport } from "./backtest.ts";
export type { CatalogEntry, RuleVersion } from "./catalog.ts";

/** What the rules engine needs from the action side: to propose, and the action log's memory. */
export interface ActionSink {
  propose(action: ProposedAction): Promise<unknown>;
  lastFired(rule: string, target: string): number | undefined;
  lastPrompt(target: string): number | undefined;
  declinedAt(rule: string, target: string): number | undefined;
}

export interface RulesConfig extends GuardConfig {
  dir: string | undefined;
  maxCost: number;
  /** How far back windows that are not time-bounded (last N sessions/events) are warmed. */
  warmupMaxAgeMs: number;
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
  /** Re-reads the rules directory now (the watcher calls this on changes). */
  reload(): Promise<void>;
  /**
   * Erasure: forgets a subject's windows and sessions, and warms the device
   * windows of the devices they used again from InfluxDB (already erased), so
   * memory holds what a restart would build.
   */
  forgetSubject(subject: string, devices: readonly string[]): Promise<void>;
  readonly stats: RuleEngine["stats"];
  close(): Promise<void>;
}

export interface RulesDeps {
  log: Logger;
  store: Store;
  actions: ActionSink;
  consent: { allows(subject: string, purpose: string): boolean };
  /** Where rule changes travel; without one, a feed of this process alone. */
  changes?: ChangeFeed;
}

export async function startRules(config: RulesConfig, deps: RulesDeps): Promise<Rules> {
  const log = deps.log.child({ part: "rules" });
  const loadOptions = { maxCost: config.maxCost };
  const catalog = await Catalog.open(deps.store, log, loadOptions, deps.changes);
  const engine = new RuleEngine(config);
  /** file name -> last good rule from it; a broken edit keeps the previous version running. */
  const byFile = new Map<string, CompiledRule>();
  const guards: Guards = {
    lastFired: (rule, target) => deps.actions.lastFired(rule, target),
    lastPrompt: (target) => deps.actions.lastPrompt(target),
    declinedAt: (rule, target) => deps.actions.declinedAt(rule, target),
    consent: (subject, purpose) => deps.consent.allows(subject, purpose),
  };

  /** Reads the history new sources need, so a new or changed rule starts with full windows. */
  const warm = async (sources: Source[], withSessions: boolean) => {
    if (sources.length === 0 && !withSessions) return;
    const now = Date.now();
    const lookback = Math.max(
      config.warmupMaxAgeMs,
      ...sources.map((s) => (s.window.kind === "time" ? s.window.ms : 0)),
    );
    const triggers = new Set(sources.map((s) => s.of).filter((t): t is string => t !== undefined));
    const only = new Set(sources);
    if (withSessions) triggers.add(`event:${SESSION_START}`);
    const started = Date.now();
    const count = await readHistory(deps.store, triggers, now - lookback, now, (msg) =>
      engine.observe(msg, withSessions ? undefined : only),
    );
    log.info(
      { warmed: sources.length, messages: count, ms: Date.now() - started, ...engine.stats },
      "windows warmed from InfluxDB",
    );
  };

  const apply = async (initial: boolean) => {
    const fresh = engine.setRules(catalog.active());
    await warm(fresh, initial);
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
    await catalog.syncFiles([...byFile.values()]);
  };

  await reload();
  await apply(true);
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
            await apply(false);
          })
          .catch((err: Error) => log.error({ err: err.message }, "rules reload failed"));
      }, 100);
    });
    watcher.on("error", (err) => log.error({ err: err.message }, "rules directory watch failed"));
  }
  // A rule changed on another node runs here too; this process's own changes apply themselves below.
  const stopFollowing = catalog.onChange(() => {
    reloading = reloading
      .then(() => apply(false))
      .catch((err: Error) => log.error({ err: err.message }, "rules could not follow a change"));
  });
  log.info({ dir: config.dir ?? null, rules: catalog.list().length }, "rules loaded");

  return {
    handle(msg) {
      for (const outcome of engine.handle(msg, Date.now(), guards)) {
        if (!outcome.fired) {
          if (outcome.reason === "error")
            log.debug(
              { rule: outcome.rule, device: msg.device, detail: outcome.detail },
              "rule condition could not be evaluated",
            );
          else if (outcome.reason !== "condition_false")
            log.debug(
              { rule: outcome.rule, device: msg.device, reason: outcome.reason, detail: outcome.detail },
              "rule held back",
            );
          continue;
        }
        for (const action of outcome.actions) {
          deps.actions
            .propose(action)
            .catch((err: Error) =>
              log.error({ rule: action.rule, device: action.device, err: err.message }, "action could not be proposed"),
            );
        }
      }
    },
    list: () => catalog.list(),
    get: (id) => catalog.get(id),
    versions: (id) => catalog.versions(id),
    async put(text, by) {
      const entry = await catalog.put(text, by);
      await apply(false);
      return entry;
    },
    async setEnabled(id, enabled, by) {
      const entry = await catalog.setEnabled(id, enabled, by);
      await apply(false);
      return entry;
    },
    async remove(id, by) {
      await catalog.remove(id, by);
      await apply(false);
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
    reload: async () => {
      await reload();
      await apply(false);
    },
    async forgetSubject(subject, devices) {
      engine.forgetSubject(subject);
      if (devices.length === 0) return;
      const set = new Set(devices);
      engine.forgetDevices(set);
      const now = Date.now();
      const lookback = Math.max(config.warmupMaxAgeMs, ...engine.deviceWindows);
      const count = await readHistory(
        deps.store,
        engine.deviceTriggers,
        now - lookback,
        now,
        (msg) => engine.observe(msg, undefined, set),
        devices,
      );
      log.info({ devices: devices.length, messages: count }, "device windows warmed again after an erasure");
    },
    get stats() {
      return engine.stats;
    },
    async close() {
      clearTimeout(debounce);
      watcher?.close();
      stopFollowing();
      catalog.close();
      await reloading;
    },
  };
}
