import { watch, type FSWatcher } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { DeviceMessage } from "../ingest/index.ts";
import { evaluate, triggerOf, type ProposedAction } from "./engine.ts";
import { loadRule, RuleError, type CompiledRule } from "./load.ts";

export { loadRule, RuleError } from "./load.ts";
export type { ProposedAction } from "./engine.ts";

/** What the rules engine needs from the action side. */
export interface ActionSink {
  propose(action: ProposedAction): Promise<unknown>;
  /** When this rule last fired for this target ("device:<id>" or "subject:<id>"), from the action log. */
  lastFired(rule: string, target: string): number | undefined;
}

export interface RulesConfig {
  dir: string | undefined;
}

export interface Rules {
  /** Evaluates the rules indexed under the message's trigger. */
  handle(msg: DeviceMessage): void;
  list(): Array<{ id: string; source: string; on: string; scope: string; enabled: boolean }>;
  /** Re-reads the rules directory now (the watcher calls this on changes). */
  reload(): Promise<void>;
  close(): Promise<void>;
}

export async function startRules(config: RulesConfig, deps: { log: Logger; actions: ActionSink }): Promise<Rules> {
  const log = deps.log.child({ part: "rules" });
  /** file name -> last good rule from it; a broken edit keeps the previous version running. */
  const byFile = new Map<string, CompiledRule>();
  let byTrigger = new Map<string, CompiledRule[]>();

  const index = () => {
    const next = new Map<string, CompiledRule[]>();
    for (const rule of byFile.values()) {
      if (!rule.spec.enabled) continue;
      const list = next.get(rule.spec.on) ?? [];
      list.push(rule);
      next.set(rule.spec.on, list);
    }
    byTrigger = next;
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
        rule = loadRule(await readFile(file, "utf8"), file);
      } catch (err) {
        const e = err as Error;
        if (e instanceof RuleError) log.error({ file, line: e.line, field: e.field, reason: e.reason, kept: byFile.has(name) }, `rule refused: ${e.message}`);
        else log.error({ file, err: e.message }, "cannot read rule file");
        const previous = byFile.get(name);
        if (previous) ids.set(previous.spec.id, file);
        continue;
      }
      const clash = ids.get(rule.spec.id);
      if (clash) {
        log.error({ file, field: "id", other: clash }, `rule refused: ${file}: id: '${rule.spec.id}' is already defined in ${clash}`);
        continue;
      }
      ids.set(rule.spec.id, file);
      const previous = byFile.get(name);
      if (!previous || previous.source !== file || JSON.stringify(previous.spec) !== JSON.stringify(rule.spec)) {
        log.info({ rule: rule.spec.id, file, on: rule.spec.on }, previous ? "rule updated" : "rule loaded");
      }
      byFile.set(name, rule);
    }
    for (const name of [...byFile.keys()]) {
      if (!seen.has(name)) {
        log.info({ rule: byFile.get(name)!.spec.id, file: name }, "rule removed");
        byFile.delete(name);
      }
    }
    index();
  };

  await reload();
  let watcher: FSWatcher | undefined;
  let debounce: NodeJS.Timeout | undefined;
  if (config.dir) {
    watcher = watch(config.dir, () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => void reload(), 100);
    });
    watcher.on("error", (err) => log.error({ err: err.message }, "rules directory watch failed"));
    log.info({ dir: config.dir, rules: byFile.size }, "rules loaded");
  }

  return {
    handle(msg) {
      const rules = byTrigger.get(triggerOf(msg));
      if (!rules) return;
      const now = Date.now();
      for (const rule of rules) {
        const outcome = evaluate(rule, msg, now, deps.actions.lastFired);
        if (!outcome.fired) {
          if (outcome.reason === "error") log.debug({ rule: rule.spec.id, device: msg.device, detail: outcome.detail }, "rule condition could not be evaluated");
          continue;
        }
        for (const action of outcome.actions) {
          deps.actions.propose(action).catch((err: Error) => log.error({ rule: action.rule, device: action.device, err: err.message }, "action could not be proposed"));
        }
      }
    },
    list() {
      return [...byFile.values()].map((r) => ({ id: r.spec.id, source: r.source, on: r.spec.on, scope: r.spec.scope, enabled: r.spec.enabled }));
    },
    reload,
    async close() {
      clearTimeout(debounce);
      watcher?.close();
    },
  };
}
