import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readSnapshot, writeSnapshot, type ViewSnapshot } from "../../snapshot/file.ts";

const influx = { url: "http://127.0.0.1:8086", db: "refeed" };
const snapshot: ViewSnapshot = {
  writtenAt: "2026-12-04T10:00:00.000Z",
  influx,
  answers: [['SELECT * FROM "device_registry"', [{ time: "1796400000000001000", device: "atm-7", op: "provisioned" }]]],
  events: [{ topic: "consent", event: { subject: "cust-1", purpose: "analytics", granted: true } }],
};

/** A file with a header that vouches for `content` (right length and checksum), whatever the content says. */
const vouched = (content: string, format = 1) =>
  `REFEED-VIEWS-SNAPSHOT ${format} ${createHash("sha256").update(content).digest("hex")} ${Buffer.byteLength(content)}\n${content}`;

describe("the views snapshot file", () => {
  let dir: string;
  let file: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-snapshot-file-"));
    file = path.join(dir, "views.snapshot");
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("reads back what was written, and leaves no temporary file beside it", async () => {
    await writeSnapshot(file, snapshot);
    await writeSnapshot(file, { ...snapshot, events: [] });
    expect(await readSnapshot(file, influx)).toEqual({ ok: true, snapshot: { ...snapshot, events: [] } });
    expect(await readdir(dir)).toEqual(["views.snapshot"]);
  });

  it("is not used when any byte of it changed, or it was cut short", async () => {
    await writeSnapshot(file, snapshot);
    const bytes = await readFile(file);
    const changed = Buffer.from(bytes);
    changed[changed.indexOf("atm-7")] = "b".charCodeAt(0);
    await writeFile(file, changed);
    expect(await readSnapshot(file, influx)).toEqual({
      ok: false,
      reason: "unverified",
      detail: "the checksum does not match the content",
    });
    await writeFile(file, bytes.subarray(0, bytes.length - 10));
    expect(await readSnapshot(file, influx)).toMatchObject({
      ok: false,
      reason: "unverified",
      detail: expect.stringMatching(/bytes of content, the header says/),
    });
  });

  it("is not used when it has no header, another format, or content of the wrong shape", async () => {
    await writeFile(file, JSON.stringify(snapshot));
    expect(await readSnapshot(file, influx)).toMatchObject({
      ok: false,
      reason: "unverified",
      detail: "no snapshot header",
    });
    await writeFile(file, vouched(JSON.stringify({ format: 2, ...snapshot }), 2));
    expect(await readSnapshot(file, influx)).toMatchObject({
      ok: false,
      reason: "unverified",
      detail: "format 2, this Refeed reads 1",
    });
    await writeFile(file, vouched("{not json"));
    expect(await readSnapshot(file, influx)).toMatchObject({ ok: false, reason: "unverified" });
    // Vouched for, but a row's time is not InfluxDB's nanoseconds.
    const bad = { format: 1, ...snapshot, answers: [["SELECT 1", [{ time: "yesterday" }]]] };
    await writeFile(file, vouched(JSON.stringify(bad)));
    expect(await readSnapshot(file, influx)).toMatchObject({ ok: false, reason: "unverified" });
  });

  it("is not used for another database or another InfluxDB", async () => {
    await writeSnapshot(file, snapshot);
    expect(await readSnapshot(file, { ...influx, db: "other" })).toMatchObject({ ok: false, reason: "other_database" });
    expect(await readSnapshot(file, { ...influx, url: "http://10.0.0.9:8086" })).toMatchObject({
      ok: false,
      reason: "other_database",
    });
  });

  it("says when there is none", async () => {
    expect(await readSnapshot(file, influx)).toMatchObject({ ok: false, reason: "missing" });
  });
});
