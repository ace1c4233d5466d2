import type { RunResult } from "./load/generator.ts";

export interface Verdict {
  ok: boolean;
  /** Why a step failed, in words for the report. */
  why?: string;
}

export interface Step<R> {
  rate: number;
  result: R;
  verdict: Verdict;
}

export interface Search<R> {
  steps: Array<Step<R>>;
  /** The highest step that passed. */
  sustained: Step<R> | undefined;
}

/** The generator's own lateness that still counts as keeping the schedule. */
const MAX_GENERATOR_LAG_MS = 100;
/** Backlog growth over the second half of a step, as a share of the offered rate, that still counts as flat. */
const FLAT = 0.05;
const QUICK_DRAIN_MS = 250;

/**
 * A generator run's verdict: every record sent and delivered (`lost` comes
 * from the scenario's own count, e.g. points in InfluxDB), a flat backlog, and
 * a generator that kept its schedule (else the offered load was not offered).
 */
export function judge(r: RunResult, lost: number): Verdict {
  if (r.skipped > 0)
    return { ok: false, why: `${r.skipped} records not sent: their devices had 20,000 publishes unacknowledged` };
  if (r.errors > 0 || r.firstError)
    return { ok: false, why: `${r.errors} client errors (first: ${r.firstError ?? "?"})` };
  if (!r.drained)
    return {
      ok: false,
      why: `${r.expected - r.delivered} of ${r.expected} not delivered ${(r.drainMs / 1000).toFixed(0)} s after the last send`,
    };
  if (lost > 0) return { ok: false, why: `${lost} lost` };
  // Flat: the backlog did not grow over the second half of the step, or (the sampled growth being noisy over
  // a short step) what was left when sending ended drained at once; a backlog that kept growing cannot.
  const offered = r.expected / r.seconds;
  const quickDrain = r.drainMs <= Math.max(QUICK_DRAIN_MS, 0.1 * r.seconds * 1000);
  if (r.backlogGrowthPerSecond > FLAT * offered && !quickDrain) {
    return {
      ok: false,
      why: `backlog grew by ${Math.round(r.backlogGrowthPerSecond)}/s (${Math.round((100 * r.backlogGrowthPerSecond) / offered)}% of the offered rate), ${(r.drainMs / 1000).toFixed(1)} s to drain`,
    };
  }
  if (r.drainMs > Math.max(2000, 0.5 * r.seconds * 1000))
    return { ok: false, why: `${(r.drainMs / 1000).toFixed(1)} s to drain what was left when sending ended` };
  if (r.lag.p99 > MAX_GENERATOR_LAG_MS)
    return { ok: false, why: `the load generator fell behind its schedule (p99 ${r.lag.p99.toFixed(0)} ms late)` };
  return { ok: true };
}

const round2 = (n: number) => {
  const p = 10 ** Math.max(0, Math.floor(Math.log10(n)) - 1);
  return Math.round(n / p) * p;
};

/**
 * Load in steps: doubling from `start` until a step fails, then `refine`
 * steps at the geometric middle between the last pass and the first failure.
 * A failing first step halves the load (down to `start / 8`). Each step
 * starts from a drained system; a step that leaves a backlog ends the search.
 */
export async function stepUp<R>(options: {
  start: number;
  max: number;
  refine: number;
  run(rate: number): Promise<R>;
  judge(result: R): Verdict;
  say: (text: string) => void;
}): Promise<Search<R>> {
  const steps: Array<Step<R>> = [];
  const attempt = async (rate: number) => {
    const result = await options.run(rate);
    const step = { rate, result, verdict: options.judge(result) };
    options.say(
      `  ${rate.toLocaleString("en-US")}/s: ${step.verdict.ok ? "sustained" : `not sustained (${step.verdict.why})`}`,
    );
    steps.push(step);
    return step;
  };
  let pass: Step<R> | undefined;
  let fail: Step<R> | undefined;
  for (let rate = options.start; rate <= options.max; rate *= 2) {
    const step = await attempt(rate);
    if (step.verdict.ok) pass = step;
    else {
      fail = step;
      break;
    }
  }
  if (!pass) {
    for (let rate = options.start / 2; rate >= options.start / 8 && !pass; rate /= 2) {
      const step = await attempt(rate);
      if (step.verdict.ok) pass = step;
    }
    return { steps, sustained: pass };
  }
  for (let i = 0; i < options.refine && fail; i += 1) {
    const rate = round2(Math.sqrt(pass.rate * fail.rate));
    if (rate <= pass.rate || rate >= fail.rate) break;
    const step = await attempt(rate);
    if (step.verdict.ok) pass = step;
    else fail = step;
  }
  return { steps, sustained: pass };
}
