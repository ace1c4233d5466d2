import type { RawRow, Store } from "../store/index.ts";
import { SERIES } from "../store/index.ts";
import { ident, influxql, join, regex, type InfluxQL } from "../store/influxql.ts";
import { allActionRows, isActionLog } from "../actions/queries.ts";
import { erasure as ingestErasure } from "../ingest/queries.ts";
import { erasure as rulesErasure } from "../rules/queries.ts";
import { namedPattern, tokenPattern } from "./mentions.ts";
import { ERASURES } from "./names.ts";

/** What a measurement holds, from InfluxDB's own catalogue (so a measurement added later is covered too). */
export interface Shape {
  name: string;
  tags: string[];
  /** Field keys with their InfluxDB type. */
  fields: Array<{ key: string; type: string }>;
}

/**
 * What happens to a point that names the subject:
 * - `erase`: device data (and copies of it): the whole point is about them, it goes.
 * - `redact`: platform state of someone else that mentions them: the mention goes, the record stays.
 * - `keep`: configuration written by staff (rule texts) and the erasure records; reported, never changed.
 * Every point in a series tagged with the subject is theirs and goes, whatever the measurement.
 */
export type Policy = "erase" | "redact" | "keep";
// Each part that owns a measurement says what erasure does with it; anything else is platform state.
const POLICIES: Record<string, Policy> = {
  ...ingestErasure.policies,
  ...rulesErasure.policies,
  [ERASURES]: "keep",
};
/** Measurements holding raw payloads (maybe not JSON): the id is searched as a bare token. */
const RAW_TEXT: ReadonlySet<string> = new Set(ingestErasure.rawText);
export const policyOf = (measurement: string): Policy => POLICIES[measurement] ?? "redact";

/** Tag keys whose values name subjects, and the form they take. Device ids are another namespace and never match. */
export const SUBJECT_TAGS: Record<string, (subject: string) => string> = {
  subject: (s) => s,
  owner: (s) => `subject:${s}`,
};

export interface Match {
  row: RawRow;
  /** The point is the subject's own (tagged with them, erase policy, or a lifecycle row of their action). */
  own: boolean;
}

export async function shapes(store: Store): Promise<Shape[]> {
  const [names = [], tagRows = [], fieldRows = []] = await store.exec(
    influxql`SHOW MEASUREMENTS; SHOW TAG KEYS; SHOW FIELD KEYS`,
  );
  const byName = new Map<string, Shape>(
    names.map((r) => [String(r.name), { name: String(r.name), tags: [], fields: [] }]),
  );
  for (const r of tagRows) byName.get(String(r[SERIES]))?.tags.push(String(r.tagKey));
  for (const r of fieldRows)
    byName.get(String(r[SERIES]))?.fields.push({ key: String(r.fieldKey), type: String(r.fieldType) });
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** The InfluxQL condition that finds points naming the subject in a measurement, or undefined when none can. */
export function condition(shape: Shape, subject: string, loose = false): InfluxQL | undefined {
  const pattern = regex(loose || RAW_TEXT.has(shape.name) ? tokenPattern(subject) : namedPattern(subject));
  const parts = [
    ...shape.tags.filter((t) => SUBJECT_TAGS[t]).map((t) => influxql`${ident(t)} = ${SUBJECT_TAGS[t]!(subject)}`),
    ...shape.fields.filter((f) => f.type === "string").map((f) => influxql`${ident(f.key)} =~ ${pattern}`),
  ];
  return parts.length > 0 ? join(parts, " OR ") : undefined;
}

/** Whether a measurement is the action log, which is read whole (see `scan`). */
export const actionLogShape = (shape: Shape): boolean => isActionLog(shape.name);

export function taggedWith(shape: Shape, row: RawRow, subject: string): boolean {
  return shape.tags.some((t) => SUBJECT_TAGS[t] && row[t] === SUBJECT_TAGS[t](subject));
}

/**
 * Every stored point that names the subject, measurement by measurement, in
 * chunks (never the whole history in memory). The action log is read whole,
 * once, in time order: an action's lifecycle rows name only its id, which its
 * `proposed` row (owner or subject) ties to the customer first.
 */
export async function* scan(
  store: Store,
  subject: string,
  only?: (shape: Shape) => boolean,
  /** Also the id as a bare token in any text (a check for what is left, not what to change). */
  loose = false,
): AsyncGenerator<{ shape: Shape; matches: Match[] }> {
  for (const shape of await shapes(store)) {
    if (only && !only(shape)) continue;
    const policy = policyOf(shape.name);
    if (isActionLog(shape.name)) {
      yield* actionLog(store, shape, subject, loose);
      continue;
    }
    const where = condition(shape, subject, loose);
    if (!where) continue;
    for await (const rows of store.stream(influxql`SELECT * FROM ${ident(shape.name)} WHERE ${where}`)) {
      yield {
        shape,
        matches: rows.map((row) => ({ row, own: policy === "erase" || taggedWith(shape, row, subject) })),
      };
    }
  }
}

async function* actionLog(
  store: Store,
  shape: Shape,
  subject: string,
  loose: boolean,
): AsyncGenerator<{ shape: Shape; matches: Match[] }> {
  const ids = new Set<string>();
  const named = new RegExp(loose ? tokenPattern(subject) : namedPattern(subject));
  const strings = shape.fields.filter((f) => f.type === "string").map((f) => f.key);
  for await (const rows of store.stream(allActionRows())) {
    const matches: Match[] = [];
    for (const row of rows) {
      const action = typeof row.action === "string" ? row.action : "";
      if (row.status === "proposed" && (row.owner === `subject:${subject}` || row.subject === subject)) ids.add(action);
      if (ids.has(action)) matches.push({ row, own: true });
      else if (strings.some((key) => typeof row[key] === "string" && named.test(row[key])))
        matches.push({ row, own: false });
    }
    if (matches.length > 0) yield { shape, matches };
  }
}
