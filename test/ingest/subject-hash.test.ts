import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadSubjectKey, subjectHasher, subjectsIn } from "../../ingest/subject-hash.ts";

describe("subjects in a refused payload", () => {
  it("finds the subject of a record, of each record of a batch, and in text that is not JSON", () => {
    expect(subjectsIn(JSON.stringify({ subject: "cust-1", name: "x" }))).toEqual(["cust-1"]);
    expect(subjectsIn(JSON.stringify([{ subject: "a" }, { subject: "b" }, { subject: "a" }, {}]))).toEqual(["a", "b"]);
    expect(subjectsIn(JSON.stringify({ subject: 42 }))).toEqual([]);
    expect(subjectsIn(`{"subject": "cust \\"q\\"", "name": oops}`)).toEqual(['cust "q"']);
    expect(subjectsIn(`[{"subject":"cut-off`)).toEqual([]);
    expect(subjectsIn(JSON.stringify({ metrics: { t: 1 } }))).toEqual([]);
  });
});

describe("the subject hash key", () => {
  it("is created once with mode 0600 and kept, so a subject hashes the same after a restart", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-key-"));
    try {
      const file = path.join(dir, "data", "subject-hash.key");
      const first = await loadSubjectKey(file);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      const again = await loadSubjectKey(file);
      expect(subjectHasher(again)("cust-1")).toBe(subjectHasher(first)("cust-1"));
      expect(subjectHasher(first)("cust-1")).not.toBe(subjectHasher(first)("cust-2"));
      expect((await readFile(file, "utf8")).trim()).toMatch(/^[0-9a-f]{64}$/);
      await writeFile(file, "not a key\n");
      await expect(loadSubjectKey(file)).rejects.toMatchObject({ code: "REFEED_SUBJECT_KEY_INVALID" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
