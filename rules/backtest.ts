import type { Store } from "../store/index.ts";
import { RuleEngine, SESSION_START, type GuardConfig, type Outcome } from "./engine.ts";
import type { CompiledRule } from "./load.ts";
import { readHistory } from "./history.ts";

export interface BacktestReport {
  rule: string;
  from: string;
  to: string;
  /** Messages the rule's trigger saw in the period. */
  evaluated: number;
  fired: number;
  /** Outcomes that did not fire, by reason. */
  held: Record<string, number>;
  /** Who it would have fired for, most often first (at most 100). */
  targets: Array<{ target: string; fires: number; lastWhy: string }>;
  samples: string[];
  /** Why evaluations failed at run time (held.error), by message, most frequent first (at most 20). */
  errors: Array<{ message: string; count: number; lastTarget: string }>;
}

export interface BacktestOptions {
  sinceMs: number;
  now: number;
  guards: GuardConfig;
  /** How far before the period history is read so windows start full. */
  lookbackMs: number;
  consent(subject: string, purpose: string): boolean;
}

/**
 * Replays stored history through one rule with its own engine, clock and
 * guard state. Nothing is proposed or sent: the result is a report.
 */
export async function backtest(store: Store, rule: CompiledRule, options: BacktestOptions): Promise<BacktestReport> {
  const engine = new RuleEngine(options.guards);
  engine.setRules([{ ...rule, spec: { ...rule.spec, enabled: true } }]);
  const from = options.now - options.sinceMs;
  const fired = new Map<string, number>();
  const prompts = new Map<string, number>();
  const targets = new Map<string, { fires: number; lastWhy: string }>();
  const held: Record<string, number> = {};
  const samples: string[] = [];
  /** What the rule's own sets and clears would have made of each target's profile. */
  const profiles = new Map<string, Record<string, unknown>>();
  const errors = new Map<string, { count: number; lastTarget: string }>();
  let evaluated = 0;
  let total = 0;

  const triggers = new Set<string>([rule.spec.on, `event:${SESSION_START}`]);
  for (const a of rule.aggregates) if (a.spec.of) triggers.add(a.spec.of);
  await readHistory(store, triggers, from - options.lookbackMs, options.now, (msg) => {
    engine.observe(msg);
    if (msg.ts < from) return;
    const outcomes: Outcome[] = engine.evaluate(msg, msg.ts, {
      lastFired: (r, target) => fired.get(`${r}|${target}`),
      lastPrompt: (target) => prompts.get(target),
      declinedAt: () => undefined,
      consent: (subject, purpose) => options.consent(subject, purpose),
      profile: (target) => profiles.get(target),
    });
    if (outcomes.length > 0) evaluated += 1;
    for (const outcome of outcomes) {
      if (!outcome.fired) {
        held[outcome.reason] = (held[outcome.reason] ?? 0) + 1;
        if (outcome.reason === "error") {
          const message = outcome.detail ?? "unknown error";
          const entry = errors.get(message) ?? { count: 0, lastTarget: "" };
          entry.count += 1;
          entry.lastTarget = rule.spec.scope === "subject" ? `subject:${msg.subject}` : `device:${msg.device}`;
          errors.set(message, entry);
        }
        continue;
      }
      total += 1;
      const first = outcome.actions[0]!;
      const target = first.scope === "subject" ? `subject:${first.subject}` : `device:${first.device}`;
      fired.set(`${outcome.rule}|${target}`, msg.ts);
      for (const a of outcome.actions) {
        if (a.kind !== "set" && a.kind !== "clear") continue;
        const profile = profiles.get(target) ?? {};
        if (a.kind === "set") profile[a.key] = a.value;
        else delete profile[a.key];
        profiles.set(target, profile);
      }
      if (outcome.actions.some((a) => a.kind === "suggest")) prompts.set(target, msg.ts);
      const entry = targets.get(target) ?? { fires: 0, lastWhy: "" };
      entry.fires += 1;
      entry.lastWhy = first.why;
      targets.set(target, entry);
      if (samples.length < 5) samples.push(first.why);
    }
  });

  return {
    rule: rule.spec.id,
    from: new Date(from).toISOString(),
    to: new Date(options.now).toISOString(),
    evaluated,
    fired: total,
    held,
    targets: [...targets.entries()]
      .map(([target, t]) => ({ target, ...t }))
      .sort((a, b) => b.fires - a.fires || a.target.localeCompare(b.target))
      .slice(0, 100),
    samples,
    errors: [...errors.entries()]
      .map(([message, e]) => ({ message, ...e }))
      .sort((a, b) => b.count - a.count || a.message.localeCompare(b.message))
      .slice(0, 20),
  };
}
