import { benchActionLatency } from "./action-latency.ts";
import { benchRuleEvaluation } from "./rule-eval.ts";

/** `node --import tsx bench/rules.ts [--quick]`: the rules engine's numbers on their own. */
const quick = process.argv.includes("--quick");
const table = (rows: Array<Record<string, unknown>>) => {
  const cols = Object.keys(rows[0] ?? {});
  return [`| ${cols.join(" | ")} |`, `|${cols.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${cols.map((c) => String(r[c])).join(" | ")} |`)].join("\n");
};
process.stdout.write(`## Rule evaluation per message\n\n${table(benchRuleEvaluation({ quick }) as never)}\n\n`);
process.stdout.write(`## Telemetry in -> action out\n\n${table((await benchActionLatency({ quick, rates: quick ? [100, 500] : [100, 500, 1000] })) as never)}\n`);
