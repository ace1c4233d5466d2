import * as hdr from "hdr-histogram-js";
import type { DeviceMessage } from "../ingest/messages.ts";
import { RuleEngine, type Guards } from "../rules/engine.ts";
import { loadRule, type CompiledRule } from "../rules/load.ts";

export interface RuleEvalRow {
  setup: string;
  rules: number;
  /** Rules the trigger index hands each message. */
  evaluatedPerMessage: number;
  messages: number;
  msgsPerSec: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  heapMiB: number;
}

const open: Guards = {
  lastFired: () => undefined,
  lastPrompt: () => undefined,
  declinedAt: () => undefined,
  consent: () => true,
  profile: () => undefined,
};

/** Rule i: a threshold with two windowed aggregates; only `matching` of them listen to telemetry. */
function rules(total: number, matching: number): CompiledRule[] {
  return Array.from({ length: total }, (_, i) =>
    loadRule(
      `id: r${i}
on: ${i < matching ? "telemetry" : `event:e${i % 50}`}
aggregates:
  n: { fn: count, of: telemetry, window: 1h }
  avg_temp: { fn: avg, of: telemetry, value: msg.metrics.temp, window: 1h }
when: msg.metrics.temp > ${1000 + i}.0 && agg.n > 3 && agg.avg_temp > 20.0
then:
  - set: k${i}
    value: ${i}
`,
      `bench-${i}.yaml`,
    ),
  );
}

function messages(count: number, devices: number): DeviceMessage[] {
  return Array.from({ length: count }, (_, i) => ({
    kind: "telemetry" as const,
    device: `d${i % devices}`,
    subject: undefined,
    ts: 1_700_000_000_000 + i,
    tsFromDevice: true,
    metrics: { temp: 20 + (i % 15), humidity: 40 + (i % 7) },
  }));
}

function measure(
  setup: string,
  engine: RuleEngine,
  total: number,
  evaluated: number,
  stream: DeviceMessage[],
  handle: (m: DeviceMessage) => void,
): RuleEvalRow {
  // Warm the JIT and the windows before timing.
  for (const m of stream.slice(0, Math.min(2000, stream.length / 4))) handle(m);
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 10_000_000_000,
    numberOfSignificantValueDigits: 3,
  });
  const started = process.hrtime.bigint();
  for (const m of stream) {
    const t0 = process.hrtime.bigint();
    handle(m);
    histogram.recordValue(Number(process.hrtime.bigint() - t0));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  void engine;
  const row = {
    setup,
    rules: total,
    evaluatedPerMessage: evaluated,
    messages: stream.length,
    msgsPerSec: Math.round(stream.length / seconds),
    p50Us: histogram.getValueAtPercentile(50) / 1000,
    p99Us: histogram.getValueAtPercentile(99) / 1000,
    p999Us: histogram.getValueAtPercentile(99.9) / 1000,
    heapMiB: Math.round(process.memoryUsage().heapUsed / 1048576),
  };
  histogram.destroy();
  return row;
}

/**
 * Cost of rule evaluation per telemetry message (window updates, aggregate
 * reads, CEL) with 1, 100 and 1,000 rules loaded: once with one rule on the
 * message's trigger and the rest on other triggers (what the trigger index
 * saves), once with all of them on telemetry. The peer is the same
 * conditions as hand-written JavaScript closures with the same windows, the
 * floor any rule language pays over plain code.
 */
export function benchRuleEvaluation(options: { quick: boolean }): RuleEvalRow[] {
  const full = messages(options.quick ? 20_000 : 200_000, 1000);
  // A thousand conditions per message take milliseconds each: fewer messages give the same percentiles.
  const streamFor = (evaluated: number) => (evaluated >= 1000 ? full.slice(0, full.length / 10) : full);
  const rows: RuleEvalRow[] = [];
  const guard = { promptEverySessions: 10, declineBackoffMs: 0 };
  for (const total of [1, 100, 1000]) {
    for (const matching of total === 1 ? [1] : [1, total]) {
      const engine = new RuleEngine(guard);
      engine.setRules(rules(total, matching));
      rows.push(
        measure(
          matching === 1 ? "1 on telemetry, rest on other triggers" : "all on telemetry",
          engine,
          total,
          matching,
          streamFor(matching),
          (m) => engine.handle(m, m.ts, open),
        ),
      );
    }
  }
  // Peer: plain closures over the same windows (the engine with `when: true` replaced by JS).
  for (const total of [1, 100]) {
    const engine = new RuleEngine(guard);
    engine.setRules(rules(total, total).map((r) => ({ ...r, when: () => ({ ok: true as const, value: false }) })));
    const thresholds = Array.from({ length: total }, (_, i) => 1000 + i);
    rows.push(
      measure("peer: JS closures instead of CEL, same windows", engine, total, total, streamFor(total), (m) => {
        engine.handle(m, m.ts, open);
        for (const t of thresholds) if ((m as unknown as { metrics: { temp: number } }).metrics.temp > t) break;
      }),
    );
  }
  return rows;
}
