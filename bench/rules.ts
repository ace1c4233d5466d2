import { pathToFileURL } from "node:url";
import { benchActionLatency } from "./action-latency.ts";
import { benchRuleEvaluation } from "./rule-eval.ts";

const table = (rows: Array<Record<string, unknown>>) => {
  const cols = Object.keys(rows[0] ?? {});
  return [`| ${cols.join(" | ")} |`, `|${cols.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${cols.map((c) => String(r[c])).join(" | ")} |`)].join("\n");
};

/** The rules engine's section of the benchmark report. */
export async function rulesReport(options: { quick: boolean }): Promise<string> {
  const evaluation = benchRuleEvaluation(options);
  const rates = options.quick ? [100, 500] : [100, 500, 1000];
  const latency = await benchActionLatency({ quick: options.quick, rates });
  return `## Rules engine

### Rule evaluation per telemetry message (\`bench/rule-eval.ts\`, in process)

Each rule has two windowed aggregates (count and avg over 1 h) and a CEL condition; messages come
from 1,000 devices. "1 on telemetry" shows what the trigger index saves: the other rules listen to
other triggers and cost nothing. The peer replaces CEL with plain JavaScript closures over the same
windows: the floor any rule language pays over hand-written code.

${table(evaluation as never)}

### Telemetry in -> action out (\`bench/action-latency.ts\`, the whole platform)

MQTT in, ingest, rule, action (logged to InfluxDB in group commits), MQTT out to the device; 20
devices, open loop (latency from each message's scheduled send time), a rule that fires on every
message. ${options.quick ? "5" : "20"} s per rate.

${table(latency as never)}
`;
}

// `node --import tsx bench/rules.ts [--quick]`: only this section.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.stdout.write(await rulesReport({ quick: process.argv.includes("--quick") }));
}
