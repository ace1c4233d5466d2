import type { Logger } from "pino";
import type { ChangeFeed } from "../changes/index.ts";
import { localChangeFeed } from "../changes/local.ts";
import { rebuildAndFollow } from "../changes/rebuild.ts";
import type { Store } from "../store/index.ts";
import { microsToMs, nextMicros } from "../store/clock.ts";
import { ident, influxql } from "../store/influxql.ts";
import { createCatalogView, ruleChanges, RULES_MEASUREMENT, ruleRowToEvent, type RuleEvent } from "./catalog-view.ts";
import { loadRule, RuleError, type CompiledRule, type LoadOptions } from "./load.ts";

export type Origin = "file" | "api";

export interface CatalogEntry {
  rule: CompiledRule;
  origin: Origin;
  version: number;
  updatedAt: Date;
  updatedBy: string;
  enabled: boolean;
}

export interface RuleVersion {
  version: number;
  at: string;
  by: string;
  op: "version" | "enable" | "disable" | "delete";
  origin: Origin;
  text?: string;
}

export class CatalogError extends Error {
  constructor(
    readonly code: "RULE_OWNED_BY_FILE" | "RULE_NOT_FOUND",
    message: string,
  ) {
    super(message);
  }
}

export { ruleChanges, type RuleEvent } from "./catalog-view.ts";

/**
 * Every rule the platform knows, from files and from the API, with its
 * history in InfluxDB (`rule_versions`): who changed what and when. File
 * rules live in their repository; what is stored for them is the audit trail.
 * The history is a view rebuilt from the stored events at start that follows
 * the feed; an API rule runs from the text of its newest stored version, so a
 * rule put on another node runs here too.
 */
export class Catalog {
  private readonly view = createCatalogView();
  /** The rule files of this node's directory, by rule id, as the last sync found them. */
  private readonly files = new Map<string, CompiledRule>();
  /** Per rule, the compiled API version and the identity of its event: compiling is not free. */
  private readonly compiled = new Map<string, { identity: string; rule: CompiledRule | undefined }>();
  private readonly listeners = new Set<(event: RuleEvent) => void>();
  private stopFollowing: () => void = () => {};

  private constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly options: LoadOptions,
    private readonly changes: ChangeFeed,
  ) {}

  static async open(
    store: Store,
    log: Logger,
    options: LoadOptions,
    changes: ChangeFeed = localChangeFeed(log),
  ): Promise<Catalog> {
    const catalog = new Catalog(store, log, options, changes);
    const following = await rebuildAndFollow({
      feed: changes,
      topic: ruleChanges,
      log,
      rows: () => store.query(influxql`SELECT * FROM ${ident(RULES_MEASUREMENT)}`),
      toEvent: ruleRowToEvent,
      apply: (event) => catalog.view.apply(event),
      changed: (event) => {
        for (const listener of catalog.listeners) {
          try {
            listener(event);
          } catch (err) {
            log.error({ rule: event.rule, err: (err as Error).message }, "rule change listener failed");
          }
        }
      },
    });
    catalog.stopFollowing = following.stop;
    // Stored API rules that no longer load are reported once, at start.
    for (const id of catalog.view.rules()) catalog.get(id);
    return catalog;
  }

  /** Called once for each rule change that takes effect, made here or on another node. */
  onChange(listener: (event: RuleEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  list(): CatalogEntry[] {
    const ids = new Set([...this.files.keys(), ...this.view.rules()]);
    return [...ids].flatMap((id) => this.get(id) ?? []).sort((a, b) => a.rule.spec.id.localeCompare(b.rule.spec.id));
  }

  /** A rule as its file (on this node) or its newest stored API version makes it, with toggles since applied. */
  get(id: string): CatalogEntry | undefined {
    const { last, lastVersion, toggle, newest } = this.view.standing(id);
    const file = this.files.get(id);
    let rule: CompiledRule | undefined;
    let origin: Origin;
    if (file) {
      rule = file;
      origin = "file";
    } else if (last?.op === "version" && last.origin === "api") {
      rule = this.compile(last);
      origin = "api";
    } else {
      return undefined;
    }
    if (!rule) return undefined;
    const since = toggle ?? (file ? lastVersion : last) ?? newest;
    return {
      rule,
      origin,
      version: lastVersion?.version ?? 0,
      updatedAt: new Date(since ? microsToMs(since.micros) : 0),
      updatedBy: since?.by ?? "unknown",
      enabled: toggle ? toggle.op === "enable" : rule.spec.enabled,
    };
  }

  versions(id: string): RuleVersion[] {
    return this.view.history(id).map((e) => ({
      version: e.op === "version" ? e.version : 0,
      at: new Date(microsToMs(e.micros)).toISOString(),
      by: e.by,
      op: e.op,
      origin: e.origin,
      ...(e.op === "version" && e.text ? { text: e.text } : {}),
    }));
  }

  /** The rules to run, with enable/disable applied. */
  active(): CompiledRule[] {
    return this.list().map((e) =>
      e.enabled === e.rule.spec.enabled ? e.rule : { ...e.rule, spec: { ...e.rule.spec, enabled: e.enabled } },
    );
  }

  /** Creates or updates a rule through the API. Throws RuleError for a bad rule, CatalogError if a file owns the id. */
  async put(text: string, by: string): Promise<CatalogEntry> {
    const rule = loadRule(text, "api", this.options);
    const existing = this.get(rule.spec.id);
    if (existing?.origin === "file") {
      throw new CatalogError(
        "RULE_OWNED_BY_FILE",
        `rule '${rule.spec.id}' is defined in ${existing.rule.source}; change it there`,
      );
    }
    if (existing && existing.rule.text === text) return existing;
    return this.record(rule, "api", by);
  }

  /** Brings the file rules in line with what the directory holds now. */
  /**
   * Takes this node's rule files in; `record` says whether to record their new
   * versions too (in a cluster every node runs its files, and the node running
   * the cluster's jobs records them, once).
   */
  async syncFiles(rules: readonly CompiledRule[], record = true): Promise<void> {
    const present = new Set(rules.map((r) => r.spec.id));
    for (const rule of rules) {
      const existing = this.get(rule.spec.id);
      if (existing?.origin === "api") {
        this.log.warn(
          { rule: rule.spec.id, file: rule.source },
          "a rule file now defines a rule created through the API; the file wins",
        );
      }
      this.files.set(rule.spec.id, rule);
    }
    for (const id of [...this.files.keys()]) if (!present.has(id)) this.files.delete(id);
    if (!record) return;
    // Every file runs as it is now, recorded or not: a version InfluxDB could not take is recorded at
    // the next sync (a reload, or the catch-up after a start from the views' snapshot).
    let failed: Error | undefined;
    for (const rule of rules) {
      const last = this.view.standing(rule.spec.id).last;
      // Unchanged since it was last recorded (a restart, or a touch of the file): no new version.
      if (last?.op === "version" && last.origin === "file" && last.text === rule.text) continue;
      try {
        await this.record(rule, "file", `file:${rule.source}`);
      } catch (err) {
        failed ??= err as Error;
      }
    }
    if (failed) throw failed;
  }

  async setEnabled(id: string, enabled: boolean, by: string): Promise<CatalogEntry> {
    const entry = this.get(id);
    if (!entry) throw new CatalogError("RULE_NOT_FOUND", `no rule '${id}'`);
    if (entry.enabled === enabled) return entry;
    await this.append({ op: enabled ? "enable" : "disable", rule: id, origin: entry.origin, by, micros: nextMicros() });
    return this.get(id) ?? entry;
  }

  async remove(id: string, by: string): Promise<void> {
    const entry = this.get(id);
    if (!entry) throw new CatalogError("RULE_NOT_FOUND", `no rule '${id}'`);
    if (entry.origin === "file")
      throw new CatalogError("RULE_OWNED_BY_FILE", `rule '${id}' is defined in ${entry.rule.source}; remove the file`);
    await this.append({ op: "delete", rule: id, origin: "api", by, micros: nextMicros() });
  }

  close(): void {
    this.stopFollowing();
    this.listeners.clear();
  }

  private async record(rule: CompiledRule, origin: Origin, by: string): Promise<CatalogEntry> {
    const version = (this.view.standing(rule.spec.id).lastVersion?.version ?? 0) + 1;
    const event = {
      op: "version",
      rule: rule.spec.id,
      origin,
      by,
      version,
      text: rule.text,
      micros: nextMicros(),
    } as const;
    // This process compiled the text already; the view's entry runs that rule, not a second compilation.
    if (origin === "api") this.compiled.set(rule.spec.id, { identity: ruleChanges.identity(event), rule });
    await this.append(event);
    this.log.info({ rule: rule.spec.id, origin, version, by }, "rule version recorded");
    const entry = this.get(rule.spec.id);
    if (!entry)
      throw new CatalogError("RULE_NOT_FOUND", `rule '${rule.spec.id}' is not in the catalog after recording it`);
    return entry;
  }

  /** Written to InfluxDB, then published: the view takes it in from the feed like a change from another node. */
  private async append(event: RuleEvent): Promise<void> {
    await this.store.write([
      {
        measurement: RULES_MEASUREMENT,
        tags: { rule: event.rule },
        fields: {
          op: event.op,
          origin: event.origin,
          by: event.by,
          ...(event.op === "version" ? { version: event.version, text: event.text } : {}),
        },
        timestamp: String(event.micros),
      },
    ]);
    await this.changes.publish(ruleChanges, event);
  }

  private compile(event: Extract<RuleEvent, { op: "version" }>): CompiledRule | undefined {
    const identity = ruleChanges.identity(event);
    const cached = this.compiled.get(event.rule);
    if (cached?.identity === identity) return cached.rule;
    let rule: CompiledRule | undefined;
    try {
      rule = loadRule(event.text, "api", this.options);
    } catch (err) {
      this.log.error(
        { rule: event.rule, err: (err as Error).message },
        "stored API rule no longer loads; it is not running",
      );
    }
    this.compiled.set(event.rule, { identity, rule });
    return rule;
  }
}

export { RuleError };
