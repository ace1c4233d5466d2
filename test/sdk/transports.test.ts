import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, DeviceError, type Action, type Device } from "../../sdk/index.ts";
import { influxQuery } from "../support/influx.ts";
import { api, ingestCaughtUp, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { run } from "../support/process.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

const rule = "id: hot\non: telemetry\nwhen: msg.metrics.temp > 30\nthen:\n  - set: ui.theme\n    value: cool\n";

/** One API over every transport: MQTT over TLS and WebSocket, and server-sent events with HTTP. */
describe("device SDK transports", () => {
  let t: TestPlatform;
  let dir: string;
  let ca: string;
  const devices: Device[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-sdk-tls-"));
    const made = await run("openssl", [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"],
      ...["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
      ...["-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")],
    ]);
    expect(made.code, made.stderr).toBe(0);
    ca = await readFile(path.join(dir, "cert.pem"), "utf8");
    t = await startTestPlatform({}, { tls: { cert: path.join(dir, "cert.pem"), key: path.join(dir, "key.pem") } });
    await writeFile(path.join(t.rulesDir, "hot.yaml"), rule);
    await t.restart();
  });
  afterAll(async () => {
    await Promise.all(devices.map((d) => d.close({ graceMs: 0 })));
    await t?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const statuses = async (device: string) =>
    (await influxQuery(t.db, influxql`SELECT status FROM action_log WHERE device = ${device}`)).map((r) => r.status);

  /** Publishes a hot reading, takes the action once, acks it and sees the new state: the whole contract. */
  const roundTrip = async (device: Device) => {
    const handled: Action[] = [];
    device.onAction((a) => {
      handled.push(a);
      void device.ack(a.id, "applied");
    });
    await device.telemetry({ metrics: { temp: 35 } });
    await waitFor(() => device.state?.profile["ui.theme"] === "cool", "the new state");
    await waitFor(async () => (await statuses(device.id)).includes("applied"), "the applied ack");
    expect(handled.map((a) => a.key)).toEqual(["ui.theme"]);
  };

  it("speaks MQTT over TLS with the platform's certificate as the CA", async () => {
    const { id, token } = await provision(t, { id: "sdk-tls" });
    const url = t.platform.addresses.mqtts!.replace("localhost", "127.0.0.1");
    const device = await connect({ url, id, token, tls: { ca } });
    devices.push(device);
    await roundTrip(device);
    // A certificate the device does not trust is a connection failure, named, not a silent hang.
    const untrusted = await connect({ url, id, token, clientId: `${id}:x`, timeoutMs: 1500 }).catch((e: unknown) => e);
    expect(untrusted).toMatchObject({ code: "UNREACHABLE" });
    expect((untrusted as Error).message).toMatch(/certificate/i);
  });

  it("speaks MQTT over WebSocket at /mqtt", async () => {
    const { id, token } = await provision(t, { id: "sdk-ws" });
    const device = await connect({ url: t.wsUrl, id, token });
    devices.push(device);
    await roundTrip(device);
  });

  it("speaks server-sent events and HTTP, for an app that cannot speak MQTT", async () => {
    const { id, token } = await provision(t, { id: "sdk-sse" });
    const device = await connect({ url: t.http, id, token });
    devices.push(device);
    await roundTrip(device);
    await ingestCaughtUp(t);
    expect(await influxQuery(t.db, influxql`SELECT temp FROM telemetry WHERE device = ${id}`)).toMatchObject([
      { temp: 35 },
    ]);
    // The pending-until-acked stream sends nothing twice to the handler, also on a new stream.
    const again = await connect({ url: t.http, id, token });
    devices.push(again);
    const seen: Action[] = [];
    again.onAction((a) => void seen.push(a));
    await waitFor(() => again.state?.profile["ui.theme"] === "cool", "the state on the new stream");
    expect(seen).toEqual([]);
  });

  it("names HTTP refusals with the same codes as CONNACK refusals", async () => {
    const { id } = await provision(t, { id: "sdk-sse-refused" });
    const wrong = await connect({ url: t.http, id, token: "rfd.wrong" }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(DeviceError);
    expect(wrong).toMatchObject({ code: "BAD_USER_NAME_OR_PASSWORD", final: true, details: { status: 401 } });
    const { token } = (await api(t, "POST", `/api/devices/${id}/rotate`)).body as { token: string };
    await api(t, "POST", `/api/devices/${id}/revoke`);
    expect(await connect({ url: t.http, id, token }).catch((e: unknown) => e)).toMatchObject({ final: true });
  });
});
