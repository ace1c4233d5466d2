import { mkdtemp, open, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openCommitLog } from "../../ingest/commit-log.ts";
import { encodeFrame } from "../../ingest/frame.ts";

const log = pino({ level: "silent" });
const batch = (from: number, n = 3) =>
  Array.from({ length: n }, (_, i) => `m,device=d v=${from + i} ${1_700_000_000_000_000 + from + i}`);
const segments = async (dir: string) => (await readdir(dir)).filter((f) => f.endsWith(".log")).sort();
/** Segments holding frames (the next one is allocated, all zeros, before it is needed). */
const written = async (dir: string) => {
  const out: string[] = [];
  for (const f of await segments(dir))
    if ((await readFile(path.join(dir, f))).subarray(0, 12).some((b) => b !== 0)) out.push(f);
  return out;
};

describe("commit log", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-commit-log-"));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("makes appends durable and deletes each segment once all of it is released", async () => {
    const { log: commitLog, recovered } = await openCommitLog({ dir, segmentBytes: 300, log });
    expect(recovered).toEqual([]);
    const tickets = Array.from({ length: 10 }, (_, i) => commitLog.append(batch(i * 10)));
    expect(commitLog.busy).toBe(true);
    await Promise.all(tickets.map((t) => t.durable));
    expect(commitLog.live).toBe(10);
    const files = await written(dir);
    expect(files.length).toBeGreaterThan(1); // 10 frames of about 150 bytes do not fit one 300-byte segment
    for (const t of tickets) commitLog.release(t);
    commitLog.release(tickets[0]!); // a repeat is ignored
    expect(commitLog.live).toBe(0);
    // Sealed segments go as soon as all of theirs is released; the one still taking appends stays until close.
    await expect.poll(() => written(dir)).toHaveLength(1);
    await commitLog.close();
    expect(await segments(dir)).toEqual([]);
  });

  it("hands what was never released to the next start, oldest first, and forgets it when asked", async () => {
    const first = await openCommitLog({ dir, segmentBytes: 300, log });
    const tickets = Array.from({ length: 6 }, (_, i) => first.log.append(batch(i * 10)));
    await Promise.all(tickets.map((t) => t.durable));
    // Two frames to a segment: [0 10] [20 30] [40 50]. The middle one is released whole, and goes.
    for (const i of [2, 3, 4]) first.log.release(tickets[i]!);
    await expect.poll(() => written(dir)).toHaveLength(2);
    // The process dies here: no close.

    const second = await openCommitLog({ dir, segmentBytes: 300, log });
    // A released batch in a segment still in use comes back too: replaying a point twice is harmless.
    expect(second.recovered).toEqual([batch(0), batch(10), batch(40), batch(50)]);
    await second.forgetRecovered();
    await second.log.close();
    expect(await segments(dir)).toEqual([]);
    const third = await openCommitLog({ dir, segmentBytes: 300, log });
    expect(third.recovered).toEqual([]);
    await third.log.close();
  });

  it("ignores a frame torn by a crash in the middle of an append (it was never acknowledged)", async () => {
    const first = await openCommitLog({ dir, segmentBytes: 1 << 20, log });
    await first.log.append(batch(0)).durable;
    await first.log.close().catch(() => undefined);
    const [file] = await segments(dir);
    // Right after the first frame: a header promising 256 bytes, then the allocated zeros.
    const handle = await open(path.join(dir, file!), "r+");
    await handle.write(Buffer.from([0, 0, 1, 0, 0, 0, 0, 3, 1, 2, 3, 4]), 0, 12, encodeFrame(batch(0)).length);
    await handle.close();
    const second = await openCommitLog({ dir, segmentBytes: 1 << 20, log });
    expect(second.recovered).toEqual([batch(0)]);
    await second.forgetRecovered();
    await second.log.close();
  });

  it("keeps its segments when closed with batches unreleased, for the next start", async () => {
    const first = await openCommitLog({ dir, segmentBytes: 1 << 20, log });
    const kept = first.log.append(batch(0));
    first.log.release(first.log.append(batch(10)));
    await kept.durable;
    await first.log.close();
    expect(await segments(dir)).toHaveLength(1);
    const second = await openCommitLog({ dir, segmentBytes: 1 << 20, log });
    expect(second.recovered[0]).toEqual(batch(0));
    await second.forgetRecovered();
    await second.log.close();
  });
});
