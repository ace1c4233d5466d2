import { spawn } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run, runCli } from "../support/process.ts";
import { waitFor } from "../support/wait.ts";

/**
 * The README's walk-through, for real: `refeed start` with no InfluxDB
 * configured starts its own influxd; curl-like HTTP calls and Debian's
 * mosquitto_pub / mosquitto_sub are the device.
 */
describe("refeed start (managed InfluxDB) with mosquitto clients", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-cli-"));
    await mkdir(path.join(dir, "rules"));
    await writeFile(
      path.join(dir, "rules", "cool-theme.yaml"),
      "id: cool-theme\non: telemetry\nwhen: msg.metrics.temp > 30\nthen:\n  - set: ui.theme\n    value: cool\n",
    );
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const env = () => ({
    REFEED_DATA_DIR: path.join(dir, "data"),
    REFEED_RULES_DIR: path.join(dir, "rules"),
    REFEED_MQTT_PORT: "0",
    REFEED_HTTP_PORT: "0",
  });

  it("runs, is driven by mosquitto_pub/sub, stops cleanly, and keeps its state for the next start", async () => {
    const first = runCli(["start"], env());
    const started = await first.logLine((l) => l.msg === "refeed listening", "the listening line", 60_000);
    // One line lists every address.
    expect(started).toMatchObject({
      mqtt: expect.stringMatching(/^mqtt:\/\//),
      http: expect.stringMatching(/^http:\/\//),
      ws: expect.stringMatching(/\/mqtt$/),
      influx: expect.stringMatching(/^http:\/\/127\.0\.0\.1:/),
    });
    const influxPid = (await first.logLine((l) => l.msg === "managed influxd started", "influxd")).pid as number;
    const adminToken = /rfa_[A-Za-z0-9_-]+/.exec(first.stderr.join("\n"))?.[0];
    expect(adminToken).toBeDefined();
    expect(first.stdout.join("\n")).not.toContain(adminToken!);
    const http = started.http as string;
    const mqttPort = new URL(started.mqtt as string).port;

    const health = await fetch(`${http}/healthz`);
    expect(await health.json()).toMatchObject({ status: "ok", influx: "reachable" });

    const created = await fetch(`${http}/api/devices`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ id: "tv-livingroom", kind: "tv" }),
    });
    expect(created.status).toBe(201);
    const { token } = (await created.json()) as { token: string };
    expect(first.stdout.join("\n")).not.toContain(token);

    const sub = spawn("mosquitto_sub", [
      "-p",
      mqttPort,
      "-i",
      "tv-livingroom",
      "-u",
      "tv-livingroom",
      "-P",
      token,
      "-q",
      "1",
      "-v",
      "-t",
      "devices/tv-livingroom/actions",
      "-C",
      "1",
      "-W",
      "20",
    ]);
    let received = "";
    sub.stdout.on("data", (c: Buffer) => (received += c.toString()));
    const subDone = new Promise((resolve) => sub.once("exit", resolve));

    // Publish until the subscriber is in place and the action arrives.
    await waitFor(
      async () => {
        const pub = await run("mosquitto_pub", [
          "-p",
          mqttPort,
          "-i",
          "tv-livingroom:pub",
          "-u",
          "tv-livingroom",
          "-P",
          token,
          "-q",
          "1",
          "-t",
          "devices/tv-livingroom/telemetry",
          "-m",
          '{"metrics":{"temp":31}}',
        ]);
        expect(pub.code).toBe(0);
        return received.length > 0;
      },
      "the action at mosquitto_sub",
      20_000,
    );
    await subDone;
    expect(received).toMatch(/^devices\/tv-livingroom\/actions \{.*"rule":"cool-theme".*"value":"cool"/);

    const denied = await run("mosquitto_pub", [
      "-p",
      mqttPort,
      "-i",
      "tv-livingroom",
      "-u",
      "tv-livingroom",
      "-P",
      "wrong",
      "-t",
      "devices/tv-livingroom/telemetry",
      "-m",
      "{}",
    ]);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/not authori[sz]ed|bad user name or password/i);

    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect(first.stdout.join("\n")).toContain("ingest flushed and closed");
    expect(() => process.kill(influxPid, 0)).toThrow(); // the managed influxd is gone too

    // Second start on the same data dir: no new admin token, the old one and the device token still work.
    const second = runCli(["start"], env());
    const again = await second.logLine((l) => l.msg === "refeed listening", "the listening line", 60_000);
    expect(second.stderr.join("\n")).not.toMatch(/rfa_/);
    const list = await fetch(`${String(again.http)}/api/devices`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(((await list.json()) as Array<{ id: string }>).map((d) => d.id)).toEqual(["tv-livingroom"]);
    const pub = await run("mosquitto_pub", [
      "-p",
      new URL(again.mqtt as string).port,
      "-i",
      "tv-livingroom",
      "-u",
      "tv-livingroom",
      "-P",
      token,
      "-q",
      "1",
      "-t",
      "devices/tv-livingroom/telemetry",
      "-m",
      '{"metrics":{"temp":20}}',
    ]);
    expect(pub.code).toBe(0);
    second.child.kill("SIGINT");
    expect(await second.exited).toBe(0);
  }, 120_000);

  it("stops with a message naming the variable for a bad configuration value", async () => {
    const bad = runCli(["start"], { ...env(), REFEED_MQTT_PORT: "mqtt" });
    expect(await bad.exited).toBe(2);
    expect(bad.stderr.join("\n")).toContain(
      'REFEED_MQTT_PORT: expected a port number from 0 to 65535 (0 picks a free port) (got "mqtt")',
    );
  });

  it("says in one line how to install influxd when it is missing", async () => {
    const missing = runCli(["start"], { ...env(), REFEED_INFLUXD_PATH: "/nonexistent/influxd" });
    expect(await missing.exited).toBe(3);
    const lines = missing.stderr.filter((l) => l.trim() !== "");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^refeed: influxd \(InfluxDB 1\.x\) not found .*apt-get install influxdb.*docker compose up -d influxdb/,
    );
  });

  it("says clearly when a configured InfluxDB cannot be reached", async () => {
    const down = runCli(["start"], {
      ...env(),
      REFEED_INFLUX_URL: "http://127.0.0.1:9",
      REFEED_INFLUX_CONNECT_TIMEOUT_MS: "500",
    });
    expect(await down.exited).toBe(1);
    expect(down.stdout.join("\n")).toMatch(/InfluxDB at http:\/\/127\.0\.0\.1:9 is not reachable.*REFEED_INFLUX_URL/);
  });
});
