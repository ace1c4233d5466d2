import { mkdtemp, readdir, rm, stat, appendFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openSpool, SpoolFullError, type Spool } from "../../ingest/spool.ts";

const log = pino({ level: "silent" });
const batch = (from: number, n = 3) =>
  Array.from({ length: n }, (_, i) => `m,device=d v=${from + i} ${1_700_000_000_000_000 + from + i}`);

async function drain(spool: Spool): Promise<string[][]> {
  const out: string[][] = [];
  for (let lines = await spool.head(1); lines; lines = await spool.head(1)) {
    out.push([...lines]);
    await spool.shift();
  }
  return out;
}

describe("disk spool", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-spool-"));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("gives batches back in order, across segments, and deletes what was replayed", async () => {
    const spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 200, log });
    for (let i = 0; i < 10; i += 1) await spool.append(batch(i * 10));
    expect(spool.depth).toMatchObject({ batches: 10, points: 30 });
    expect((await readdir(dir)).filter((f) => f.endsWith(".spool")).length).toBeGreaterThan(1);
    const got = await drain(spool);
    expect(got).toEqual(Array.from({ length: 10 }, (_, i) => batch(i * 10)));
    expect(spool.depth).toEqual({ batches: 0, points: 0, bytes: 0 });
    expect((await readdir(dir)).filter((f) => f.endsWith(".spool"))).toEqual([]);
    await spool.close();
  });

  it("hands consecutive batches over together, up to a number of lines, and shifts them together", async () => {
    const spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1 << 20, log });
    for (let i = 0; i < 5; i += 1) await spool.append(batch(i * 10));
    expect(await spool.head(7)).toEqual([...batch(0), ...batch(10)]);
    await spool.shift();
    expect(spool.depth).toMatchObject({ batches: 3, points: 9 });
    expect(await spool.head(1)).toEqual(batch(20)); // at least one batch, however small the limit
    await spool.shift();
    expect(await spool.head()).toEqual([...batch(30), ...batch(40)]);
    await spool.shift();
    expect(spool.depth).toEqual({ batches: 0, points: 0, bytes: 0 });
    await spool.close();
  });

  it("keeps a line with a newline inside a quoted string intact", async () => {
    const spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1 << 20, log });
    const lines = ['feedback,device=d text="two\nlines, \\"quoted\\"" 1', "m,device=d v=1 2"];
    await spool.append(lines);
    expect(await spool.head(1)).toEqual(lines);
    await spool.close();
  });

  it("survives a restart: what was appended and not replayed comes back, from the saved cursor", async () => {
    const first = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1 << 20, log });
    await Promise.all([first.append(batch(0)), first.append(batch(10)), first.append(batch(20))]);
    await first.head(1);
    await first.shift();
    await first.close();

    const second = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1 << 20, log });
    expect(second.depth).toMatchObject({ batches: 2, points: 6 });
    expect(await drain(second)).toEqual([batch(10), batch(20)]);
    await second.close();
  });

  it("drops a torn append at the end of a segment (it was never acknowledged) and keeps the rest", async () => {
    const first = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1 << 20, log });
    await first.append(batch(0));
    await first.append(batch(10));
    await first.close();
    const [segment] = (await readdir(dir)).filter((f) => f.endsWith(".spool"));
    const before = (await stat(path.join(dir, segment!))).size;
    await appendFile(path.join(dir, segment!), Buffer.from([0, 0, 1, 0, 0, 0, 0, 3, 1, 2])); // a header promising 256 bytes, then a crash

    const second = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1 << 20, log });
    expect((await stat(path.join(dir, segment!))).size).toBe(before);
    await second.append(batch(20));
    expect(await drain(second)).toEqual([batch(0), batch(10), batch(20)]);
    await second.close();
  });

  it("refuses what does not fit its bound, and takes more once replay made room", async () => {
    const spool = await openSpool({ dir, maxBytes: 300, segmentBytes: 1 << 20, log });
    await spool.append(batch(0));
    await spool.append(batch(10));
    await expect(spool.append(batch(20))).rejects.toBeInstanceOf(SpoolFullError);
    expect(spool.depth.batches).toBe(2);
    await spool.head(1);
    await spool.shift();
    await spool.append(batch(20));
    expect(await drain(spool)).toEqual([batch(10), batch(20)]);
    await spool.close();
  });

  it("commits appends that arrive together with one write, each resolving once on disk", async () => {
    const spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1 << 20, log });
    await Promise.all(Array.from({ length: 50 }, (_, i) => spool.append(batch(i * 10, 1))));
    expect(spool.depth.batches).toBe(50);
    // head() waits for appends under way, so a reader never misses the newest batch.
    const late = spool.append(batch(999, 1));
    expect((await drain(spool)).length).toBe(51);
    await late;
    await spool.close();
  });
});
