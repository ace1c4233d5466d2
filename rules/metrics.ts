import { Counter, Histogram, type Registry } from "prom-client";
import type { Logger } from "pino";
import type { Outcome } from "./engine.ts";

/** How often one rule's run-time errors reach the log: a broken rule on a busy trigger must not flood it. */
export const ERROR_LOG_EVERY_MS = 60_000;

export interface RuleOutcomes {
  /** Counts the outcomes of one message and logs errors (at most once a minute per rule, with a count). */
  record(outcomes: readonly Outcome[], device: string, now: number): void;
  /** One rule's evaluation of one message took this long (ms). */
  timed(rule: string, ms: number): void;
  /** Logs the errors counted since each rule's last line, once that is a minute old (or now, at close). */
  flush(now: number, all?: boolean): void;
}

export function ruleOutcomes(registry: Registry, log: Logger): RuleOutcomes {
  const registers = [registry];
  const evaluations = new Counter({
    name: "refeed_rule_evaluations_total",
    help: "Rule evaluations (one per rule per message of its trigger), by rule",
    labelNames: ["rule"],
    registers,
  });
  const fired = new Counter({
    name: "refeed_rule_fired_total",
    help: "Evaluations that fired (proposed actions), by rule",
    labelNames: ["rule"],
    registers,
  });
  const held = new Counter({
    name: "refeed_rule_held_total",
    help: "Evaluations that did not fire, by rule and reason (condition_false, cooldown, no_consent, error, ...)",
    labelNames: ["rule", "reason"],
    registers,
  });
  const errors = new Counter({
    name: "refeed_rule_errors_total",
    help: "Evaluations whose CEL failed at run time (also counted in held with reason error), by rule",
    labelNames: ["rule"],
    registers,
  });
  const took = new Histogram({
    name: "refeed_rule_evaluation_seconds",
    help: "Time one rule's evaluation of one message took (windows read, CEL run, guards), by rule",
    labelNames: ["rule"],
    buckets: [0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025],
    registers,
  });
  /** Per rule: when its last error line was written, and the errors since (not logged yet). */
  const pending = new Map<string, { loggedAt: number; count: number; detail: string; device: string }>();
  const write = (rule: string, p: { count: number; detail: string; device: string }) =>
    log.warn(
      { rule, errors: p.count, detail: p.detail, device: p.device, everyMs: ERROR_LOG_EVERY_MS },
      `rule ${rule} could not be evaluated: ${p.detail}`,
    );
  return {
    timed(rule, ms) {
      took.observe({ rule }, ms / 1000);
    },
    record(outcomes, device, now) {
      for (const o of outcomes) {
        evaluations.inc({ rule: o.rule });
        if (o.fired) {
          fired.inc({ rule: o.rule });
          continue;
        }
        held.inc({ rule: o.rule, reason: o.reason });
        if (o.reason !== "error") continue;
        errors.inc({ rule: o.rule });
        const detail = o.detail ?? "unknown error";
        const p = pending.get(o.rule);
        if (!p || now - p.loggedAt >= ERROR_LOG_EVERY_MS) {
          const line = { count: (p?.count ?? 0) + 1, detail, device };
          write(o.rule, line);
          pending.set(o.rule, { loggedAt: now, count: 0, detail, device });
        } else Object.assign(p, { count: p.count + 1, detail, device });
      }
    },
    flush(now, all = false) {
      for (const [rule, p] of pending) {
        if (p.count > 0 && (all || now - p.loggedAt >= ERROR_LOG_EVERY_MS)) {
          write(rule, p);
          pending.set(rule, { ...p, loggedAt: now, count: 0 });
        } else if (p.count === 0 && now - p.loggedAt >= ERROR_LOG_EVERY_MS) pending.delete(rule);
      }
    },
  };
}
