import { spawn } from "node:child_process";
import path from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectDevice, logLine, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { ROOT } from "../support/process.ts";
import { waitFor } from "../support/wait.ts";

// Memory is compared after full collections, so only what the broker still holds counts.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const held = () => {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};
const MiB = 1024 * 1024;

/** Starts the hostile fleet in its own process; resolves its progress lines. */
function flood(port: number, count: number, announce: number, extra: number) {
  const child = spawn(
    process.execPath,
    [path.join(ROOT, "test/support/announce-flood.mjs"), String(port), String(count), String(announce), String(extra)],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const lines: Array<Record<string, number>> = [];
  let rest = "";
  child.stdout.on("data", (chunk: Buffer) => {
    const parts = (rest + chunk.toString()).split("\n");
    rest = parts.pop() ?? "";
    for (const line of parts) if (line) lines.push(JSON.parse(line) as Record<string, number>);
  });
  return {
    lines,
    /** The fleet's report once the broker closed every connection; kills it if that does not happen in time. */
    closedByBroker(timeoutMs: number) {
      return waitFor(
        () => lines.find((l) => l.closed !== undefined),
        "the broker to close every hostile connection",
        timeoutMs,
      ).finally(() => child.kill());
    },
  };
}

/**
 * Aedes 1.x has no maximum packet size: a client announcing a huge packet
 * makes it wait and buffer. The packet guard in front of it must cut such
 * clients at their first header, so hundreds of them cost nothing.
 */
describe("clients announcing 256 MiB packets", () => {
  let t: TestPlatform;
  let port: number;
  let device: { id: string; token: string };
  beforeAll(async () => {
    // The default 10 s connect timeout stays: closing the flood must not be its doing.
    t = await startTestPlatform({}, { logs: true });
    port = Number(new URL(t.mqttUrl).port);
    device = await provision(t, { id: "real" });
    (await connectDevice(t.mqttUrl, device.id, device.token)).end(true); // warm the token cache and the code paths
  });
  afterAll(() => t?.close());

  it("500 that send nothing more are cut at once, hold no memory, and a real device connects within a second", async () => {
    const before = held();
    const hostile = flood(port, 500, 268_435_455, 0);
    await waitFor(() => hostile.lines.some((l) => l.written === 500), "500 hostile connections announcing 256 MiB");
    const started = performance.now();
    const client = await connectDevice(t.mqttUrl, device.id, device.token);
    const connectMs = performance.now() - started;
    expect(connectMs).toBeLessThan(1000);
    await client.publishAsync(`devices/${device.id}/telemetry`, JSON.stringify({ metrics: { ok: 1 } }), { qos: 1 });
    await client.endAsync();
    // The broker closes them itself, far sooner than the 10 s connect timeout would.
    const report = await hostile.closedByBroker(5000);
    const grown = held() - before;
    expect(grown).toBeLessThan(8 * MiB);
    const line = await logLine(t, (l) => l.reason === "packet_too_large", "a refusal in the log");
    expect(line).toMatchObject({
      msg: "connection closed: packet refused before buffering",
      announced: 268_435_455,
      transport: "tcp",
    });
    console.info(
      `real device connected in ${connectMs.toFixed(0)} ms after 500 connections announced 256 MiB; all closed by the broker within ${report.ms} ms; broker memory grew ${(grown / MiB).toFixed(1)} MiB`,
    );
  });

  it("500 that keep sending after the header are cut before their bytes are buffered", async () => {
    const before = held();
    // 500 x 128 KiB = 64 MiB that an unguarded broker would hold.
    const hostile = flood(port, 500, 268_435_455, 128 * 1024);
    await hostile.closedByBroker(5000);
    const grown = held() - before;
    expect(grown).toBeLessThan(8 * MiB);
    const client = await connectDevice(t.mqttUrl, device.id, device.token);
    await client.endAsync();
  });
});
