import { escape } from "@influxdata/influxdb-client";

/** One point in InfluxDB line protocol; what the writer batches, spools and posts. */
export type Line = string;
export type FieldValue = number | boolean | string;

/**
 * Serialises one point with the official client's escaping: tag keys and
 * values and field keys escape `,` `=` and spaces (so they cannot end the
 * token they are in), string field values are double-quoted with `"` and `\`
 * escaped (so they cannot end the string). A newline inside a quoted string is
 * data to InfluxDB; anywhere else the escaping keeps it from starting a line.
 * Numbers are always floats, so a field's type does not flip between 1 and 1.5.
 *
 * Tags must be given in key order (InfluxDB's recommendation for write speed).
 */
export function toLine(
  measurement: string,
  tags: ReadonlyArray<readonly [string, string]>,
  fields: Readonly<Record<string, FieldValue>>,
  micros: number,
): Line {
  let line = MEASUREMENT_SPECIAL.test(measurement) ? escape.measurement(measurement) : measurement;
  for (const [key, value] of tags) line += `,${tagText(key)}=${tagText(value)}`;
  let sep = " ";
  for (const key of Object.keys(fields)) {
    line += `${sep}${tagText(key)}=${fieldValue(fields[key]!)}`;
    sep = ",";
  }
  if (sep === " ") throw new Error(`a point of '${measurement}' needs at least one field`);
  return `${line} ${micros}`;
}

// The client's escapers walk every character; names and ids validated at the edge rarely need them,
// and one native regex test per token says so (this runs for every field of every point).
const MEASUREMENT_SPECIAL = /[, \n\r\t]/;
const TAG_SPECIAL = /[,= \n\r\t]/;
const QUOTED_SPECIAL = /["\\]/;
const tagText = (text: string) => (TAG_SPECIAL.test(text) ? escape.tag(text) : text);

function fieldValue(value: FieldValue): string {
  switch (typeof value) {
    case "number":
      if (!Number.isFinite(value)) throw new Error(`not a finite number: ${value}`);
      return String(value);
    case "boolean":
      return value ? "true" : "false";
    default:
      return QUOTED_SPECIAL.test(value) ? escape.quoted(value) : `"${value}"`;
  }
}

/**
 * The measurement and device of a line this module wrote, for dead-letter
 * records and logs. Measurements and tag values here are validated identifiers,
 * so the first `,` and the `device=` tag can be read without unescaping.
 */
export function describeLine(line: Line): { measurement: string; device: string } {
  const head = line.slice(0, line.indexOf(" "));
  const parts = head.split(",");
  const device = parts.find((p) => p.startsWith("device="))?.slice("device=".length) ?? "unknown";
  return { measurement: parts[0] ?? "unknown", device };
}
