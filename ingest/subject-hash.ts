import { createHmac, randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";

/** The per-install key that dead letters hash subjects with, as it is kept in the data dir. */
export class SubjectKeyError extends Error {
  readonly code = "REFEED_SUBJECT_KEY_INVALID";
}

const KEY_BYTES = 32;

/**
 * Reads the key from `file`, or creates it there (mode 0600) at first start,
 * so the same subject hashes the same across restarts and the hash is useless
 * without the data dir. Without a file (tests of ingest alone), a key for this
 * process only.
 */
export async function loadSubjectKey(file: string | undefined): Promise<Buffer> {
  if (file === undefined) return randomBytes(KEY_BYTES);
  const read = async () => {
    const text = (await readFile(file, "utf8")).trim();
    if (!/^[0-9a-f]{64}$/.test(text))
      throw new SubjectKeyError(
        `${file}: not a subject hash key (64 hex digits); restore it from a backup or remove it`,
      );
    return Buffer.from(text, "hex");
  };
  try {
    return await read();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  await mkdir(path.dirname(file), { recursive: true });
  try {
    await writeFile(file, `${randomBytes(KEY_BYTES).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
  } catch (err) {
    // Another start wrote it first: use theirs.
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  return read();
}

/** HMAC-SHA256 of a subject id under the install's key, hex. */
export function subjectHasher(key: Buffer): (subject: string) => string {
  return (subject) => createHmac("sha256", key).update(subject).digest("hex");
}

const SUBJECT_IN_TEXT = /"subject"\s*:\s*("(?:[^"\\]|\\.){0,256}"|-?\d+(?:\.\d+)?)/g;

/**
 * The subjects a refused payload names: its records' `subject` (a string, or a
 * number someone used as an id). A payload that is not JSON (or was cut) is
 * searched as text, so malformed JSON does not hide a customer id.
 */
export function subjectsIn(payload: string): string[] {
  const found = new Set<string>();
  const add = (value: unknown) => {
    if (typeof value === "string" && value !== "") found.add(value);
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload);
  } catch {
    for (const match of payload.matchAll(SUBJECT_IN_TEXT)) {
      const raw = match[1]!;
      try {
        add(JSON.parse(raw));
      } catch {
        add(raw.slice(1, -1));
      }
    }
    return [...found];
  }
  for (const record of Array.isArray(parsed) ? (parsed as unknown[]) : [parsed]) {
    if (record !== null && typeof record === "object" && !Array.isArray(record))
      add((record as Record<string, unknown>).subject);
  }
  return [...found];
}
