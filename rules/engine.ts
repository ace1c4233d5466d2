import type { RuleMessage } from "./message.ts";
import type { CompiledRule } from "./load.ts";
import { Source, VALUE_FNS, aggregateValue } from "./aggregates.ts";
import { SessionLog } from "./sessions.ts";
import { actionIdOf, recordIdentity } from "./identity.ts";
import { groupOf } from "./experiment.ts";

export interface ProposedAction {
  /** Derived from the rule, target and record (identity.ts): the same trigger always proposes the same id. */
  id: string;
  rule: string;
  kind: "set" | "suggest" | "clear" | "notify";
  /** Profile key; for notify, the webhook URL. */
  key: string;
  value: unknown;
  prompt: string | undefined;
  why: string;
  scope: "device" | "subject";
  device: string;
  subject: string | undefined;
}

export type Outcome =
  | { rule: string; fired: true; actions: ProposedAction[] }
  | {
      rule: string;
      fired: false;
      reason:
        | "condition_false"
        | "cooldown"
        | "no_subject"
        | "no_consent"
        | "prompt_cap"
        | "declined_recently"
        | "unchanged"
        | "held_out"
        | "error";
      detail?: string;
    };

/** The state the engine asks about but does not own: the action log and consent. */
export interface Guards {
  /** When this rule last fired for this target ("device:<id>" or "subject:<id>"). */
  lastFired(rule: string, target: string): number | undefined;
  /** When the target was last asked anything (a suggestion). */
  lastPrompt(target: string): number | undefined;
  /** When the target last declined this rule's suggestion. */
  declinedAt(rule: string, target: string): number | undefined;
  consent(subject: string, purpose: string): boolean;
  /** The target's own profile keys now, to leave out a set or clear that would change nothing. */
  profile(target: string): Readonly<Record<string, unknown>> | undefined;
}

export interface GuardConfig {
  /** At most one prompt per this many sessions of the target. */
  promptEverySessions: number;
  /** A declined suggestion is not offered again for this long. */
  declineBackoffMs: number;
}

export const SESSION_START = "session_start";
const MIN_SESSIONS_KEPT = 64;

export function triggerOf(msg: RuleMessage): string {
  return msg.kind === "event" ? `event:${msg.name}` : msg.kind;
}

/** What CEL sees as `msg`: the contract's fields plus the device, subject and time. */
export function celMessage(msg: RuleMessage): Record<string, unknown> {
  const base = { device: msg.device, subject: msg.subject ?? "", ts: msg.ts };
  switch (msg.kind) {
    case "telemetry":
      return { ...base, metrics: msg.metrics };
    case "event":
      return { ...base, name: msg.name, props: msg.props };
    case "presence":
      return {
        ...base,
        event: msg.event,
        online: msg.event === "connect",
        reason: msg.reason ?? "",
        transport: msg.transport ?? "",
      };
    case "feedback":
      return {
        ...base,
        ...(msg.rating !== undefined ? { rating: msg.rating } : {}),
        ...(msg.text !== undefined ? { text: msg.text } : {}),
        ...("sentiment" in msg && typeof msg.sentiment === "number" ? { sentiment: msg.sentiment } : {}),
      };
  }
}

export type Scope = "device" | "subject";

export const keyOf = (scope: Scope, msg: RuleMessage) => (scope === "device" ? msg.device : msg.subject);

/**
 * Rules indexed by trigger, the windows their aggregates read, and the
 * sessions of every key. The same engine runs live and in backtests; only
 * the guards and the clock differ.
 */
/** How long a sent value counts as holding before the device's apply reaches the profile. */
const INFLIGHT_MS = 10 * 60_000;
const INFLIGHT_MAX = 100_000;
const CLEARED = "\u0000cleared";

export class RuleEngine {
  private byTrigger = new Map<string, CompiledRule[]>();
  private sources = new Map<string, Source>();
  private sourcesByTrigger = new Map<string, Source[]>();
  /** Each rule's aggregates' sources, in declaration order, resolved once per rule set. */
  private ruleSources = new Map<CompiledRule, Source[]>();
  private readonly sessions = { device: new Map<string, SessionLog>(), subject: new Map<string, SessionLog>() };
  private sessionCapacity = MIN_SESSIONS_KEPT;
  /**
   * Values sent but not yet in the target's profile (a profile changes only
   * when the device applies): two messages of one customer on two devices in
   * the same second must not both send the same set.
   */
  private readonly inflight = new Map<string, { value: string; at: number }>();

  constructor(private readonly guardConfig: GuardConfig) {}

  /** Replaces the rule set; windows of sources that stay are kept. Returns the sources that are new (to warm). */
  setRules(rules: readonly CompiledRule[]): Source[] {
    const byTrigger = new Map<string, CompiledRule[]>();
    const sources = new Map<string, Source>();
    const fresh: Source[] = [];
    const ruleSources = new Map<CompiledRule, Source[]>();
    for (const rule of rules) {
      if (!rule.spec.enabled) continue;
      byTrigger.set(rule.spec.on, [...(byTrigger.get(rule.spec.on) ?? []), rule]);
      const own: Source[] = [];
      ruleSources.set(rule, own);
      for (const agg of rule.aggregates) {
        const id = Source.idOf(rule.spec.scope, agg.spec);
        let source = sources.get(id) ?? this.sources.get(id);
        if (!source) {
          source = new Source(id, rule.spec.scope, agg.spec.of, agg.spec.window, agg.where, agg.value);
          fresh.push(source);
        }
        if (!sources.has(id)) source.withValues = false;
        if (VALUE_FNS.has(agg.spec.fn)) source.withValues = true;
        sources.set(id, source);
        own.push(source);
        if (agg.spec.window.kind === "sessions")
          this.sessionCapacity = Math.max(this.sessionCapacity, agg.spec.window.n);
      }
    }
    const sourcesByTrigger = new Map<string, Source[]>();
    for (const source of sources.values())
      if (source.of) sourcesByTrigger.set(source.of, [...(sourcesByTrigger.get(source.of) ?? []), source]);
    this.byTrigger = byTrigger;
    this.sources = sources;
    this.sourcesByTrigger = sourcesByTrigger;
    this.ruleSources = ruleSources;
    return fresh;
  }

  /**
   * Feeds history into windows and sessions. `only` limits it to some sources
   * (warming new ones); `devices` to the device-scoped state of some devices
   * (warming them again after an erasure); `scope` to the state of one scope
   * (in a cluster, a message's device and subject may belong to different
   * partitions, each owned by one node).
   */
  observe(msg: RuleMessage, only?: ReadonlySet<Source>, devices?: ReadonlySet<string>, scope?: Scope): void {
    if (devices && !devices.has(msg.device)) return;
    const trigger = triggerOf(msg);
    if (!only && trigger === `event:${SESSION_START}`) {
      if (scope !== "subject") this.sessionLog("device", msg.device, true)!.start(msg.ts);
      if (msg.subject && !devices && scope !== "device") this.sessionLog("subject", msg.subject, true)!.start(msg.ts);
    }
    const sources = this.sourcesByTrigger.get(trigger);
    // Most messages feed no window: building CEL's view of them would be the engine's main cost.
    if (!sources) return;
    const celMsg = celMessage(msg);
    for (const source of sources) {
      if (only && !only.has(source)) continue;
      if (devices && source.scope !== "device") continue;
      if (scope && source.scope !== scope) continue;
      const key = keyOf(source.scope, msg);
      if (key === undefined) continue;
      source.observe(msg, celMsg, key, this.sessionLog(source.scope, key, false));
    }
  }

  /** Told how long each rule's evaluation took (ms), when set (the platform's refeed_rule_evaluation_seconds). */
  timed: ((rule: string, ms: number) => void) | undefined;

  /** Evaluates the rules indexed under the message's trigger (of one scope, when given). */
  evaluate(msg: RuleMessage, now: number, guards: Guards, scope?: Scope): Outcome[] {
    const indexed = this.byTrigger.get(triggerOf(msg));
    if (!indexed) return [];
    const rules = scope ? indexed.filter((r) => r.spec.scope === scope) : indexed;
    const celMsg = celMessage(msg);
    // Rules that share a source read its window once per message.
    const reads = new Map<Source, ReturnType<Source["read"]>>();
    // Two suggestion rules on one message must not both pass the prompt cap.
    const asked = new Set<string>();
    const capped: Guards = { ...guards, lastPrompt: (target) => (asked.has(target) ? now : guards.lastPrompt(target)) };
    return rules.map((rule) => {
      const started = this.timed ? performance.now() : 0;
      const outcome = this.evaluateRule(rule, msg, celMsg, now, capped, reads);
      this.timed?.(rule.spec.id, performance.now() - started);
      if (outcome.fired)
        for (const a of outcome.actions)
          if (a.kind === "suggest") asked.add(a.scope === "subject" ? `subject:${a.subject}` : `device:${a.device}`);
      return outcome;
    });
  }

  /** Observe, then evaluate: the message itself counts in its own windows. */
  handle(msg: RuleMessage, now: number, guards: Guards, scope?: Scope): Outcome[] {
    this.observe(msg, undefined, undefined, scope);
    return this.evaluate(msg, now, guards, scope);
  }

  /** Whether a message of this trigger feeds a window or triggers a rule of this scope (else routing it is waste). */
  wants(trigger: string, scope: Scope): boolean {
    if (trigger === `event:${SESSION_START}`) return true;
    if (this.byTrigger.get(trigger)?.some((r) => r.spec.scope === scope)) return true;
    return this.sourcesByTrigger.get(trigger)?.some((s) => s.scope === scope) ?? false;
  }

  /** Sessions of a target that started after `ts` (for the prompt cap). */
  sessionsSince(target: string, ts: number): number {
    const [scope, key] = splitTarget(target);
    return this.sessions[scope].get(key)?.since(ts) ?? 0;
  }

  /** Drops the device-scoped windows and sessions of these devices, to be warmed again from what InfluxDB holds now. */
  forgetDevices(devices: ReadonlySet<string>): void {
    for (const device of devices) this.sessions.device.delete(device);
    for (const source of this.sources.values())
      if (source.scope === "device") for (const device of devices) source.forget(device);
  }

  /** Lengths of the device-scoped time windows. */
  get deviceWindows(): number[] {
    return [...this.sources.values()].map((s) => (s.scope === "device" && s.window.kind === "time" ? s.window.ms : 0));
  }

  /** Triggers whose messages the device-scoped sources read. */
  get deviceTriggers(): Set<string> {
    const triggers = new Set<string>([`event:${SESSION_START}`]);
    for (const source of this.sources.values()) if (source.scope === "device" && source.of) triggers.add(source.of);
    return triggers;
  }

  /** Drops everything held about a subject (erasure). */
  forgetSubject(subject: string): void {
    this.sessions.subject.delete(subject);
    const prefix = `subject:${subject}\u0000`;
    for (const key of this.inflight.keys()) if (key.startsWith(prefix)) this.inflight.delete(key);
    for (const source of this.sources.values()) if (source.scope === "subject") source.forget(subject);
  }

  get stats(): { rules: number; sources: number; keys: number; sessionKeys: number } {
    let keys = 0;
    for (const s of this.sources.values()) keys += s.keys;
    let rules = 0;
    for (const list of this.byTrigger.values()) rules += list.length;
    return {
      rules,
      sources: this.sources.size,
      keys,
      sessionKeys: this.sessions.device.size + this.sessions.subject.size,
    };
  }

  private sessionLog(scope: "device" | "subject", key: string, create: boolean): SessionLog | undefined {
    let log = this.sessions[scope].get(key);
    if (!log && create) this.sessions[scope].set(key, (log = new SessionLog(this.sessionCapacity)));
    return log;
  }

  private evaluateRule(
    rule: CompiledRule,
    msg: RuleMessage,
    celMsg: Record<string, unknown>,
    now: number,
    guards: Guards,
    reads: Map<Source, ReturnType<Source["read"]>>,
  ): Outcome {
    const { spec } = rule;
    const id = spec.id;
    if (spec.scope === "subject" && !msg.subject) return { rule: id, fired: false, reason: "no_subject" };
    if (rule.purpose && msg.subject && !guards.consent(msg.subject, rule.purpose))
      return { rule: id, fired: false, reason: "no_consent" };
    const target = spec.scope === "subject" ? `subject:${msg.subject}` : `device:${msg.device}`;
    if (spec.cooldown !== undefined) {
      const last = guards.lastFired(id, target);
      if (last !== undefined && now - last < spec.cooldown) return { rule: id, fired: false, reason: "cooldown" };
    }
    const key = keyOf(spec.scope, msg)!;
    const agg: Record<string, unknown> = {};
    const sources = this.ruleSources.get(rule)!;
    rule.aggregates.forEach((a, i) => {
      const source = sources[i]!;
      let read = reads.get(source);
      if (!read) reads.set(source, (read = source.read(key, now, this.sessionLog(spec.scope, key, false))));
      agg[a.name] = aggregateValue(a.spec.fn, read, a.spec.of !== undefined);
    });
    const bindings = { msg: celMsg, agg };
    const cond = rule.when(bindings);
    if (!cond.ok) return { rule: id, fired: false, reason: "error", detail: cond.error };
    if (cond.value !== true) return { rule: id, fired: false, reason: "condition_false" };

    if (rule.actions.some((a) => a.kind === "suggest")) {
      const declined = guards.declinedAt(id, target);
      if (declined !== undefined && now - declined < this.guardConfig.declineBackoffMs)
        return { rule: id, fired: false, reason: "declined_recently" };
      const asked = guards.lastPrompt(target);
      if (asked !== undefined && this.sessionsSince(target, asked) < this.guardConfig.promptEverySessions) {
        return {
          rule: id,
          fired: false,
          reason: "prompt_cap",
          detail: `${this.sessionsSince(target, asked)} of ${this.guardConfig.promptEverySessions} sessions since the last prompt`,
        };
      }
    }

    const why = explain(rule, bindings);
    const record = recordIdentity(msg);
    const actions: ProposedAction[] = [];
    // Read once, and only when a set or clear may be left out.
    let profile: Readonly<Record<string, unknown>> | undefined | null = null;
    const held: string[] = [];
    for (const [index, action] of rule.actions.entries()) {
      let value: unknown =
        "value" in action.spec ? action.spec.value : "message" in action.spec ? action.spec.message : undefined;
      if (action.valueExpr) {
        const result = action.valueExpr(bindings);
        if (!result.ok)
          return { rule: id, fired: false, reason: "error", detail: `then.${action.key}: ${result.error}` };
        value = result.value;
      }
      // Suggestions are asks: the prompt cap and the decline back-off say when to ask again (story 7).
      if ((action.kind === "set" || action.kind === "clear") && !spec.resend) {
        // The same value sent at every session drowns the action log and every timeline in repeats.
        if (profile === null) profile = guards.profile(target);
        const has = profile !== undefined && Object.hasOwn(profile, action.key);
        const sent = this.inflightValue(target, action.key, now);
        const wanted = action.kind === "clear" ? CLEARED : JSON.stringify(value);
        if (sent === wanted || (action.kind === "clear" ? !has : has && sameJson(profile![action.key], value))) {
          held.push(action.kind === "clear" ? `${action.key} is not set` : `${action.key} is already ${wanted}`);
          continue;
        }
      }
      actions.push({
        id: actionIdOf(id, target, record, index),
        rule: id,
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
    if (actions.length === 0) return { rule: id, fired: false, reason: "unchanged", detail: held.join("; ") };
    // Last of the guards, so held-out owners are those who would have got the action: the groups compare.
    if (spec.experiment && groupOf(id, target, spec.experiment.holdout) === "held_out")
      return { rule: id, fired: false, reason: "held_out" };
    if (!spec.resend) for (const action of actions) this.markInflight(target, action, now);
    return { rule: id, fired: true, actions };
  }

  private inflightValue(target: string, key: string, now: number): string | undefined {
    const entry = this.inflight.get(`${target}\u0000${key}`);
    return entry && now - entry.at < INFLIGHT_MS ? entry.value : undefined;
  }

  private markInflight(target: string, action: ProposedAction, now: number): void {
    if (action.kind === "notify" || action.kind === "suggest") return;
    const key = `${target}\u0000${action.key}`;
    // Re-inserted so the map's order is by time and the oldest go first.
    this.inflight.delete(key);
    this.inflight.set(key, { value: action.kind === "clear" ? CLEARED : JSON.stringify(action.value), at: now });
    for (const [old, entry] of this.inflight) {
      if (this.inflight.size <= INFLIGHT_MAX && now - entry.at < INFLIGHT_MS) break;
      this.inflight.delete(old);
    }
  }
}

/** JSON equality, whatever the order of object keys. */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every(
    (k) => Object.hasOwn(b, k) && sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]),
  );
}

function splitTarget(target: string): ["device" | "subject", string] {
  const at = target.indexOf(":");
  return [target.slice(0, at) as "device" | "subject", target.slice(at + 1)];
}

/** "rule cool-theme: msg.metrics.temp > 30 held with msg.metrics.temp = 31.5" */
function explain(rule: CompiledRule, bindings: Record<string, unknown>): string {
  const paths = [...new Set(rule.spec.when.match(/\b(msg|agg)(\.[A-Za-z_][A-Za-z0-9_]*)+/g) ?? [])];
  const values = paths.map((path) => {
    let node: unknown = bindings;
    for (const part of path.split("."))
      node = node && typeof node === "object" ? (node as Record<string, unknown>)[part] : undefined;
    return `${path} = ${JSON.stringify(node)}`;
  });
  const desc = rule.spec.description ? ` (${rule.spec.description})` : "";
  return `rule ${rule.spec.id}${desc}: ${rule.spec.when} held${values.length ? ` with ${values.join(", ")}` : ""}`;
}
