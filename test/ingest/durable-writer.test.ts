import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openCommitLog } from "../../ingest/commit-log.ts";
import type { Line } from "../../ingest/lineprotocol.ts";
import { openSpool, SpoolFullError, type Spool } from "../../ingest/spool.ts";
import { createDurableWriter, type DurableWriterOptions } from "../../ingest/durable-writer.ts";
import { openStore, type Store } from "../../store/index.ts";
import { startInfluxd, type ManagedInfluxd, type ManagedInfluxdOptions } from "../../store/influxd.ts";
import { freshDb, influxQuery, influxUrl } from "../support/influx.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

const log = pino({ level: "silent" });
const line = (i: number, v: number | string = i): Line =>
  `m,device=d v=${typeof v === "string" ? `"${v}"` : v} ${1_700_000_000_000_000 + i}`;
const lines = (from: number, n: number) => Array.from({ length: n }, (_, i) => line(from + i));

async function store(url = influxUrl(), db = freshDb()): Promise<Store> {
  return openStore({ url, db, influxdPath: "influxd", connectTimeoutMs: 5000, dataDir: "unused", log });
}

describe("durable ingest writer against a real InfluxDB", () => {
  let dir: string;
  let spool: Spool;
  /** Every influxd a test starts is stopped after it, also when the test fails half-way. */
  const started: ManagedInfluxd[] = [];
  const launch = async (options: ManagedInfluxdOptions) => {
    const influxd = await startInfluxd(options);
    started.push(influxd);
    return influxd;
  };
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-writer-"));
    spool = await openSpool({ dir: path.join(dir, "spool"), maxBytes: 1 << 20, segmentBytes: 1 << 16, log });
  });
  afterEach(async () => {
    for (const influxd of started.splice(0)) await influxd.close();
    await spool.close();
    await rm(dir, { recursive: true, force: true });
  });
  const writer = (s: Pick<Store, "writeLines">, overrides: Partial<DurableWriterOptions> = {}) =>
    createDurableWriter({
      store: s,
      spool,
      log,
      batchSize: 1000,
      flushMs: 20,
      maxInFlight: 4,
      maxQueuedBatches: 8,
      writeTimeoutMs: 2000,
      onRejected: () => {},
      ...overrides,
    });
  const count = async (s: Store, url?: string) =>
    (await influxQuery(s.db, influxql`SELECT count(v) FROM m`, url))[0]?.count ?? 0;

  it("cuts a batch when it is full without waiting for its age", async () => {
    const s = await store();
    const w = writer(s, { batchSize: 3, flushMs: 60_000 });
    await w.write(lines(0, 3));
    expect(await count(s)).toBe(3);
    await w.close();
  });

  it("cuts a batch at its age when it is not full", async () => {
    const s = await store();
    const w = writer(s, { flushMs: 30 });
    await Promise.all([w.write([line(1)]), w.write([line(2)])]);
    expect(await count(s)).toBe(2);
    expect(w.pending).toBe(0);
    await w.close();
  });

  it("isolates a point InfluxDB refuses (field type conflict) with its message, stores the rest, and never retries the 400", async () => {
    const s = await store();
    const requests: number[] = [];
    const counting = {
      writeLines: (body: string, t: number) => (requests.push(body.split("\n").length), s.writeLines(body, t)),
    };
    const rejected: Array<[Line, string]> = [];
    const w = writer(counting, { onRejected: (l, m) => rejected.push([l, m]) });
    await w.write([line(0, 1.5)]);
    await w.write([line(1), line(2, "text"), line(3), line(4)]);
    expect(rejected).toEqual([
      [line(2, "text"), expect.stringMatching(/field type conflict.*already exists as type float/)],
    ]);
    expect(await count(s)).toBe(4);
    // 1 + the batch of 4 split down to the bad point: 4 -> 2+2 -> 1+1; a finite number of requests, no retry loop.
    expect(requests).toEqual([1, 4, 2, 1, 1, 2]);
    expect(w.mode).toBe("direct");
    expect(spool.depth.batches).toBe(0);
    await w.close();
  });

  it("keeps several batches in flight, bounds what waits in memory, and spills the rest to the spool in order", async () => {
    const s = await store();
    let gate!: () => void;
    const opened = new Promise<void>((resolve) => (gate = resolve));
    let concurrent = 0;
    let most = 0;
    const slow = {
      async writeLines(body: string, t: number) {
        concurrent += 1;
        most = Math.max(most, concurrent);
        await opened; // InfluxDB is slow until the gate opens
        try {
          return await s.writeLines(body, t);
        } finally {
          concurrent -= 1;
        }
      },
    };
    const w = writer(slow, { batchSize: 10, maxInFlight: 2, maxQueuedBatches: 1 });
    const done = Array.from({ length: 5 }, (_, b) => w.write(lines(b * 10, 10)));
    // Two batches in flight, one waiting in memory; the fourth finds the queue full, so the
    // waiting one and everything after it go to the spool, in order, durable at once.
    await Promise.all(done.slice(2));
    expect(spool.depth.batches).toBe(3);
    expect(w.mode).toBe("spooling");
    expect(w.pending).toBe(20);
    gate();
    await Promise.all(done);
    await waitFor(() => w.mode === "direct", "the spool to be replayed");
    // The two direct writes, and the replay's own slot beside them.
    expect(most).toBe(3);
    const rows = await influxQuery(s.db, influxql`SELECT v FROM m`);
    expect(rows.map((r) => r.v)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await w.close();
  });

  describe("with a commit log", () => {
    /** InfluxDB that holds every write until the gate opens. */
    const gated = (s: Store) => {
      let open!: () => void;
      const opened = new Promise<void>((resolve) => (open = resolve));
      const requests: number[] = [];
      return {
        requests,
        open,
        store: {
          writeLines: async (body: string, t: number) => (
            requests.push(body.split("\n").length),
            await opened,
            s.writeLines(body, t)
          ),
        },
      };
    };

    it("acknowledges once a batch is on disk, before InfluxDB has it, and lets go of it once InfluxDB does", async () => {
      const s = await store();
      const slow = gated(s);
      const opened = await openCommitLog({ dir: path.join(dir, "commit-log"), segmentBytes: 1 << 20, log });
      const w = writer(slow.store, { commitLog: opened.log, flushMs: 60_000 });
      await w.write(lines(0, 5));
      // Durable in the commit log while the one InfluxDB write is still held.
      expect(slow.requests).toEqual([5]);
      expect(await count(s)).toBe(0);
      expect(opened.log.live).toBe(1);
      expect(w.pending).toBe(5);
      slow.open();
      await w.flush();
      expect(await count(s)).toBe(5);
      expect(opened.log.live).toBe(0);
      await w.close();
      await opened.log.close();
      expect(await readdir(path.join(dir, "commit-log"))).toEqual([]);
    });

    it("tells the caller the lines are logged (rules may see them) no later than they are durable, and never for refused lines", async () => {
      const s = await store();
      const slow = gated(s);
      const opened = await openCommitLog({ dir: path.join(dir, "commit-log"), segmentBytes: 1 << 20, log });
      const w = writer(slow.store, { commitLog: opened.log });
      const events: string[] = [];
      await w.write(lines(0, 2), () => events.push("logged")).then(() => events.push("durable"));
      expect(events).toEqual(["logged", "durable"]);
      slow.open();
      await w.close();
      await opened.log.close();

      // Refused: InfluxDB down, the spool full, no commit log to take it.
      const small = await openSpool({ dir: path.join(dir, "small"), maxBytes: 200, segmentBytes: 1 << 16, log });
      const down = {
        writeLines: () => Promise.reject(Object.assign(new Error("connection refused"), { status: undefined })),
      };
      const refusing = createDurableWriter({
        store: down,
        spool: small,
        log,
        batchSize: 5,
        flushMs: 10,
        maxInFlight: 1,
        maxQueuedBatches: 1,
        writeTimeoutMs: 1000,
        onRejected: () => {},
      });
      await refusing.write(lines(0, 5)).catch(() => undefined);
      let logged = false;
      await expect(refusing.write(lines(5, 5), () => (logged = true))).rejects.toBeInstanceOf(SpoolFullError);
      expect(logged).toBe(false);
      await refusing.close();
      await small.close();
    });

    it("merges the small batches that wait for a write slot into writes of up to batchSize lines", async () => {
      const s = await store();
      const slow = gated(s);
      const opened = await openCommitLog({ dir: path.join(dir, "commit-log"), segmentBytes: 1 << 20, log });
      const w = writer(slow.store, { commitLog: opened.log, batchSize: 10, maxInFlight: 1, flushMs: 60_000 });
      // One record at a time, each acknowledged from the log before the next: 25 batches of one line.
      for (let i = 0; i < 25; i += 1) await w.write([line(i)]);
      slow.open();
      await w.flush();
      expect(slow.requests[0]).toBe(1);
      expect(slow.requests.slice(1)).toEqual([10, 10, 4]);
      const rows = await influxQuery(s.db, influxql`SELECT v FROM m`);
      expect(rows.map((r) => r.v)).toEqual(Array.from({ length: 25 }, (_, i) => i));
      await w.close();
      await opened.log.close();
    });

    it("after a crash, the next start hands what InfluxDB never got to the spool", async () => {
      const s = await store();
      const never = gated(s);
      const dirOf = path.join(dir, "commit-log");
      const first = await openCommitLog({ dir: dirOf, segmentBytes: 1 << 20, log });
      const w = writer(never.store, { commitLog: first.log });
      await w.write(lines(0, 3));
      await w.write(lines(3, 2));
      // Acknowledged, InfluxDB never answered, and the process dies: no close.

      const second = await openCommitLog({ dir: dirOf, segmentBytes: 1 << 20, log });
      expect(second.recovered.flat()).toEqual(lines(0, 5));
      const next = await openSpool({ dir: path.join(dir, "spool-2"), maxBytes: 1 << 20, segmentBytes: 1 << 16, log });
      for (const b of second.recovered) await next.append(b);
      await second.forgetRecovered();
      const w2 = createDurableWriter({
        store: s,
        spool: next,
        commitLog: second.log,
        log,
        batchSize: 1000,
        flushMs: 20,
        maxInFlight: 4,
        maxQueuedBatches: 8,
        writeTimeoutMs: 2000,
        onRejected: () => {},
      });
      await waitFor(() => w2.mode === "direct", "the spool to be replayed");
      const rows = await influxQuery(s.db, influxql`SELECT v FROM m`);
      expect(rows.map((r) => r.v)).toEqual([0, 1, 2, 3, 4]);
      await w2.close();
      await second.log.close();
      await next.close();
    });
  });

  describe("while InfluxDB is down", () => {
    it("spools batches (durable at once), replays them in order when it is back, and stores each point exactly once", async () => {
      const influxDir = path.join(dir, "influx");
      let influxd = await launch({ dataDir: influxDir, log });
      const port = Number(new URL(influxd.url).port);
      const s = await store(influxd.url);
      const w = writer(s, { batchSize: 5 });
      await w.write(lines(0, 5));
      await influxd.close();

      // Acknowledged means durable: these resolve from the spool while InfluxDB is down.
      await Promise.all([w.write(lines(5, 5)), w.write(lines(10, 5)), w.write(lines(15, 3))]);
      expect(w.mode).toBe("spooling");
      expect(spool.depth.points).toBe(13);

      influxd = await launch({ dataDir: influxDir, log, port });
      await waitFor(() => w.mode === "direct", "the spool to be replayed", 20_000);
      await w.write(lines(18, 2));
      const rows = await influxQuery(s.db, influxql`SELECT v FROM m`, influxd.url);
      expect(rows.map((r) => r.v)).toEqual(Array.from({ length: 20 }, (_, i) => i));
      expect(spool.depth).toEqual({ batches: 0, points: 0, bytes: 0 });
      await w.close();
      await influxd.close();
    });

    it("gets back to direct writes while traffic goes on during the replay", async () => {
      const influxDir = path.join(dir, "influx");
      let influxd = await launch({ dataDir: influxDir, log });
      const port = Number(new URL(influxd.url).port);
      const s = await store(influxd.url);
      const w = writer(s, { batchSize: 1000, flushMs: 200 });
      let next = 0;
      let running = true;
      const traffic: Array<Promise<void>> = [];
      // About 10,000 points/s, well within what InfluxDB takes here, so the replay can catch up.
      const keepWriting = () => {
        if (!running) return;
        for (let i = 0; i < 10; i += 1) traffic.push(w.write([line(next++)]));
        setTimeout(keepWriting, 1);
      };
      keepWriting();
      await influxd.close();
      await waitFor(() => spool.depth.points > 0, "traffic to reach the spool");
      influxd = await launch({ dataDir: influxDir, log, port });
      await waitFor(() => w.mode === "direct", "the replay to catch up with the traffic", 20_000);
      const afterReplay = next;
      await waitFor(() => next > afterReplay + 500, "direct writes under traffic");
      running = false;
      await Promise.all(traffic);
      expect(w.mode).toBe("direct");
      const rows = await influxQuery(s.db, influxql`SELECT count(v) FROM m`, influxd.url);
      expect(rows).toEqual([expect.objectContaining({ count: next })]);
      await w.close();
      await influxd.close();
    });

    it("refuses (rather than drops) what the full spool cannot take", async () => {
      const small = await openSpool({ dir: path.join(dir, "small"), maxBytes: 400, segmentBytes: 1 << 16, log });
      const unreachable = await store();
      const down = {
        writeLines: (body: string) =>
          fetch("http://127.0.0.1:9/write", { method: "POST", body }).then(() => unreachable.writeLines(body, 10)),
      };
      const w = createDurableWriter({
        store: down,
        spool: small,
        log,
        batchSize: 5,
        flushMs: 10,
        maxInFlight: 1,
        maxQueuedBatches: 1,
        writeTimeoutMs: 1000,
        onRejected: () => {},
      });
      await w.write(lines(0, 5));
      await w.write(lines(5, 5));
      await expect(w.write(lines(10, 5))).rejects.toBeInstanceOf(SpoolFullError);
      expect(small.depth.points).toBe(10);
      await w.close();
      await small.close();
    });
  });
});
