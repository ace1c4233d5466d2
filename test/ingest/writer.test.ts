import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createBatchWriter } from "../../ingest/writer.ts";
import { openStore, type Point, type Store } from "../../store/index.ts";
import { startInfluxd } from "../../store/influxd.ts";
import { freshDb, influxQuery, influxUrl } from "../support/influx.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

const log = pino({ level: "silent" });
const point = (i: number, v: number | string = i): Point => ({
  measurement: "m",
  tags: { device: "d" },
  fields: { v },
  timestamp: String(1_700_000_000_000_000 + i),
});

async function store(url = influxUrl(), db = freshDb()): Promise<Store> {
  return openStore({ url, db, influxdPath: "influxd", connectTimeoutMs: 5000, dataDir: "unused", log });
}

describe("batching writer against a real InfluxDB", () => {
  it("cuts a batch when it is full without waiting for its age", async () => {
    const s = await store();
    const writer = createBatchWriter({ store: s, log, batchSize: 3, flushMs: 60_000, onRejected: () => {} });
    await writer.write([point(1), point(2), point(3)]);
    expect(await influxQuery(s.db, influxql`SELECT count(v) FROM m`)).toEqual([expect.objectContaining({ count: 3 })]);
    await writer.close();
  });

  it("cuts a batch at its age when it is not full", async () => {
    const s = await store();
    const writer = createBatchWriter({ store: s, log, batchSize: 1000, flushMs: 30, onRejected: () => {} });
    await Promise.all([writer.write([point(1)]), writer.write([point(2)])]);
    expect(await influxQuery(s.db, influxql`SELECT count(v) FROM m`)).toEqual([expect.objectContaining({ count: 2 })]);
    expect(writer.pending).toBe(0);
    await writer.close();
  });

  it("isolates a point InfluxDB refuses (field type conflict) and stores the rest", async () => {
    const s = await store();
    const rejected: Array<[Point, string]> = [];
    const writer = createBatchWriter({
      store: s,
      log,
      batchSize: 100,
      flushMs: 10,
      onRejected: (p, m) => rejected.push([p, m]),
    });
    await writer.write([point(0, 1.5)]);
    await writer.write([point(1), point(2, "text"), point(3), point(4)]);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]![0].fields).toEqual({ v: "text" });
    expect(rejected[0]![1]).toMatch(/field type conflict/);
    expect(await influxQuery(s.db, influxql`SELECT count(v) FROM m`)).toEqual([expect.objectContaining({ count: 4 })]);
    await writer.close();
  });

  it("holds writes while InfluxDB is down and stores them once it is back", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-writer-"));
    let influxd = await startInfluxd({ dataDir: dir, log });
    const port = Number(new URL(influxd.url).port);
    const s = await store(influxd.url);
    const failures: string[] = [];
    const watched = pino({ level: "warn" }, { write: (line: string) => failures.push(line) });
    const writer = createBatchWriter({ store: s, log: watched, batchSize: 100, flushMs: 10, onRejected: () => {} });
    await influxd.close();

    let stored = false;
    const pending = writer.write([point(1), point(2)]).then(() => (stored = true));
    // After a failed attempt the write is still outstanding: nothing counts as stored that is not.
    await waitFor(() => failures.some((l) => l.includes("retrying")), "a failed write attempt");
    expect(stored).toBe(false);
    expect(writer.pending).toBe(2);

    influxd = await startInfluxd({ dataDir: dir, log, port });
    await pending;
    expect(await influxQuery(s.db, influxql`SELECT count(v) FROM m`, influxd.url)).toEqual([
      expect.objectContaining({ count: 2 }),
    ]);
    await writer.close();
    await influxd.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("does not hang the platform's shutdown while InfluxDB is down: close gives up after its timeout, loudly", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-writer-"));
    const influxd = await startInfluxd({ dataDir: dir, log });
    const s = await store(influxd.url);
    await influxd.close();
    const lines: string[] = [];
    const watched = pino({ level: "warn" }, { write: (line: string) => lines.push(line) });
    const writer = createBatchWriter({
      store: s,
      log: watched,
      batchSize: 100,
      flushMs: 10,
      onRejected: () => {},
      closeTimeoutMs: 300,
    });
    const pending = writer.write([point(1)]);
    await writer.close();
    await expect(pending).rejects.toThrow();
    expect(lines.some((l) => l.includes("InfluxDB unreachable at shutdown; points not stored"))).toBe(true);
    await rm(dir, { recursive: true, force: true });
  });
});
