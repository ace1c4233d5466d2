import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { parseDuration } from "../config/duration.ts";
import { loadRule, RuleError } from "../rules/load.ts";
import type { BacktestReport } from "../rules/backtest.ts";

const usage = `usage:
  refeed rules check DIR|FILE...            validate rule files (for a product team's CI); exit 1 on any error
  refeed rules backtest FILE [--since 30d]  replay stored history through the rule in FILE; nothing is sent
  refeed rules push FILE                    create or update the rule through the API

options for backtest and push:
  --url URL      the platform's HTTP address (default $REFEED_URL or http://localhost:8080)
  --token TOKEN  an admin or product token (default $REFEED_ADMIN_TOKEN)
  --json         print the API's answer as JSON
`;

type Out = { out(text: string): void; err(text: string): void };

export async function rulesCommand(
  argv: string[],
  io: Out = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) },
): Promise<number> {
  const [verb, ...rest] = argv;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        since: { type: "string", default: "30d" },
        url: { type: "string" },
        token: { type: "string" },
        json: { type: "boolean", default: false },
      },
    });
  } catch (err) {
    io.err(`refeed rules: ${(err as Error).message}\n${usage}`);
    return 2;
  }
  const { values, positionals } = parsed;
  switch (verb) {
    case "check":
      return check(positionals, io);
    case "backtest":
    case "push": {
      if (positionals.length !== 1) {
        io.err(`refeed rules ${verb}: give exactly one rule FILE\n${usage}`);
        return 2;
      }
      const since = values.since;
      if (verb === "backtest" && parseDuration(since) === undefined) {
        io.err(`refeed rules backtest: --since: expected a duration such as 7d or 30d (got "${since}")\n`);
        return 2;
      }
      const token = values.token ?? process.env.REFEED_ADMIN_TOKEN;
      if (!token) {
        io.err(`refeed rules ${verb}: --token: an admin or product token is needed (or set REFEED_ADMIN_TOKEN)\n`);
        return 2;
      }
      const url = values.url ?? process.env.REFEED_URL ?? "http://localhost:8080";
      return remote(verb, positionals[0]!, { url, token, since, json: values.json }, io);
    }
    default:
      io.err(verb ? `refeed rules: unknown command '${verb}'\n${usage}` : usage);
      return 2;
  }
}

async function check(targets: string[], io: Out): Promise<number> {
  if (targets.length === 0) {
    io.err(`refeed rules check: name a directory or rule files\n${usage}`);
    return 2;
  }
  const files: string[] = [];
  for (const target of targets) {
    try {
      const names = await readdir(target);
      files.push(
        ...names
          .filter((n) => /\.(ya?ml|json)$/.test(n))
          .sort()
          .map((n) => path.join(target, n)),
      );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOTDIR") files.push(target);
      else {
        io.err(
          `refeed rules check: cannot read ${target}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`,
        );
        return 2;
      }
    }
  }
  let failures = 0;
  const ids = new Map<string, string>();
  for (const file of files) {
    try {
      const rule = loadRule(await readFile(file, "utf8"), file);
      const other = ids.get(rule.spec.id);
      if (other) throw new RuleError(file, undefined, "id", `'${rule.spec.id}' is already defined in ${other}`);
      ids.set(rule.spec.id, file);
      io.out(`ok    ${file} (${rule.spec.id}, on ${rule.spec.on})\n`);
      // Warnings do not fail CI: they name what only the messages can tell.
      for (const w of rule.warnings) io.out(`warn  ${file}${w.line ? `:${w.line}` : ""}: ${w.field}: ${w.message}\n`);
    } catch (err) {
      failures += 1;
      io.out(`error ${err instanceof RuleError ? err.message : `${file}: ${(err as Error).message}`}\n`);
    }
  }
  io.out(`${files.length - failures} valid, ${failures} invalid\n`);
  return failures > 0 ? 1 : 0;
}

async function remote(
  verb: "backtest" | "push",
  file: string,
  options: { url: string; token: string; since: string; json: boolean },
  io: Out,
): Promise<number> {
  let text: string;
  let id: string;
  try {
    text = await readFile(file, "utf8");
    id = loadRule(text, file).spec.id;
  } catch (err) {
    io.err(`refeed rules ${verb}: ${err instanceof RuleError ? err.message : (err as Error).message}\n`);
    return 1;
  }
  const request =
    verb === "push"
      ? { path: "/api/rules", body: text, type: "application/yaml" }
      : {
          path: `/api/rules/${encodeURIComponent(id)}/backtest`,
          body: JSON.stringify({ since: options.since, rule: text }),
          type: "application/json",
        };
  let res: Response;
  try {
    res = await fetch(new URL(request.path, options.url), {
      method: "POST",
      headers: { authorization: `Bearer ${options.token}`, "content-type": request.type },
      body: request.body,
    });
  } catch (err) {
    io.err(
      `refeed rules ${verb}: cannot reach ${options.url}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}\n`,
    );
    return 1;
  }
  const answer = (await res.json()) as Record<string, unknown>;
  if (!res.ok) {
    io.err(`refeed rules ${verb}: ${res.status} ${String(answer.message ?? answer.error)}\n`);
    return 1;
  }
  if (options.json) io.out(`${JSON.stringify(answer, null, 2)}\n`);
  else if (verb === "push")
    io.out(`${String(answer.id)} version ${String(answer.version)} (${answer.enabled ? "enabled" : "disabled"})\n`);
  else io.out(formatReport(answer as unknown as BacktestReport));
  return 0;
}

function formatReport(report: BacktestReport): string {
  const lines = [
    `rule ${report.rule}, ${report.from} .. ${report.to}`,
    `evaluated ${report.evaluated} messages, would have fired ${report.fired} times for ${report.targets.length} targets`,
  ];
  const held = Object.entries(report.held).map(([reason, n]) => `${reason} ${n}`);
  if (held.length) lines.push(`held back: ${held.join(", ")}`);
  for (const e of report.errors ?? []) lines.push(`  error ${e.count}x: ${e.message} (last ${e.lastTarget})`);
  for (const t of report.targets.slice(0, 20)) lines.push(`  ${t.target}: ${t.fires}`);
  if (report.samples.length) lines.push("sample why:", ...report.samples.map((s) => `  ${s}`));
  return `${lines.join("\n")}\n`;
}
