import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { configSchema } from "../../config/schema.ts";
import { openStoreOrSnapshot } from "../../platform/snapshot-start.ts";
import { writeSnapshot, SNAPSHOT_FILE } from "../../snapshot/file.ts";
import { freePort } from "../../store/influxd.ts";

/** Which store a start gets when InfluxDB does not answer: the snapshot only for a single node. */
describe("a start while InfluxDB does not answer", () => {
  let dir: string;
  let influx: string;
  const lines: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: "info" },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-snapshot-start-unit-"));
    // Nothing listens there.
    influx = `http://127.0.0.1:${await freePort()}`;
    lines.length = 0;
    await writeSnapshot(path.join(dir, SNAPSHOT_FILE), {
      writtenAt: new Date().toISOString(),
      influx: { url: influx, db: "refeed" },
      answers: [],
      events: [],
    });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const config = (extra: Record<string, unknown> = {}) =>
    configSchema.parse({
      influx: { url: influx, db: "refeed", connectTimeoutMs: 30_000 },
      dataDir: dir,
      adminToken: "test-admin-token-0123456789",
      snapshot: { startWait: "300ms" },
      ...extra,
    });

  it("starts a single node from a verified snapshot after the short wait, not the whole connect timeout", async () => {
    const opened = await openStoreOrSnapshot(config(), log);
    expect(opened.kind).toBe("snapshot");
    expect(lines).toContainEqual(
      expect.objectContaining({
        msg: expect.stringMatching(/^InfluxDB is unreachable: starting degraded from the verified views snapshot/),
        influx,
      }),
    );
    await opened.store.close();
  });

  it("does not start a cluster node from it: the node fails as before and says the snapshot start is single node only", async () => {
    const cluster = config({
      redis: { url: "redis://127.0.0.1:6390" },
      influx: { url: influx, db: "refeed", connectTimeoutMs: 300 },
    });
    await expect(openStoreOrSnapshot(cluster, log)).rejects.toMatchObject({ code: "REFEED_INFLUX_UNREACHABLE" });
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 50, msg: expect.stringMatching(/single node only/), influx }),
    );
  });
});
