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

/** A string literal: `'...'` with backslashes, single quotes and newlines escaped (a bare newline ends a literal). */
export const literal = (value: string): string =>
  `'${value.replaceAll("\\", "\\\\").replaceAll("'", "\\'").replaceAll("\n", "\\n")}'`;

/** A measurement, tag or field name: `"..."` with backslashes and double quotes escaped. */
export const ident = (name: string): InfluxQL => fragment(`"${name.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`);

/** A duration such as `30d` or `1500ms` for `now() - ...` and GROUP BY time(...). */
export const duration = (ms: number): InfluxQL => {
  if (!Number.isInteger(ms) || ms < 0) throw new RangeError(`a duration is a whole number of ms >= 0, not ${ms}`);
  return fragment(`${ms}ms`);
};

/** An epoch-microseconds time literal (`123u`): InfluxQL's exact form, no time zone or parsing in between. */
export const micros = (us: number): InfluxQL => {
  if (!Number.isFinite(us)) throw new RangeError(`a time in microseconds must be finite, not ${us}`);
  return fragment(`${Math.round(us)}u`);
};

/**
 * A regular expression literal for `=~`: `/.../` with every `/` escaped, so a
 * pattern cannot close the literal and go on as InfluxQL. Newlines would end
 * the literal for InfluxDB's scanner, so they are refused.
 */
export const regex = (pattern: string): InfluxQL => {
  if (/[\r\n]/.test(pattern)) throw new RangeError("an InfluxQL regex cannot hold a line break");
  // InfluxDB's scanner reads `\x` as a pair: a `/` after an even run of backslashes would end the literal.
  let text = "";
  let escaped = false;
  for (const c of pattern) {
    if (c === "/" && !escaped) text += "\\";
    text += c;
    escaped = c === "\\" && !escaped;
  }
  if (escaped) throw new RangeError("an InfluxQL regex cannot end in a lone backslash");
  return fragment(`/${text}/`);
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

/** A time window of epoch ms, both ends included, optionally of a few devices only. */
export interface Window {
  from: number;
  to: number;
  devices?: readonly string[];
}

/** `WHERE` for a window: its time range, its devices, and any further conditions (AND). */
export function whereWindow(window: Window, ...extra: InfluxQL[]): InfluxQL {
  const only = window.devices
    ? [
        influxql`(${join(
          window.devices.map((d) => influxql`"device" = ${d}`),
          " OR ",
        )})`,
      ]
    : [];
  const all = [
    influxql`time >= ${micros(window.from * 1000)}`,
    influxql`time <= ${micros(window.to * 1000)}`,
    ...only,
    ...extra,
  ];
  return influxql`WHERE ${join(all, " AND ")}`;
}

/** `WHERE` for one device's points in [fromMs, untilMicros], newest first: a timeline page's rows. */
export function whereDevicePage(page: DevicePage, ...extra: InfluxQL[]): InfluxQL {
  const all = [
    influxql`"device" = ${page.device}`,
    influxql`time >= ${micros(page.from * 1000)}`,
    influxql`time <= ${micros(page.untilMicros)}`,
    ...extra,
  ];
  return influxql`WHERE ${join(all, " AND ")} ORDER BY time DESC LIMIT ${page.limit}`;
}

/** One device's points from `from` (epoch ms) up to `untilMicros`, newest first, at most `limit`. */
export interface DevicePage {
  device: string;
  from: number;
  untilMicros: number;
  limit: number;
}
