import { LineCounter, parseDocument, isNode } from "yaml";
import { parse } from "@bufbuild/cel";
import type { z } from "zod";
import { compile, CelCompileError, type Evaluate } from "./cel.ts";
import { analyse } from "./cost.ts";
import { aggregateType, hasPaths, messageType, typecheck, type CheckContext } from "./typecheck.ts";
import { ruleSchema, type ActionSpec, type AggregateSpec, type RuleSpec } from "./schema.ts";

export interface CompiledAction {
  spec: ActionSpec;
  kind: "set" | "suggest" | "clear" | "notify";
  /** The profile key, or the webhook URL for notify. */
  key: string;
  /** Present when the value (or notify message) is computed per message. */
  valueExpr: Evaluate | undefined;
}

export interface CompiledAggregate {
  name: string;
  spec: AggregateSpec;
  where: Evaluate | undefined;
  value: Evaluate | undefined;
}

export interface CompiledRule {
  spec: RuleSpec;
  /** Where it came from: a file path, or `api`. */
  source: string;
  /** The text it was loaded from, kept for versions and backtests. */
  text: string;
  when: Evaluate;
  aggregates: CompiledAggregate[];
  actions: CompiledAction[];
  /** The consent purpose a subject must have granted, if any. */
  purpose: string | undefined;
  /** What the type check could not rule out, for a person to look at; the rule runs. */
  warnings: RuleWarning[];
}

/** Something only run time can tell, e.g. a metric a message may not have. */
export interface RuleWarning {
  line: number | undefined;
  field: string;
  message: string;
}

/** A rule that cannot be loaded, with where and what, for a person to fix. */
export class RuleError extends Error {
  readonly code = "REFEED_RULE_INVALID";
  constructor(
    readonly source: string,
    readonly line: number | undefined,
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${source}${line ? `:${line}` : ""}: ${field ? `${field}: ` : ""}${reason}`);
  }
}

export interface LoadOptions {
  /** The static cost bound of one CEL expression (see cost.ts). */
  maxCost?: number;
}
export const DEFAULT_MAX_COST = 5_000;

/** Parses one rule document (YAML or JSON text). Throws RuleError naming the line and field. */
export function loadRule(text: string, source: string, options: LoadOptions = {}): CompiledRule {
  const maxCost = options.maxCost ?? DEFAULT_MAX_COST;
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new RuleError(source, lines.linePos(e.pos[0]).line, "", e.message.split("\n")[0]!);
  }
  const lineOf = (path: readonly PropertyKey[]): number | undefined => {
    for (let p = [...path]; ; p = p.slice(0, -1)) {
      const node = p.length === 0 ? doc.contents : doc.getIn(p as unknown[], true);
      if (isNode(node) && node.range) return lines.linePos(node.range[0]).line;
      if (p.length === 0) return undefined;
    }
  };
  const result = ruleSchema.safeParse(doc.toJS());
  if (!result.success) throw fromZod(result.error, source, lineOf);
  const spec = result.data;
  const declared = new Set(Object.keys(spec.aggregates ?? {}));

  const warnings: RuleWarning[] = [];
  /** Compiles one expression, checking its variables, types and cost where it stands. */
  const cel = (
    path: (string | number)[],
    text: string,
    variables: readonly string[],
    types: CheckContext,
    expect?: "bool",
  ): { run: Evaluate; ty: ReturnType<typeof typecheck>["ty"]; expr: typeof parsed } => {
    const fail = (reason: string) => new RuleError(source, lineOf(path), path.join("."), reason);
    let facts;
    let parsed: ReturnType<typeof parse>["expr"];
    try {
      parsed = parse(text).expr;
      facts = analyse(parsed);
    } catch (err) {
      throw fail(`CEL: ${(err as Error).message}`);
    }
    const unknown = [...facts.variables].filter((v) => !variables.includes(v));
    if (unknown.length > 0)
      throw fail(`CEL: unknown variable ${unknown.join(", ")} (available: ${variables.join(", ")})`);
    const undeclared = [...facts.aggregates].filter((a) => !declared.has(a));
    if (undeclared.length > 0) throw fail(`CEL: agg.${undeclared[0]} is not declared under aggregates`);
    if (facts.cost > maxCost) throw fail(`CEL: estimated cost ${facts.cost} exceeds the limit of ${maxCost}`);
    const checked = typecheck(parsed, types, expect);
    const error = checked.issues.find((i) => i.severity === "error");
    if (error) throw fail(`CEL: ${error.message}`);
    for (const w of checked.issues) warnings.push({ line: lineOf(path), field: path.join("."), message: w.message });
    try {
      return { run: compile(text), ty: checked.ty, expr: parsed };
    } catch (err) {
      if (err instanceof CelCompileError) throw fail(`CEL: ${err.message}`);
      throw err;
    }
  };

  const aggTypes: NonNullable<CheckContext["agg"]> = {};
  const aggregates = Object.entries(spec.aggregates ?? {}).map(([name, a]) => {
    // An aggregate's expressions read the messages it counts, not the rule's trigger; a missing field there is no match.
    const types: CheckContext = { msg: messageType(a.of ?? spec.on), missingIsError: false };
    const where = a.where !== undefined ? cel(["aggregates", name, "where"], a.where, ["msg"], types) : undefined;
    const value = a.value !== undefined ? cel(["aggregates", name, "value"], a.value, ["msg"], types) : undefined;
    aggTypes[name] = aggregateType(a.fn, value?.ty);
    return { name, spec: a, where: where?.run, value: value?.run };
  });
  const ruleVars = ["msg", "agg"];
  const ruleTypes: CheckContext = { msg: messageType(spec.on), agg: aggTypes, missingIsError: true };
  const when = cel(["when"], spec.when, ruleVars, ruleTypes, "bool");
  const actionTypes: CheckContext = { ...ruleTypes, guarded: new Set(hasPaths(when.expr)) };
  return {
    spec,
    source,
    text,
    when: when.run,
    aggregates,
    warnings,
    purpose: spec.purpose ?? (spec.scope === "subject" ? "personalization" : undefined),
    actions: spec.then.map((a, i) => {
      const kind = "set" in a ? "set" : "suggest" in a ? "suggest" : "clear" in a ? "clear" : "notify";
      const key = "set" in a ? a.set : "suggest" in a ? a.suggest : "clear" in a ? a.clear : a.notify;
      const valueExpr =
        "expr" in a && a.expr !== undefined ? cel(["then", i, "expr"], a.expr, ruleVars, actionTypes).run : undefined;
      return { spec: a, kind, key, valueExpr };
    }),
  };
}

function fromZod(
  error: z.ZodError,
  source: string,
  lineOf: (p: readonly PropertyKey[]) => number | undefined,
): RuleError {
  const issue = error.issues[0]!;
  const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
  let reason = issue.message;
  if (issue.code === "unrecognized_keys")
    reason = `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}`;
  const field =
    issue.code === "unrecognized_keys" && issue.keys.length === 1
      ? [...path, issue.keys[0]!].join(".")
      : path.join(".");
  const linePath = issue.code === "unrecognized_keys" && issue.keys.length === 1 ? [...path, issue.keys[0]!] : path;
  return new RuleError(source, lineOf(linePath), field, reason);
}
