import { z } from "zod";
import { microsOfRow } from "../store/clock.ts";
import { topic } from "../changes/index.ts";
import { RULE_VERSIONS } from "./queries.ts";

const fields = {
  rule: z.string().min(1),
  micros: z.number().int().nonnegative(),
  origin: z.enum(["file", "api"]),
  by: z.string(),
};
/** A change to one rule, as stored in `rule_versions` and carried by the feed. */
export const ruleEventSchema = z.discriminatedUnion("op", [
  z.object({ op: z.literal("version"), ...fields, version: z.number().int().positive(), text: z.string() }),
  z.object({ op: z.literal("enable"), ...fields }),
  z.object({ op: z.literal("disable"), ...fields }),
  z.object({ op: z.literal("delete"), ...fields }),
]);
export type RuleEvent = z.infer<typeof ruleEventSchema>;

export const ruleChanges = topic<RuleEvent>("rules", ruleEventSchema, (e) => `rules:${e.rule}:${e.micros}`);

export const RULES_MEASUREMENT = RULE_VERSIONS;

/** A `rule_versions` row as the event it recorded. */
export const ruleRowToEvent = (row: Record<string, unknown>): unknown => ({
  op: row.op,
  rule: row.rule,
  micros: row.time instanceof Date ? microsOfRow(row.time) : undefined,
  origin: row.origin,
  by: typeof row.by === "string" ? row.by : "unknown",
  ...(row.op === "version" ? { version: Number(row.version), text: row.text ?? "" } : {}),
});

/** Where a rule stands after its events: its newest version (or deletion) and any toggle since. */
export interface RuleStanding {
  /** The newest `version` or `delete`; undefined when the rule was only toggled. */
  last: Extract<RuleEvent, { op: "version" | "delete" }> | undefined;
  /** The newest `version`, deleted or not. */
  lastVersion: Extract<RuleEvent, { op: "version" }> | undefined;
  /** The newest enable/disable after `last`. */
  toggle: Extract<RuleEvent, { op: "enable" | "disable" }> | undefined;
  /** The newest event of all. */
  newest: RuleEvent | undefined;
}

export interface CatalogView {
  /** Answers true when the event was new (a repeat changes nothing and answers false). */
  apply(event: RuleEvent): boolean;
  /** The rule's events, oldest first. */
  history(rule: string): readonly RuleEvent[];
  standing(rule: string): RuleStanding;
  rules(): string[];
}

/** The rule catalog's history as its events make it: each event once, in time order, whatever order they came in. */
export function createCatalogView(): CatalogView {
  const byRule = new Map<string, RuleEvent[]>();
  const seen = new Set<string>();
  return {
    apply(event) {
      const identity = ruleChanges.identity(event);
      if (seen.has(identity)) return false;
      seen.add(identity);
      const list = byRule.get(event.rule) ?? [];
      let at = list.length;
      while (at > 0 && later(list[at - 1]!, event)) at--;
      list.splice(at, 0, event);
      byRule.set(event.rule, list);
      return true;
    },
    history: (rule) => byRule.get(rule) ?? [],
    standing(rule) {
      const list = byRule.get(rule) ?? [];
      const standing: RuleStanding = {
        last: undefined,
        lastVersion: undefined,
        toggle: undefined,
        newest: list.at(-1),
      };
      for (const event of list) {
        if (event.op === "version" || event.op === "delete") {
          standing.last = event;
          standing.toggle = undefined;
          if (event.op === "version") standing.lastVersion = event;
        } else {
          standing.toggle = event;
        }
      }
      return standing;
    },
    rules: () => [...byRule.keys()],
  };
}

/** Time order; events of the same microsecond (two nodes) by a fixed order, so every node agrees. */
function later(a: RuleEvent, b: RuleEvent): boolean {
  if (a.micros !== b.micros) return a.micros > b.micros;
  return `${a.op}:${a.origin}:${a.by}` > `${b.op}:${b.origin}:${b.by}`;
}
