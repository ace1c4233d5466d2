import { mkdtemp, readFile, rename, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxQuery, rowsOnce } from "../support/influx.ts";
import { connectDevice, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { run } from "../support/process.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

/**
 * The optional `mqtts` listener, with a throwaway self-signed certificate
 * made by the openssl CLI (an EC key: quick to generate).
 */
describe("MQTT over TLS", () => {
  let dir: string;
  let cert: string;
  let t: TestPlatform;
  let port: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "refeed-tls-"));
    const selfSigned = async (name: string) => {
      const made = await run("openssl", [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout",
        path.join(dir, `${name}-key.pem`),
        "-out",
        path.join(dir, `${name}.pem`),
      ]);
      expect(made.code, made.stderr).toBe(0);
    };
    await selfSigned("cert");
    await selfSigned("stranger"); // a certificate the broker does not have
    await rename(path.join(dir, "cert-key.pem"), path.join(dir, "key.pem"));
    cert = await readFile(path.join(dir, "cert.pem"), "utf8");
    t = await startTestPlatform({}, { tls: { cert: path.join(dir, "cert.pem"), key: path.join(dir, "key.pem") } });
    port = new URL(t.platform.addresses.mqtts!).port;
  });
  afterAll(async () => {
    await t?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("serves devices over mqtts with the same identity and ACL (mqtt.js)", async () => {
    expect(t.platform.addresses.mqtts).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    const device = await provision(t, { id: "atm-1" });
    const client = await connectDevice(`mqtts://127.0.0.1:${port}`, device.id, device.token, { ca: cert });
    await client.publishAsync(`devices/${device.id}/telemetry`, JSON.stringify({ metrics: { tls: true } }), { qos: 1 });
    // The PUBACK means the point is durable on disk; InfluxDB has it moments later.
    expect(await rowsOnce(t.db, influxql`SELECT tls FROM telemetry WHERE device = 'atm-1'`)).toEqual([
      expect.objectContaining({ tls: true }),
    ]);
    const refused = await client
      .subscribeAsync("devices/#", { qos: 1 })
      .catch((err: { packet?: { granted?: number[] } }) => err);
    expect(refused).toMatchObject({ packet: { granted: [128] } });
    await client.endAsync();
    await waitFor(
      async () =>
        (await influxQuery(t.db, influxql`SELECT * FROM presence WHERE device = 'atm-1' AND event = 'disconnect'`))[0]
          ?.transport === "tls",
      "presence over tls",
    );
    await expect(
      connectDevice(`mqtts://127.0.0.1:${port}`, device.id, "rfd.YXRtLTE.wrong", { ca: cert }),
    ).rejects.toThrow(/Bad username or password/i);
  });

  it("mosquitto_pub verifies the certificate and publishes", async () => {
    const device = await provision(t, { id: "atm-2" });
    const pub = await run("mosquitto_pub", [
      "-h",
      "127.0.0.1",
      "-p",
      port,
      "--cafile",
      path.join(dir, "cert.pem"),
      "-i",
      device.id,
      "-u",
      device.id,
      "-P",
      device.token,
      "-q",
      "1",
      "-t",
      `devices/${device.id}/telemetry`,
      "-m",
      '{"metrics":{"tls":true}}',
    ]);
    expect(pub).toMatchObject({ code: 0, stderr: "" });
    expect(await rowsOnce(t.db, influxql`SELECT tls FROM telemetry WHERE device = 'atm-2'`)).toHaveLength(1);
    // A client that does not trust the certificate gets no session.
    const untrusting = await run("mosquitto_pub", [
      "-h",
      "127.0.0.1",
      "-p",
      port,
      "--cafile",
      path.join(dir, "stranger.pem"),
      "-i",
      device.id,
      "-u",
      device.id,
      "-P",
      device.token,
      "-t",
      `devices/${device.id}/telemetry`,
      "-m",
      "{}",
    ]);
    expect(untrusting.code).not.toBe(0);
    expect(untrusting.stderr).toMatch(/TLS error/i);
  });

  it("stops at start with the variable named when a certificate file cannot be read", async () => {
    await expect(
      startTestPlatform({}, { tls: { cert: path.join(dir, "missing.pem"), key: path.join(dir, "key.pem") } }),
    ).rejects.toThrow(/^REFEED_MQTT_TLS_CERT: cannot read .*missing\.pem \(ENOENT\)$/);
  });
});
