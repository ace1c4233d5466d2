import type { Logger } from "pino";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { loadRule, RuleError, type CompiledRule, type LoadOptions } from "./load.ts";
import { ident, influxql } from "../store/influxql.ts";
import { RULE_VERSIONS } from "./queries.ts";

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

const MEASUREMENT = RULE_VERSIONS;

interface Row {
  time: Date;
  rule: string;
  op: RuleVersion["op"];
  origin: Origin;
  version?: number;
  text?: string;
  by: string;
}

/**
 * Every rule the platform knows, from files and from the API, with its
 * history in InfluxDB (`rule_versions`): who changed what and when. File
 * rules live in their repository; what is stored for them is the audit trail.
 * API rules are rebuilt from the stored text at start.
 */
export class Catalog {
  private readonly entries = new Map<string, CatalogEntry>();
  private readonly history = new Map<string, RuleVersion[]>();

  private constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly options: LoadOptions,
  ) {}

  static async open(store: Store, log: Logger, options: LoadOptions): Promise<Catalog> {
    const catalog = new Catalog(store, log, options);
    const rows = await store.query<Row & Record<string, unknown>>(influxql`SELECT * FROM ${ident(MEASUREMENT)}`);
    const apiText = new Map<string, { text: string; version: number; at: Date; by: string }>();
    const toggles = new Map<string, boolean>();
    for (const row of rows) {
      catalog.remember(row.rule, {
        version: Number(row.version ?? 0),
        at: row.time.toISOString(),
        by: row.by,
        op: row.op,
        origin: row.origin,
        ...(row.text ? { text: row.text } : {}),
      });
      if (row.op === "version") {
        toggles.delete(row.rule);
        if (row.origin === "api")
          apiText.set(row.rule, { text: row.text ?? "", version: Number(row.version), at: row.time, by: row.by });
        else apiText.delete(row.rule);
      } else if (row.op === "delete") {
        apiText.delete(row.rule);
      } else {
        toggles.set(row.rule, row.op === "enable");
      }
    }
    for (const [id, stored] of apiText) {
      try {
        const rule = loadRule(stored.text, "api", options);
        catalog.entries.set(id, {
          rule,
          origin: "api",
          version: stored.version,
          updatedAt: stored.at,
          updatedBy: stored.by,
          enabled: toggles.get(id) ?? rule.spec.enabled,
        });
      } catch (err) {
        log.error({ rule: id, err: (err as Error).message }, "stored API rule no longer loads; it is not running");
      }
    }
    catalog.pendingToggles = toggles;
    return catalog;
  }

  /** Toggles read at start for rules whose files are loaded afterwards. */
  private pendingToggles = new Map<string, boolean>();

  list(): CatalogEntry[] {
    return [...this.entries.values()].sort((a, b) => a.rule.spec.id.localeCompare(b.rule.spec.id));
  }

  get(id: string): CatalogEntry | undefined {
    return this.entries.get(id);
  }

  versions(id: string): RuleVersion[] {
    return this.history.get(id) ?? [];
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
    const existing = this.entries.get(rule.spec.id);
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
  async syncFiles(rules: readonly CompiledRule[]): Promise<void> {
    const present = new Set(rules.map((r) => r.spec.id));
    for (const rule of rules) {
      const existing = this.entries.get(rule.spec.id);
      if (existing?.origin === "api") {
        this.log.warn(
          { rule: rule.spec.id, file: rule.source },
          "a rule file now defines a rule created through the API; the file wins",
        );
      }
      if (existing?.origin === "file" && existing.rule.text === rule.text) {
        existing.rule = rule;
        continue;
      }
      const last = this.versions(rule.spec.id)
        .filter((v) => v.op === "version")
        .at(-1);
      if (!existing && last?.origin === "file" && last.text === rule.text) {
        // Unchanged since it was last recorded (a restart): no new version.
        const toggle = this.pendingToggles.get(rule.spec.id);
        this.entries.set(rule.spec.id, {
          rule,
          origin: "file",
          version: last.version,
          updatedAt: new Date(last.at),
          updatedBy: last.by,
          enabled: toggle ?? rule.spec.enabled,
        });
        continue;
      }
      await this.record(rule, "file", `file:${rule.source}`);
    }
    for (const entry of [...this.entries.values()]) {
      if (entry.origin === "file" && !present.has(entry.rule.spec.id)) this.entries.delete(entry.rule.spec.id);
    }
  }

  async setEnabled(id: string, enabled: boolean, by: string): Promise<CatalogEntry> {
    const entry = this.entries.get(id);
    if (!entry) throw new CatalogError("RULE_NOT_FOUND", `no rule '${id}'`);
    if (entry.enabled === enabled) return entry;
    await this.append({ rule: id, op: enabled ? "enable" : "disable", origin: entry.origin, by });
    entry.enabled = enabled;
    entry.updatedAt = new Date();
    entry.updatedBy = by;
    return entry;
  }

  async remove(id: string, by: string): Promise<void> {
    const entry = this.entries.get(id);
    if (!entry) throw new CatalogError("RULE_NOT_FOUND", `no rule '${id}'`);
    if (entry.origin === "file")
      throw new CatalogError("RULE_OWNED_BY_FILE", `rule '${id}' is defined in ${entry.rule.source}; remove the file`);
    await this.append({ rule: id, op: "delete", origin: "api", by });
    this.entries.delete(id);
  }

  private async record(rule: CompiledRule, origin: Origin, by: string): Promise<CatalogEntry> {
    const version =
      (this.versions(rule.spec.id)
        .filter((v) => v.op === "version")
        .at(-1)?.version ?? 0) + 1;
    await this.append({ rule: rule.spec.id, op: "version", origin, by, version, text: rule.text });
    const entry: CatalogEntry = {
      rule,
      origin,
      version,
      updatedAt: new Date(),
      updatedBy: by,
      enabled: rule.spec.enabled,
    };
    this.entries.set(rule.spec.id, entry);
    this.log.info({ rule: rule.spec.id, origin, version, by }, "rule version recorded");
    return entry;
  }

  private async append(event: {
    rule: string;
    op: RuleVersion["op"];
    origin: Origin;
    by: string;
    version?: number;
    text?: string;
  }): Promise<void> {
    const micros = nextMicros();
    await this.store.write([
      {
        measurement: MEASUREMENT,
        tags: { rule: event.rule },
        fields: {
          op: event.op,
          origin: event.origin,
          by: event.by,
          ...(event.version !== undefined ? { version: event.version } : {}),
          ...(event.text !== undefined ? { text: event.text } : {}),
        },
        timestamp: String(micros),
      },
    ]);
    this.remember(event.rule, {
      version: event.version ?? 0,
      at: new Date(Math.floor(micros / 1000)).toISOString(),
      by: event.by,
      op: event.op,
      origin: event.origin,
      ...(event.text ? { text: event.text } : {}),
    });
  }

  private remember(id: string, version: RuleVersion): void {
    const list = this.history.get(id) ?? [];
    list.push(version);
    this.history.set(id, list);
  }
}

export { RuleError };
