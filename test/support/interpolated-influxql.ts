import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

/**
 * Finds InfluxQL built by pasting values into text instead of through the
 * `influxql` tag (store/influxql.ts), which escapes every value it is given:
 * - a template literal, not tagged `influxql`, that interpolates (`${`) and
 *   whose text reads as InfluxQL;
 * - a string literal that reads as InfluxQL with `+` next to it (concatenation);
 * - `trusted(...)` given an interpolating template: trusted text is constant.
 * Text that is only about InfluxQL (a report's prose) is let through by a
 * `// not InfluxQL: why` comment on the line before it. Comments are skipped; literals inside `${...}` are scanned too.
 */

/** Upper-case InfluxQL keywords; prose and line protocol do not shout them. */
const QUERY =
  /\b(SELECT|DELETE\s+FROM|DROP\s+(SERIES|MEASUREMENT|DATABASE|SHARD|RETENTION)|SHOW\s+(TAG|FIELD|SERIES|MEASUREMENTS|DATABASES|RETENTION)|CREATE\s+DATABASE|FROM|WHERE|GROUP\s+BY)\b/;

export interface Finding {
  line: number;
  why: string;
  text: string;
}

/** Where a `/` starts a regular expression rather than dividing. */
const BEFORE_REGEX = new Set([
  "",
  "(",
  ",",
  "=",
  ":",
  "[",
  "!",
  "&",
  "|",
  "?",
  "{",
  "}",
  ";",
  "+",
  "-",
  "*",
  "%",
  "<",
  ">",
  "~",
  "^",
]);

export function findInterpolatedInfluxQL(source: string): Finding[] {
  return scanSource(source).findings;
}

/** The text of every query (interpolations as `${}`), with its line: `influxql` templates and literals that read as InfluxQL. */
export function queryTexts(source: string): Array<{ line: number; text: string }> {
  return scanSource(source).queries;
}

function scanSource(source: string): { findings: Finding[]; queries: Array<{ line: number; text: string }> } {
  const findings: Finding[] = [];
  const queries: Array<{ line: number; text: string }> = [];
  const lineAt = (i: number) => source.slice(0, i).split("\n").length;
  /** The last significant character before i, and the word ending there. */
  const before = (i: number) => {
    let j = i - 1;
    while (j >= 0 && /\s/.test(source[j]!)) j -= 1;
    let k = j;
    while (k >= 0 && /[\w$]/.test(source[k]!)) k -= 1;
    return { char: j >= 0 ? source[j]! : "", word: source.slice(k + 1, j + 1) };
  };
  const after = (i: number) => {
    let j = i;
    while (j < source.length && /\s/.test(source[j]!)) j += 1;
    return source[j] ?? "";
  };

  /** Scans code from i until an unmatched `}` (inside `${...}`) or the end; answers the index after it. */
  function code(i: number, inExpression: boolean): number {
    let depth = 0;
    while (i < source.length) {
      const c = source[i]!;
      const next = source[i + 1];
      if (c === "/" && next === "/") {
        const end = source.indexOf("\n", i);
        i = end < 0 ? source.length : end;
      } else if (c === "/" && next === "*") {
        const end = source.indexOf("*/", i + 2);
        i = end < 0 ? source.length : end + 2;
      } else if (c === '"' || c === "'") {
        i = quoted(i, c);
      } else if (c === "`") {
        i = template(i);
      } else if (c === "/" && (BEFORE_REGEX.has(before(i).char) || ["return", "typeof"].includes(before(i).word))) {
        i = regexLiteral(i);
      } else if (c === "{") {
        depth += 1;
        i += 1;
      } else if (c === "}") {
        if (depth === 0 && inExpression) return i + 1;
        depth -= 1;
        i += 1;
      } else {
        i += 1;
      }
    }
    return i;
  }

  function quoted(start: number, quote: string): number {
    let i = start + 1;
    while (i < source.length && source[i] !== quote && source[i] !== "\n") i += source[i] === "\\" ? 2 : 1;
    const text = source.slice(start + 1, i);
    const end = i + 1;
    if (/^\s*(SELECT|SHOW|DELETE|DROP)\b/.test(text)) queries.push({ line: lineAt(start), text });
    if (QUERY.test(text) && (before(start).char === "+" || after(end) === "+"))
      findings.push({ line: lineAt(start), why: "InfluxQL built by concatenation", text });
    return end;
  }

  function regexLiteral(start: number): number {
    let i = start + 1;
    let inClass = false;
    while (i < source.length && source[i] !== "\n") {
      const c = source[i]!;
      if (c === "\\") i += 1;
      else if (c === "[") inClass = true;
      else if (c === "]") inClass = false;
      else if (c === "/" && !inClass) break;
      i += 1;
    }
    return i + 1;
  }

  /** Text that only talks about InfluxQL (a report) says so in a comment on the line before it. */
  const prose = (start: number) => {
    const lineStart = source.lastIndexOf("\n", start - 1);
    const previous = source.lastIndexOf("\n", lineStart - 1);
    return /\/\/\s*not InfluxQL\b/.test(source.slice(previous + 1, start));
  };

  function template(start: number): number {
    const { word } = before(start);
    const isTagged = word === "influxql" && source[start - 1] === "l";
    let i = start + 1;
    let text = "";
    let interpolates = false;
    while (i < source.length && source[i] !== "`") {
      if (source[i] === "\\") {
        text += source.slice(i, i + 2);
        i += 2;
      } else if (source[i] === "$" && source[i + 1] === "{") {
        interpolates = true;
        text += "${}";
        i = code(i + 2, true);
      } else {
        text += source[i];
        i += 1;
      }
    }
    if (isTagged || QUERY.test(text.replaceAll("${}", " "))) queries.push({ line: lineAt(start), text });
    if (!isTagged && interpolates && QUERY.test(text.replaceAll("${}", " ")) && !prose(start))
      findings.push({ line: lineAt(start), why: "InfluxQL built by interpolation", text });
    if (!isTagged && interpolates && /\btrusted\s*\(\s*$/.test(source.slice(Math.max(0, start - 20), start)))
      findings.push({ line: lineAt(start), why: "trusted() given interpolated text", text });
    return i + 1;
  }

  code(0, false);
  return { findings, queries };
}

/** Every .ts file under root, outside node_modules and dot-folders. */
export function sourceFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".ts")) out.push(full);
    }
  };
  walk(root);
  return out.sort();
}

/** `file:line: why: text` for every finding in the tree. */
export function scanTree(root: string): string[] {
  return sourceFiles(root).flatMap((file) =>
    findInterpolatedInfluxQL(readFileSync(file, "utf8")).map(
      (f) => `${path.relative(root, file)}:${f.line}: ${f.why}: ${f.text.slice(0, 120)}`,
    ),
  );
}
