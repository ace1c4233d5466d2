/**
 * How a stored value can name a subject, as InfluxQL regular expressions
 * (RE2, no look-around) and as the JavaScript that redacts it. Subject ids are
 * `[A-Za-z0-9][A-Za-z0-9._:-]{0,127}`, so only `.` needs escaping.
 */
const ID_CHARS = "A-Za-z0-9._:-";

const escape = (subject: string) => subject.replaceAll(".", "\\.");

/**
 * Where the platform itself writes a subject id into a string field: the whole
 * value (`subject` of an action), a JSON string (`"cust-1"` in props, values,
 * `why`), or an owner (`subject:cust-1`). Matching only these keeps a short or
 * numeric id from matching unrelated text and numbers.
 */
export function namedPattern(subject: string): string {
  const id = escape(subject);
  return `^${id}$|"${id}"|subject:${id}($|[^${ID_CHARS}])`;
}

/**
 * The id as a token anywhere, for copies of what a device sent that may not
 * even be JSON (dead letters): not inside a longer id. `:` may stand before
 * it (`subject:cust-1`), not after (`cust-1:2` is another id).
 */
export function tokenPattern(subject: string): string {
  return `(^|[^A-Za-z0-9._-])${escape(subject)}($|[^${ID_CHARS}])`;
}

export const REDACTED = "[erased]";

/** The value with every `namedPattern` mention of the subject replaced; an exact match becomes empty. */
export function redact(value: string, subject: string): string {
  if (value === subject) return "";
  return value
    .replaceAll(`"${subject}"`, `"${REDACTED}"`)
    .replace(new RegExp(`subject:${escape(subject)}(?![A-Za-z0-9._:-])`, "g"), `subject:${REDACTED}`);
}
