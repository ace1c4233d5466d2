import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { queryTexts, sourceFiles } from "../support/interpolated-influxql.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Each measurement and the part (folder) that writes it, as docs/schema.md lists them. */
const OWNERS: Record<string, string> = {
  telemetry: "ingest",
  events: "ingest",
  feedback: "ingest",
  dead_letters: "ingest",
  action_log: "actions",
  profile_changes: "actions",
  presence: "broker",
  device_registry: "registry",
  rule_versions: "rules",
  consent: "consent",
  api_keys: "keys",
  subject_links: "subjects",
  subject_tokens: "subjects",
  erasures: "privacy",
};
/** Names no other part uses as a word of its own (channel names, consent purposes, entry types): their string constants count too. */
const DISTINCT = [
  "action_log",
  "profile_changes",
  "device_registry",
  "rule_versions",
  "api_keys",
  "subject_links",
  "subject_tokens",
  "erasures",
  "dead_letters",
];
/** Folders that are not parts: harnesses and tests read what they check directly. */
const NOT_PARTS = new Set(["test", "bench", "firmware-sim", "scripts", "examples", "docs", "bin"]);

const word = (name: string) => new RegExp(`(^|[^A-Za-z0-9_])${name}($|[^A-Za-z0-9_])`);

/** `file:line: measurement (owner)` wherever a part names another part's measurement. */
function foreignMeasurements(file: string, source: string): string[] {
  const part = file.split(path.sep)[0]!;
  const foreign = Object.entries(OWNERS).filter(([, owner]) => owner !== part);
  const found: string[] = [];
  for (const { line, text } of queryTexts(source))
    for (const [name, owner] of foreign) if (word(name).test(text)) found.push(`${file}:${line}: ${name} (${owner})`);
  source.split("\n").forEach((text, i) => {
    for (const name of DISTINCT)
      if (OWNERS[name] !== part && new RegExp(`["'\`]${name}["'\`]`).test(text))
        found.push(`${file}:${i + 1}: ${name} (${OWNERS[name]})`);
  });
  return found;
}

describe("parts own their data", () => {
  it("no part names another part's measurement: it imports the owner's query", () => {
    const found = sourceFiles(root)
      .map((full) => path.relative(root, full))
      .filter((file) => file.includes(path.sep) && !NOT_PARTS.has(file.split(path.sep)[0]!))
      .flatMap((file) => foreignMeasurements(file, readFileSync(path.join(root, file), "utf8")));
    expect(found).toEqual([]);
  });

  it("flags a query of another part's measurement and a constant naming it", () => {
    expect(
      foreignMeasurements(
        path.join("health", "x.ts"),
        'const q = influxql`SELECT * FROM action_log WHERE "device" = ${d}`;',
      ),
    ).toEqual([`${path.join("health", "x.ts")}:1: action_log (actions)`]);
    expect(foreignMeasurements(path.join("privacy", "x.ts"), '\nconst LOG = "device_registry";')).toEqual([
      `${path.join("privacy", "x.ts")}:2: device_registry (registry)`,
    ]);
    expect(
      foreignMeasurements(path.join("health", "y.ts"), 'await store.query("SELECT last(online_ms) FROM presence");'),
    ).toEqual([`${path.join("health", "y.ts")}:1: presence (broker)`]);
    expect(foreignMeasurements(path.join("actions", "x.ts"), "const q = influxql`SELECT * FROM action_log`;")).toEqual(
      [],
    );
  });
});
