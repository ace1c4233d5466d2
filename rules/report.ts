import type { Store } from "../store/index.ts";
import { actionRowsSince } from "../actions/queries.ts";
import { ownerOutcomeRows } from "../ingest/queries.ts";
import type { RuleVersion } from "./catalog.ts";
import type { RuleSpec } from "./schema.ts";
import { assignmentsOf } from "./assignments.ts";
import { compare, describeOutcome, outcomeWindow, type Comparison, type OutcomeMeasure } from "./experiment.ts";

const STEPS = ["delivered", "applied", "accepted", "declined", "undone", "expired", "failed"] as const;
type Step = (typeof STEPS)[number];
type Funnel = Record<"proposed" | Step | "unchanged", number>;
const emptyFunnel = (): Funnel => ({
  proposed: 0,
  delivered: 0,
  applied: 0,
  accepted: 0,
  declined: 0,
  undone: 0,
  expired: 0,
  failed: 0,
  unchanged: 0,
});

interface ActionFacts {
  at: number;
  kind: string;
  owner: string;
  reached: Set<string>;
}

const ratio = (a: number, b: number) => (b > 0 ? a / b : null);

/**
 * What a rule's actions achieved, from the action log, the assignments and
 * the devices' own records in InfluxDB: the same answer after a restart and
 * on any node of a cluster.
 */
export async function ruleReport(
  store: Store,
  spec: RuleSpec,
  history: readonly RuleVersion[],
  options: { since: number; until: number; bucketMs: number },
) {
  const { since, until, bucketMs } = options;
  const actions = new Map<string, ActionFacts>();
  for await (const rows of store.stream(actionRowsSince(since))) {
    for (const row of rows) {
      const id = String(row.action);
      if (row.status === "proposed") {
        if (row.rule !== spec.id || actions.has(id)) continue;
        const at = new Date(row.time).getTime();
        actions.set(id, { at, kind: String(row.kind), owner: String(row.owner), reached: new Set() });
      } else actions.get(id)?.reached.add(String(row.status));
    }
  }

  // A version runs from its record until the next one.
  const spans = history
    .filter((v) => v.op === "version")
    .map((v, i, all) => ({
      version: v.version,
      from: Date.parse(v.at),
      to: all[i + 1] ? Date.parse(all[i + 1]!.at) : undefined,
    }));
  const versionAt = (at: number) => [...spans].reverse().find((s) => s.from <= at) ?? spans[0];

  const byVersion = new Map<number, { funnel: Funnel; owners: Set<string>; asks: number; answers: number }>();
  const buckets = new Map<number, Record<string, number>>();
  for (const a of actions.values()) {
    const span = versionAt(a.at);
    const v = span?.version ?? 0;
    let entry = byVersion.get(v);
    if (!entry) byVersion.set(v, (entry = { funnel: emptyFunnel(), owners: new Set(), asks: 0, answers: 0 }));
    entry.funnel.proposed++;
    for (const s of STEPS) if (a.reached.has(s)) entry.funnel[s]++;
    entry.owners.add(a.owner);
    const answered = a.reached.has("accepted") || a.reached.has("declined");
    if (a.kind === "suggest") {
      entry.asks++;
      if (answered) entry.answers++;
    }
    const at = since + Math.floor((a.at - since) / bucketMs) * bucketMs;
    let b = buckets.get(at);
    if (!b)
      buckets.set(
        at,
        (b = Object.fromEntries(
          ["proposed", "delivered", "accepted", "declined", "undone", "expired", "failed", "answers", "asks"].map(
            (k) => [k, 0],
          ),
        )),
      );
    b.proposed!++;
    for (const s of ["delivered", "accepted", "declined", "undone", "expired", "failed"]) if (a.reached.has(s)) b[s]!++;
    if (a.kind === "suggest") {
      b.asks!++;
      if (answered) b.answers!++;
    }
  }

  const versions = spans
    .filter((s) => byVersion.has(s.version) || s.to === undefined || s.to > since)
    .map((s) => {
      const e = byVersion.get(s.version) ?? { funnel: emptyFunnel(), owners: new Set(), asks: 0, answers: 0 };
      const f = e.funnel;
      return {
        version: s.version,
        from: new Date(s.from).toISOString(),
        ...(s.to !== undefined ? { to: new Date(s.to).toISOString() } : {}),
        funnel: f,
        rates: {
          acceptance: ratio(f.accepted, f.accepted + f.declined),
          undo: ratio(f.undone, f.applied + f.accepted),
        },
        // Customers the rule acted on in the period: the denominator a product team can act on.
        activeCustomers: e.owners.size,
        promptsPerActiveCustomer: ratio(e.asks, e.owners.size),
        answers: e.answers,
        asks: e.asks,
        participation: ratio(e.answers, e.asks),
      };
    });

  const assigned = spec.experiment ? await assignmentsOf(store, spec.id) : undefined;
  const held: Record<string, number> = {};
  if (assigned) {
    held.held_out = [...assigned.values()].filter((a) => a.group === "held_out" && a.at >= since).length;
  }
  let experiment: Record<string, unknown> | undefined;
  if (spec.experiment && assigned) {
    const values = await outcomeValues(store, spec, spec.experiment.outcome, [...assigned.values()], until);
    const treated: number[] = [];
    const heldOut: number[] = [];
    for (const a of assigned.values()) {
      const v = values.get(a.owner);
      if (v === undefined) continue;
      (a.group === "held_out" ? heldOut : treated).push(v);
    }
    const c: Comparison = compare(treated, heldOut);
    experiment = {
      holdout: spec.experiment.holdout,
      outcome: { ...spec.experiment.outcome, description: describeOutcome(spec.experiment.outcome) },
      ...c,
    };
  }

  return {
    rule: spec.id,
    since: new Date(since).toISOString(),
    until: new Date(until).toISOString(),
    versions,
    series: [...buckets.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([at, b]) => ({ at: new Date(at).toISOString(), ...b })),
    held,
    ...(experiment ? { experiment } : {}),
  };
}

/** Each assigned owner's outcome over its window (see docs/rules.md); owners without a value are left out. */
async function outcomeValues(
  store: Store,
  spec: RuleSpec,
  outcome: OutcomeMeasure,
  assigned: ReadonlyArray<{ owner: string; at: number }>,
  now: number,
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (assigned.length === 0) return out;
  const from = Math.min(...assigned.map((a) => a.at));
  const windows = new Map(assigned.map((a) => [a.owner, outcomeWindow(outcome, a.at, now)]));
  const inWindow = (owner: string, at: number) => {
    const w = windows.get(owner);
    return w !== undefined && at >= w.from && at <= w.to;
  };
  if (outcome.kind === "participation") {
    const facts = new Map<string, { owner: string; answered: boolean }>();
    for await (const rows of store.stream(actionRowsSince(from))) {
      for (const row of rows) {
        const id = String(row.action);
        const at = new Date(row.time).getTime();
        if (row.status === "proposed") {
          if (row.kind === "suggest" && inWindow(String(row.owner), at) && !facts.has(id))
            facts.set(id, { owner: String(row.owner), answered: false });
        } else if (row.status === "accepted" || row.status === "declined") {
          const f = facts.get(id);
          if (f) f.answered = true;
        }
      }
    }
    const per = new Map<string, { asks: number; answers: number }>();
    for (const f of facts.values()) {
      const p = per.get(f.owner) ?? { asks: 0, answers: 0 };
      p.asks++;
      if (f.answered) p.answers++;
      per.set(f.owner, p);
    }
    for (const [owner, p] of per) out.set(owner, p.answers / p.asks);
    return out;
  }
  const tag = spec.scope === "subject" ? "subject" : "device";
  const ownerOf = (row: Record<string, unknown>) => `${tag}:${String(row[tag])}`;
  if (outcome.kind === "event_count") {
    const counts = new Map<string, { events: number; sessions: number }>();
    for (const [name, field] of [
      [outcome.event, "events"],
      ["session_start", "sessions"],
    ] as const) {
      for (const row of await store.query(ownerOutcomeRows({ kind: "event", name }, tag, from))) {
        const owner = ownerOf(row);
        if (!inWindow(owner, row.time.getTime())) continue;
        const c = counts.get(owner) ?? { events: 0, sessions: 0 };
        c[field]++;
        counts.set(owner, c);
      }
    }
    // Per session, so an owner who simply used the product more does not count as helped.
    for (const [owner, c] of counts) out.set(owner, c.events / Math.max(1, c.sessions));
    for (const a of assigned) if (!out.has(a.owner)) out.set(a.owner, 0);
    return out;
  }
  const source =
    outcome.kind === "metric_mean"
      ? ({ kind: "telemetry", field: outcome.metric } as const)
      : ({ kind: "feedback", field: outcome.component } as const);
  const sums = new Map<string, { sum: number; n: number }>();
  for (const row of await store.query(ownerOutcomeRows(source, tag, from))) {
    const owner = ownerOf(row);
    const v = row.value;
    if (typeof v !== "number" || !inWindow(owner, row.time.getTime())) continue;
    const s = sums.get(owner) ?? { sum: 0, n: 0 };
    s.sum += v;
    s.n++;
    sums.set(owner, s);
  }
  for (const [owner, s] of sums) out.set(owner, s.sum / s.n);
  return out;
}
