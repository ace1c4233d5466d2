import type { DeviceMessage } from "../ingest/index.ts";
import type { CompiledRule } from "./load.ts";
import { referencedPaths } from "./cel.ts";

export interface ProposedAction {
  rule: string;
  kind: "set" | "suggest" | "clear";
  key: string;
  value: unknown;
  prompt: string | undefined;
  why: string;
  scope: "device" | "subject";
  device: string;
  subject: string | undefined;
}

export type Outcome =
  | { fired: true; actions: ProposedAction[] }
  | { fired: false; reason: "condition_false" | "cooldown" | "no_subject" | "error"; detail?: string };

export function triggerOf(msg: DeviceMessage): string {
  return msg.kind === "event" ? `event:${msg.name}` : msg.kind;
}

/** What CEL sees as `msg`: the contract's fields plus the device, subject and time. */
export function celMessage(msg: DeviceMessage): Record<string, unknown> {
  const base = { device: msg.device, subject: msg.subject ?? "", ts: msg.ts };
  switch (msg.kind) {
    case "telemetry":
      return { ...base, metrics: msg.metrics };
    case "event":
      return { ...base, name: msg.name, props: msg.props };
    case "feedback":
      return { ...base, ...(msg.rating !== undefined ? { rating: msg.rating } : {}), ...(msg.text !== undefined ? { text: msg.text } : {}) };
  }
}

/**
 * Evaluates one rule against one message. Pure: cooldown state comes in as a
 * lookup so the same function serves live evaluation and backtests.
 */
export function evaluate(rule: CompiledRule, msg: DeviceMessage, now: number, lastFired: (rule: string, target: string) => number | undefined): Outcome {
  const { spec } = rule;
  if (spec.scope === "subject" && !msg.subject) return { fired: false, reason: "no_subject" };
  const target = spec.scope === "subject" ? `subject:${msg.subject}` : `device:${msg.device}`;
  if (spec.cooldown !== undefined) {
    const last = lastFired(spec.id, target);
    if (last !== undefined && now - last < spec.cooldown) return { fired: false, reason: "cooldown" };
  }
  const bindings = { msg: celMessage(msg) };
  const cond = rule.when(bindings);
  if (!cond.ok) return { fired: false, reason: "error", detail: cond.error };
  if (cond.value !== true) return { fired: false, reason: "condition_false" };

  const why = explain(rule, bindings.msg);
  const actions: ProposedAction[] = [];
  for (const action of rule.actions) {
    let value: unknown = "value" in action.spec ? action.spec.value : undefined;
    if (action.valueExpr) {
      const result = action.valueExpr(bindings);
      if (!result.ok) return { fired: false, reason: "error", detail: `then.${action.key}: ${result.error}` };
      value = result.value;
    }
    actions.push({
      rule: spec.id,
      kind: action.kind,
      key: action.key,
      value: action.kind === "clear" ? undefined : value,
      prompt: "prompt" in action.spec ? action.spec.prompt : undefined,
      why,
      scope: spec.scope,
      device: msg.device,
      subject: msg.subject,
    });
  }
  return { fired: true, actions };
}

/** "rule cool-theme: msg.metrics.temp > 30 held with msg.metrics.temp = 31.5" */
function explain(rule: CompiledRule, msg: Record<string, unknown>): string {
  const values = referencedPaths(rule.spec.when).map((path) => {
    let node: unknown = { msg };
    for (const part of path.split(".")) node = node && typeof node === "object" ? (node as Record<string, unknown>)[part] : undefined;
    return `${path} = ${JSON.stringify(node)}`;
  });
  const desc = rule.spec.description ? ` (${rule.spec.description})` : "";
  return `rule ${rule.spec.id}${desc}: ${rule.spec.when} held${values.length ? ` with ${values.join(", ")}` : ""}`;
}
