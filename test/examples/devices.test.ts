import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxQuery } from "../support/influx.ts";
import { startMqttProxy, type MqttProxy } from "../support/mqtt-proxy.ts";
import { provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { ROOT, run } from "../support/process.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

// One action per device: the rule waits an hour before it acts for the same device again.
const rule =
  "id: hot\non: telemetry\nwhen: msg.metrics.temp > 30\nthen:\n  - set: ui.theme\n    value: cool\ncooldown: 1h\n";

interface Program {
  lines: string[];
  child: ChildProcess;
  exited: Promise<number | null>;
}

function start(command: string, args: string[], env: Record<string, string>): Program {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let buffered = "";
  const take = (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    lines.push(...parts);
  };
  child.stdout.on("data", take);
  child.stderr.on("data", take);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { lines, child, exited };
}

/**
 * The README's contract, checked by clients the platform did not write: a C device on libmosquitto
 * and a Python device on paho-mqtt (examples/devices/), each against a real platform through a relay
 * that loses the PUBACK of its first action, so each must de-duplicate the redelivery.
 */
describe("example devices in C and Python", () => {
  let t: TestPlatform;
  let proxy: MqttProxy;
  let dir: string;
  const running: Program[] = [];
  beforeAll(async () => {
    t = await startTestPlatform();
    await writeFile(path.join(t.rulesDir, "hot.yaml"), rule);
    await t.restart();
    proxy = await startMqttProxy(t.mqttUrl);
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-examples-"));
  });
  afterAll(async () => {
    for (const p of running) p.child.kill("SIGKILL");
    await proxy?.close();
    await t?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const statuses = async (device: string) =>
    (await influxQuery(t.db, influxql`SELECT status FROM action_log WHERE device = ${device}`)).map((r) => r.status);

  const exercise = async (id: string, command: string, args: string[]) => {
    const device = await provision(t, { id });
    const lost = proxy.lost;
    proxy.losePuback();
    const program = start(command, args, {
      REFEED_HOST: "127.0.0.1",
      REFEED_PORT: new URL(proxy.url).port,
      REFEED_DEVICE_ID: device.id,
      REFEED_DEVICE_TOKEN: device.token,
      REFEED_INTERVAL_MS: "300",
    });
    running.push(program);
    const out = () => program.lines.join("\n");
    await waitFor(() => proxy.lost === lost + 1, "the first action's PUBACK to be lost", 15_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${out()}`);
    });
    await waitFor(
      () =>
        program.lines.some((l) => l.startsWith("duplicate ")) &&
        program.lines.some((l) => l.includes('"ui.theme":"cool"')),
      "the redelivered action to be recognised and the new state printed",
      15_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${out()}`);
    });
    await waitFor(async () => (await statuses(device.id)).includes("applied"), "the device's ack");
    program.child.kill("SIGTERM");
    expect(await program.exited, out()).toBe(0);

    const actions = program.lines.filter((l) => l.startsWith("action "));
    expect(actions, out()).toHaveLength(1);
    expect(actions[0]).toMatch(/^action act_\S+ set ui\.theme "cool" applied$/);
    const id0 = actions[0]!.split(" ")[1];
    expect(program.lines).toContain(`duplicate ${id0} ignored`);
    expect(program.lines.at(-1)).toBe("stopped");
    // The ack went after the first PUBACK, which the relay lost with the connection; the ack can then
    // reach the platform before the redelivery's PUBACK, and `delivered` is skipped (docs/devices.md).
    expect(await statuses(device.id)).toEqual(expect.arrayContaining(["proposed", "applied"]));
  };

  it("C with libmosquitto: builds with cc, takes the action once, acks it and prints its state", async () => {
    const binary = path.join(dir, "device");
    const built = await run(
      "cc",
      ["-O2", "-Wall", "-Wextra", "-Werror", "-o", binary, path.join(ROOT, "examples/devices/device.c"), "-lmosquitto"],
      60_000,
    );
    expect(built.code, built.stderr).toBe(0);
    await exercise("c-device", binary, []);
  }, 60_000);

  it("Python with paho-mqtt: takes the action once, acks it and prints its state", async () => {
    // Debian's interpreter, where Debian's python3-paho-mqtt is installed (not a PATH's pyenv or venv).
    await exercise("python-device", "/usr/bin/python3", [path.join(ROOT, "examples/devices/device.py")]);
  }, 60_000);

  it("both say a refused connection's reason and stop, exit code 2", async () => {
    const { id } = await provision(t, { id: "refused-device" });
    const env = {
      REFEED_HOST: "127.0.0.1",
      REFEED_PORT: new URL(t.mqttUrl).port,
      REFEED_DEVICE_ID: id,
      REFEED_DEVICE_TOKEN: "wrong",
    };
    const py = start("/usr/bin/python3", [path.join(ROOT, "examples/devices/device.py")], env);
    const c = start(path.join(dir, "device"), [], env);
    running.push(py, c);
    expect(await py.exited).toBe(2);
    expect(await c.exited).toBe(2);
    for (const p of [py, c]) expect(p.lines).toContain("refused: bad user name or password (CONNACK 4)");
  }, 30_000);
});
