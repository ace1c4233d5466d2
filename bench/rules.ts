import { pathToFileURL } from "node:url";
import { benchRuleEvaluation, type RuleEvalRow } from "./rule-eval.ts";

export const table = (rows: Array<Record<string, unknown>>) => {
  const cols = Object.keys(rows[0] ?? {});
  return [
    `| ${cols.join(" | ")} |`,
    `|${cols.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${cols.map((c) => String(r[c])).join(" | ")} |`),
  ].join("\n");
};

/** The rules engine's section of the report: evaluation cost in process. */
export function renderRules(rows: RuleEvalRow[]): string {
  return `## Rules engine: evaluation per telemetry message (\`bench/rule-eval.ts\`, in process)

Each rule has two windowed aggregates (count and avg over 1 h) and a CEL condition; messages come
from 1,000 devices. "1 on telemetry" shows what the trigger index saves: the other rules listen to
other triggers and cost nothing. The peer replaces CEL with plain JavaScript closures over the same
windows: the floor any rule language pays over hand-written code.

${table(rows as never)}
`;
}

// `node --import tsx bench/rules.ts [--quick]`: only this section.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.stdout.write(renderRules(benchRuleEvaluation({ quick: process.argv.includes("--quick") })));
}
