/**
 * InfluxQL built from a template, never by pasting strings: every value
 * interpolated into `influxql\`...\`` becomes a quoted string literal (or a
 * number, a time), and names go through `ident()`. An id such as
 * `a' OR 1=1` stays data, whatever the id rules of the part that made it.
 */

const brand: unique symbol = Symbol("influxql");

/** A query (or a fragment of one) whose every interpolation was escaped. */
export interface InfluxQL {
  readonly [brand]: true;
  readonly text: string;
}

const fragment = (text: string): InfluxQL => ({ [brand]: true, text });
const isFragment = (value: unknown): value is InfluxQL =>
  typeof value === "object" && value !== null && (value as Partial<InfluxQL>)[brand] === true;

/** A string literal: `'...'` with backslashes and single quotes escaped. */
export const literal = (value: string): string => `'${value.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;

/** A measurement, tag or field name: `"..."` with backslashes and double quotes escaped. */
export const ident = (name: string): InfluxQL => fragment(`"${name.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`);

/** A duration such as `30d` or `1500ms` for `now() - ...` and GROUP BY time(...). */
export const duration = (ms: number): InfluxQL => {
  if (!Number.isInteger(ms) || ms < 0) throw new RangeError(`a duration is a whole number of ms >= 0, not ${ms}`);
  return fragment(`${ms}ms`);
};

/** Text the caller wrote itself (a constant clause), never data that came from outside. */
export const trusted = (text: string): InfluxQL => fragment(text);

/** Fragments joined by a separator, e.g. conditions joined by ` OR `. */
export const join = (parts: readonly InfluxQL[], separator: string): InfluxQL =>
  fragment(parts.map((p) => p.text).join(separator));

export type Value = InfluxQL | string | number | boolean | Date;

function render(value: Value): string {
  if (isFragment(value)) return value.text;
  if (typeof value === "string") return literal(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new RangeError(`an InfluxQL number must be finite, not ${value}`);
    return String(value);
  }
  if (typeof value === "boolean") return value ? "true" : "false";
  if (Number.isNaN(value.getTime())) throw new RangeError("an InfluxQL time must be a valid Date");
  return literal(value.toISOString());
}

/** The tagged template: `influxql\`SELECT * FROM ${ident(m)} WHERE "device" = ${id}\``. */
export function influxql(strings: TemplateStringsArray, ...values: Value[]): InfluxQL {
  let text = strings[0] ?? "";
  values.forEach((value, i) => (text += render(value) + (strings[i + 1] ?? "")));
  return fragment(text);
}
