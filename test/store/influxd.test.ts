import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { InfluxdMissingError, startInfluxd } from "../../store/influxd.ts";

const log = pino({ level: "silent" });

describe("managed influxd", () => {
  it("starts a private influxd with its data under the data dir and stops it", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-influxd-"));
    const influxd = await startInfluxd({ dataDir: dir, log });
    expect(influxd.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await fetch(`${influxd.url}/ping`)).status).toBe(204);
    expect((await stat(path.join(dir, "influxdb", "meta"))).isDirectory()).toBe(true);
    const pid = influxd.pid!;
    await influxd.close();
    expect(() => process.kill(pid, 0)).toThrow();
    await rm(dir, { recursive: true, force: true });
  });

  it("restarts influxd when it dies unexpectedly", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-influxd-"));
    const influxd = await startInfluxd({ dataDir: dir, log });
    const first = influxd.pid!;
    process.kill(first, "SIGKILL");
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (influxd.pid !== first) {
        const ok = await fetch(`${influxd.url}/ping`).then(
          (r) => r.status === 204,
          () => false,
        );
        if (ok) break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(influxd.pid).not.toBe(first);
    expect((await fetch(`${influxd.url}/ping`)).status).toBe(204);
    await influxd.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("says how to install influxd when it is not there", async () => {
    await expect(startInfluxd({ dataDir: os.tmpdir(), log, binary: "/nonexistent/influxd" })).rejects.toBeInstanceOf(
      InfluxdMissingError,
    );
  });
});
