import { LineCounter, parseDocument, isNode } from "yaml";
import type { z } from "zod";
import { compile, CelCompileError, type Evaluate } from "./cel.ts";
import { ruleSchema, type ActionSpec, type RuleSpec } from "./schema.ts";

export interface CompiledAction {
  spec: ActionSpec;
  kind: "set" | "suggest" | "clear";
  key: string;
  /** Present when the value is computed per message. */
  valueExpr: Evaluate | undefined;
}

export interface CompiledRule {
  spec: RuleSpec;
  source: string;
  when: Evaluate;
  actions: CompiledAction[];
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

/** Parses one rule document (YAML or JSON text). Throws RuleError naming the line and field. */
export function loadRule(text: string, source: string): CompiledRule {
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

  const celAt = (path: (string | number)[], expr: string): Evaluate => {
    try {
      return compile(expr);
    } catch (err) {
      if (err instanceof CelCompileError) throw new RuleError(source, lineOf(path), path.join("."), `CEL: ${err.message}`);
      throw err;
    }
  };
  return {
    spec,
    source,
    when: celAt(["when"], spec.when),
    actions: spec.then.map((a, i) => {
      const kind = "set" in a ? "set" : "suggest" in a ? "suggest" : "clear";
      const key = "set" in a ? a.set : "suggest" in a ? a.suggest : a.clear;
      const valueExpr = "expr" in a && a.expr !== undefined ? celAt(["then", i, "expr"], a.expr) : undefined;
      return { spec: a, kind, key, valueExpr };
    }),
  };
}

function fromZod(error: z.ZodError, source: string, lineOf: (p: readonly PropertyKey[]) => number | undefined): RuleError {
  const issue = error.issues[0]!;
  const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
  let reason = issue.message;
  if (issue.code === "unrecognized_keys") reason = `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}`;
  const field = issue.code === "unrecognized_keys" && issue.keys.length === 1 ? [...path, issue.keys[0]!].join(".") : path.join(".");
  const linePath = issue.code === "unrecognized_keys" && issue.keys.length === 1 ? [...path, issue.keys[0]!] : path;
  return new RuleError(source, lineOf(linePath), field, reason);
}
