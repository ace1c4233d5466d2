import type { parse } from "@bufbuild/cel";

type Expr = ReturnType<typeof parse>["expr"];

/**
 * @bufbuild/cel has no runtime cost tracking, so the cost of an expression is
 * bounded statically, as CEL's own cost estimator does: every node costs 1, a
 * regular expression 50, and a comprehension's body is charged once per
 * element of the largest collection a message can hold (64 metrics).
 */
export const LARGEST_COLLECTION = 64;
const REGEX_COST = 50;

export interface ExprFacts {
  cost: number;
  /** Top-level variables read, e.g. msg, agg. */
  variables: Set<string>;
  /** Names read as agg.<name>. */
  aggregates: Set<string>;
}

export function analyse(expr: Expr): ExprFacts {
  const facts: ExprFacts = { cost: 0, variables: new Set(), aggregates: new Set() };
  facts.cost = walk(expr, new Set(), facts);
  return facts;
}

function walk(expr: Expr | undefined, locals: Set<string>, facts: ExprFacts): number {
  if (!expr) return 0;
  const kind = expr.exprKind;
  switch (kind.case) {
    case "constExpr":
      return 1;
    case "identExpr":
      if (!locals.has(kind.value.name)) facts.variables.add(kind.value.name);
      return 1;
    case "selectExpr": {
      const operand = kind.value.operand;
      if (operand?.exprKind.case === "identExpr" && operand.exprKind.value.name === "agg" && !locals.has("agg"))
        facts.aggregates.add(kind.value.field);
      return 1 + walk(operand, locals, facts);
    }
    case "callExpr": {
      const own = kind.value.function === "matches" ? REGEX_COST : 1;
      return (
        own +
        walk(kind.value.target, locals, facts) +
        kind.value.args.reduce((sum, arg) => sum + walk(arg, locals, facts), 0)
      );
    }
    case "listExpr":
      return 1 + kind.value.elements.reduce((sum, e) => sum + walk(e, locals, facts), 0);
    case "structExpr":
      return (
        1 +
        kind.value.entries.reduce(
          (sum, e) =>
            sum +
            walk(e.keyKind.case === "mapKey" ? e.keyKind.value : undefined, locals, facts) +
            walk(e.value, locals, facts),
          0,
        )
      );
    case "comprehensionExpr": {
      const c = kind.value;
      const inner = new Set([...locals, c.iterVar, c.accuVar, ...(c.iterVar2 ? [c.iterVar2] : [])]);
      const body = walk(c.loopCondition, inner, facts) + walk(c.loopStep, inner, facts);
      return (
        walk(c.iterRange, locals, facts) +
        walk(c.accuInit, locals, facts) +
        LARGEST_COLLECTION * body +
        walk(c.result, inner, facts)
      );
    }
    default:
      return 1;
  }
}
