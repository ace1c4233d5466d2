import { unparse as celUnparse, type parse } from "@bufbuild/cel";
import type { AggregateSpec } from "./schema.ts";

type Expr = ReturnType<typeof parse>["expr"];

/** Source text for messages; unparse cannot print an expanded macro (all, exists, map, filter). */
function unparse(expr: Expr): string {
  try {
    return celUnparse(expr);
  } catch {
    return "(a comprehension)";
  }
}

/**
 * @bufbuild/cel ships a checker (check.ts) but does not export it, and it
 * only types constants and identifiers (a select or a call throws
 * "Unsupported expression kind"). So rules are checked here, over the parsed
 * AST, against what the MQTT contract lets a trigger's message hold. Each
 * expression gets the set of CEL types it may have at run time; an operation
 * no combination of them supports is refused, one only some support is left
 * to run time.
 */
type Scalar = "int" | "uint" | "double" | "string" | "bool" | "null" | "bytes" | "list" | "map" | "other";
type Ty =
  | { k: "dyn" }
  | { k: "scalars"; s: ReadonlySet<Scalar> }
  | { k: "object"; label: string; fields: Record<string, Field> }
  | { k: "entries"; of: string; values: Ty };
interface Field {
  ty: Ty;
  /** Why the field may be missing from a message (reading it then is an error), if it may. */
  optional?: string;
}

const dyn: Ty = { k: "dyn" };
const t = (...s: Scalar[]): Ty => ({ k: "scalars", s: new Set(s) });
const DOUBLE = t("double");
const STRING = t("string");
const BOOL = t("bool");
const INT = t("int");

const envelope: Record<string, Field> = { device: { ty: STRING }, subject: { ty: STRING }, ts: { ty: DOUBLE } };

/** What `msg` holds per trigger (engine.ts celMessage, from ingest/messages.ts). */
export function messageType(trigger: string): Ty {
  if (trigger === "telemetry")
    return {
      k: "object",
      label: "telemetry",
      fields: {
        ...envelope,
        metrics: { ty: { k: "entries", of: "metric", values: t("double", "bool", "string") } },
      },
    };
  if (trigger === "feedback")
    return {
      k: "object",
      label: "feedback",
      fields: {
        ...envelope,
        rating: { ty: DOUBLE, optional: "feedback without a rating" },
        text: { ty: STRING, optional: "feedback without a text" },
        sentiment: { ty: DOUBLE, optional: "feedback without a text" },
      },
    };
  if (trigger === "presence")
    return {
      k: "object",
      label: "presence",
      fields: {
        ...envelope,
        event: { ty: STRING },
        online: { ty: BOOL },
        reason: { ty: STRING },
        transport: { ty: STRING },
      },
    };
  return {
    k: "object",
    label: trigger.startsWith("event:") ? `${trigger.slice(6)} event` : "event",
    fields: {
      ...envelope,
      name: { ty: STRING },
      props: { ty: { k: "entries", of: "prop", values: t("double", "bool", "string", "null") } },
    },
  };
}

/** The CEL type of each aggregate function's value (aggregates.ts aggregateValue); JS numbers are CEL doubles. */
export function aggregateType(fn: AggregateSpec["fn"], value: Ty | undefined): Ty {
  switch (fn) {
    case "count":
    case "sum":
    case "distinct":
    case "sessions":
      return DOUBLE;
    case "absent":
      return BOOL;
    case "avg":
    case "min":
    case "max":
    case "mode_share":
      return t("double", "null");
    case "last":
    case "mode":
      return union(value ? scalarsOnly(value) : dyn, t("null"));
  }
}

/** Only numbers, strings and booleans are aggregated (aggregates.ts). */
function scalarsOnly(ty: Ty): Ty {
  const s = setOf(ty);
  if (!s) return t("double", "string", "bool");
  return t(...[...s].filter((x) => x === "double" || x === "string" || x === "bool" || x === "int" || x === "uint"));
}

export interface TypeIssue {
  severity: "error" | "warning";
  message: string;
}

export interface CheckContext {
  msg: Ty;
  /** agg.<name> types; undefined where agg is not available. */
  agg?: Record<string, Ty>;
  /** Whether reading a missing field is an error (when, expr) or just no match (an aggregate's where/value). */
  missingIsError: boolean;
  /** Paths known present (an action's expr runs only where the condition's has() held). */
  guarded?: ReadonlySet<string>;
}

export interface Checked {
  ty: Ty;
  issues: TypeIssue[];
}

/** Types one expression; errors are refusals, warnings what only run time can tell. */
export function typecheck(expr: Expr, ctx: CheckContext, expect?: "bool"): Checked {
  const issues: TypeIssue[] = [];
  const ty = new Walker(ctx, issues).walk(expr, new Set(), ctx.guarded ?? new Set());
  if (expect === "bool") {
    const s = setOf(ty);
    if (s && !s.has("bool"))
      issues.push({ severity: "error", message: `the condition must be a bool, but it is ${describe(ty)}` });
  }
  return { ty, issues };
}

const ARITH = new Set(["_+_", "_-_", "_*_", "_/_", "_%_"]);
const ORDER = new Set(["_<_", "_<=_", "_>_", "_>=_"]);
const NUMERIC: ReadonlySet<Scalar> = new Set(["int", "uint", "double"]);

class Walker {
  constructor(
    private readonly ctx: CheckContext,
    private readonly issues: TypeIssue[],
  ) {}

  private error(message: string) {
    if (!this.issues.some((i) => i.message === message)) this.issues.push({ severity: "error", message });
  }
  private warn(message: string) {
    if (!this.issues.some((i) => i.message === message)) this.issues.push({ severity: "warning", message });
  }

  /** `guarded`: paths a has() to the left of && proved present. */
  walk(expr: Expr | undefined, locals: ReadonlySet<string>, guarded: ReadonlySet<string>): Ty {
    if (!expr) return dyn;
    const kind = expr.exprKind;
    switch (kind.case) {
      case "constExpr": {
        const c = kind.value.constantKind.case;
        if (c === "int64Value") return INT;
        if (c === "uint64Value") return t("uint");
        if (c === "doubleValue") return DOUBLE;
        if (c === "stringValue") return STRING;
        if (c === "boolValue") return BOOL;
        if (c === "nullValue") return t("null");
        if (c === "bytesValue") return t("bytes");
        return t("other");
      }
      case "identExpr": {
        const name = kind.value.name;
        if (locals.has(name)) return dyn;
        if (name === "msg") return this.ctx.msg;
        if (name === "agg" && this.ctx.agg) {
          const fields: Record<string, Field> = {};
          for (const [n, ty] of Object.entries(this.ctx.agg)) fields[n] = { ty };
          return { k: "object", label: "aggregates", fields };
        }
        return dyn;
      }
      case "selectExpr": {
        const { operand, field, testOnly } = kind.value;
        const of = this.walk(operand, locals, guarded);
        const path = `${operand ? unparse(operand) : ""}.${field}`;
        if (of.k === "object") {
          const f = of.fields[field];
          if (!f) {
            // agg.<undeclared> is refused by load.ts with its own message.
            if (of.label !== "aggregates")
              this.error(
                `${path}: ${of.label} messages have no field '${field}' (they have ${Object.keys(of.fields)
                  .map((n) => `msg.${n}`)
                  .join(", ")})`,
              );
            return testOnly ? BOOL : dyn;
          }
          if (testOnly) return BOOL;
          if (f.optional && this.ctx.missingIsError && !guarded.has(path))
            this.warn(
              `${path} is missing from ${f.optional}, which is then an error: guard it with has(${path}) && ...`,
            );
          return f.ty;
        }
        if (of.k === "entries") {
          if (testOnly) return BOOL;
          if (this.ctx.missingIsError && !guarded.has(path))
            this.warn(
              `${path}: whether a message has this ${of.of} is known only at run time (without it, it is an error): guard it with has(${path}) && ...`,
            );
          return of.values;
        }
        if (testOnly) return BOOL;
        return dyn;
      }
      case "callExpr": {
        const { function: fn, args, target } = kind.value;
        if (fn === "_&&_" || fn === "_||_") {
          const left = this.walk(args[0], locals, guarded);
          const more = fn === "_&&_" ? new Set([...guarded, ...hasPaths(args[0])]) : guarded;
          const right = this.walk(args[1], locals, more);
          for (const [side, ty] of [
            [args[0], left],
            [args[1], right],
          ] as const)
            this.needBool(side, ty, fn === "_&&_" ? "&&" : "||");
          return BOOL;
        }
        if (fn === "_?_:_") {
          const cond = this.walk(args[0], locals, guarded);
          this.needBool(args[0], cond, "?:");
          const then = this.walk(args[1], locals, new Set([...guarded, ...hasPaths(args[0])]));
          return union(then, this.walk(args[2], locals, guarded));
        }
        const targetTy = target ? this.walk(target, locals, guarded) : undefined;
        const argTys = args.map((a) => this.walk(a, locals, guarded));
        if (fn === "!_") {
          this.needBool(args[0], argTys[0]!, "!");
          return BOOL;
        }
        if (fn === "-_") return argTys[0]!;
        if (ARITH.has(fn)) return this.arithmetic(fn, args, argTys, guarded);
        if (ORDER.has(fn)) {
          this.ordering(fn, args, argTys, guarded);
          return BOOL;
        }
        if (fn === "_==_" || fn === "_!=_" || fn === "@in") return BOOL;
        if (fn === "_[_]") {
          const of = argTys[0]!;
          return of.k === "entries" ? of.values : dyn;
        }
        if (fn === "int") return INT;
        if (fn === "uint") return t("uint");
        if (fn === "double") return DOUBLE;
        if (fn === "string") return STRING;
        if (fn === "bool") return BOOL;
        if (fn === "size") return INT;
        if (["contains", "startsWith", "endsWith", "matches"].includes(fn)) {
          if (targetTy) {
            const s = setOf(targetTy);
            if (s && !s.has("string"))
              this.error(`${unparse(target!)}.${fn}(): ${unparse(target!)} is ${describe(targetTy)}, not a string`);
          }
          return BOOL;
        }
        return dyn;
      }
      case "listExpr":
        for (const e of kind.value.elements) this.walk(e, locals, guarded);
        return t("list");
      case "structExpr":
        for (const e of kind.value.entries) {
          if (e.keyKind.case === "mapKey") this.walk(e.keyKind.value, locals, guarded);
          this.walk(e.value, locals, guarded);
        }
        return t("map");
      case "comprehensionExpr": {
        const c = kind.value;
        this.walk(c.iterRange, locals, guarded);
        const inner = new Set([...locals, c.iterVar, c.accuVar, ...(c.iterVar2 ? [c.iterVar2] : [])]);
        this.walk(c.accuInit, inner, guarded);
        this.walk(c.loopCondition, inner, guarded);
        this.walk(c.loopStep, inner, guarded);
        return this.walk(c.result, inner, guarded);
      }
      default:
        return dyn;
    }
  }

  private needBool(expr: Expr | undefined, ty: Ty, op: string) {
    const s = setOf(ty);
    if (s && !s.has("bool") && expr) this.error(`${op} needs bools, but ${unparse(expr)} is ${describe(ty)}`);
  }

  private arithmetic(fn: string, args: Expr[], tys: Ty[], guarded: ReadonlySet<string>): Ty {
    const [a, b] = [setOf(tys[0]!), setOf(tys[1]!)];
    const op = fn.slice(1, -1);
    if (!a || !b) return dyn;
    const results = new Set<Scalar>();
    let someBad = false;
    for (const x of a)
      for (const y of b) {
        const r = arithResult(op, x, y);
        if (r) results.add(r);
        else someBad = true;
      }
    const [left, right] = [unparse(args[0]!), unparse(args[1]!)];
    if (results.size === 0) {
      this.error(
        `${left} ${op} ${right}: ${left} is ${describe(tys[0]!)} and ${right} ${describe(tys[1]!)}; ${fix(op, args, a, b)}`,
      );
      return dyn;
    }
    const nullable =
      a.has("null") && left.startsWith("agg.") ? left : b.has("null") && right.startsWith("agg.") ? right : "";
    if (someBad && nullable && !guarded.has(COUNTED))
      this.warn(
        `${left} ${op} ${right}: ${nullable} is null when its window is empty (then an error): guard it with a count, e.g. agg.n > 0 && ...`,
      );
    return { k: "scalars", s: results };
  }

  private ordering(fn: string, args: Expr[], tys: Ty[], guarded: ReadonlySet<string>) {
    const [a, b] = [setOf(tys[0]!), setOf(tys[1]!)];
    if (!a || !b) return;
    let any = false;
    for (const x of a) for (const y of b) if (orderable(x, y)) any = true;
    const op = { "_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">=" }[fn]!;
    const [left, right] = [unparse(args[0]!), unparse(args[1]!)];
    const nullable =
      a.has("null") && left.startsWith("agg.") ? left : b.has("null") && right.startsWith("agg.") ? right : "";
    if (!any) this.error(`${left} ${op} ${right}: ${describe(tys[0]!)} and ${describe(tys[1]!)} cannot be compared`);
    else if (nullable && !guarded.has(COUNTED))
      this.warn(
        `${left} ${op} ${right}: ${nullable} is null when its window is empty (then an error): guard it with a count, e.g. agg.n > 0 && ...`,
      );
  }
}

function arithResult(op: string, x: Scalar, y: Scalar): Scalar | undefined {
  if (x !== y) return undefined;
  if (op === "+" && (x === "string" || x === "list" || x === "bytes")) return x;
  if (op === "%") return x === "int" || x === "uint" ? x : undefined;
  return NUMERIC.has(x) ? x : undefined;
}

function orderable(x: Scalar, y: Scalar): boolean {
  if (NUMERIC.has(x) && NUMERIC.has(y)) return true;
  return x === y && (x === "string" || x === "bool" || x === "bytes");
}

/** How to make the arithmetic typecheck: CEL never converts between int and double by itself. */
function fix(op: string, args: Expr[], a: ReadonlySet<Scalar>, b: ReadonlySet<Scalar>): string {
  const [left, right] = [unparse(args[0]!), unparse(args[1]!)];
  const literal = (e: Expr) => e.exprKind.case === "constExpr" && e.exprKind.value.constantKind.case === "int64Value";
  if (op === "%") {
    if (a.has("double") || b.has("double"))
      return `% needs ints: write ${a.has("double") ? `int(${left})` : left} % ${b.has("double") ? `int(${right})` : right}`;
    return "% needs two ints";
  }
  if (a.has("double") && b.has("int"))
    return literal(args[1]!)
      ? `CEL does not mix int and double: write ${left} ${op} ${right}.0 (or int(${left}) ${op} ${right})`
      : `CEL does not mix int and double: write ${left} ${op} double(${right}) (or int(${left}) ${op} ${right})`;
  if (a.has("int") && b.has("double"))
    return literal(args[0]!)
      ? `CEL does not mix int and double: write ${left}.0 ${op} ${right} (or ${left} ${op} int(${right}))`
      : `CEL does not mix int and double: write double(${left}) ${op} ${right} (or ${left} ${op} int(${right}))`;
  return `${op} needs two numbers of one type${op === "+" ? ", two strings or two lists" : ""}`;
}

/** Stands for "the left of && read an aggregate", taken as the count guard docs/rules.md asks for. */
const COUNTED = "agg:*";

/** Paths has(x.y) proves present, in a conjunction (and COUNTED when it reads agg). */
export function hasPaths(expr: Expr | undefined): string[] {
  if (!expr) return [];
  const k = expr.exprKind;
  if (/\bagg\./.test(unparse(expr)) && !(k.case === "callExpr" && k.value.function === "_&&_")) return [COUNTED];
  if (k.case === "selectExpr" && k.value.testOnly && k.value.operand)
    return [`${unparse(k.value.operand)}.${k.value.field}`];
  if (k.case === "callExpr" && k.value.function === "_&&_") return k.value.args.flatMap(hasPaths);
  return [];
}

function setOf(ty: Ty): ReadonlySet<Scalar> | undefined {
  if (ty.k === "scalars") return ty.s;
  if (ty.k === "object" || ty.k === "entries") return new Set(["map"]);
  return undefined;
}

function union(a: Ty, b: Ty): Ty {
  const [x, y] = [setOf(a), setOf(b)];
  if (!x || !y) return dyn;
  return { k: "scalars", s: new Set([...x, ...y]) };
}

function describe(ty: Ty): string {
  const s = setOf(ty);
  if (!s) return "dyn";
  const names = [...s].map((x) => (x === "other" ? "a timestamp or duration" : x === "int" ? "an int" : `a ${x}`));
  return names.length === 1 ? names[0]! : `${names.slice(0, -1).join(", ")} or ${names.at(-1)!}`;
}
