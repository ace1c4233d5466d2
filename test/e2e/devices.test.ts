import { spawn } from "node:child_process";
import { connect as tcpConnect } from "node:net";
import mqttPacket from "mqtt-packet";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxQuery } from "../support/influx.ts";
import {
  ADMIN_TOKEN,
  api,
  connectDevice,
  provision,
  startTestPlatform,
  type TestPlatform,
} from "../support/platform.ts";
import { devices } from "../../cli/devices.ts";
import { inProcess, runCli } from "../support/process.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

const closed = (client: MqttClient) =>
  new Promise<void>((resolve) => (client.disconnected ? resolve() : client.once("close", () => resolve())));

interface PresenceRow {
  time: string;
  event: string;
  reason: string | null;
  client: string;
  transport: string;
  topic: string | null;
}

/** `refeed devices ...` against the test platform's API. */
const cli = (t: TestPlatform, args: string[], env: Record<string, string> = { REFEED_ADMIN_TOKEN: ADMIN_TOKEN }) =>
  inProcess(devices, t.http, args, env);

describe("device lifecycle and presence", () => {
  let t: TestPlatform;
  const presence = (device: string) =>
    influxQuery(t.db, influxql`SELECT * FROM presence WHERE device = ${device}`) as Promise<unknown> as Promise<
      PresenceRow[]
    >;
  const device = async (id: string) => (await api(t, "GET", `/api/devices/${id}`)).body;

  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(() => t?.close());

  it("lists devices with online state and last seen; rotation closes live sessions and only the new token works", async () => {
    const tv = await provision(t, { id: "tv", kind: "tv" });
    expect(await device("tv")).toMatchObject({ online: false, connections: 0, lastSeen: null, revoked: false });
    const first = await connectDevice(t.mqttUrl, tv.id, tv.token);
    const port = new URL(t.mqttUrl).port;
    const sub = spawn("mosquitto_sub", [
      "-p",
      port,
      "-i",
      "tv:sub",
      "-u",
      "tv",
      "-P",
      tv.token,
      "-q",
      "1",
      "-t",
      "devices/tv/actions",
    ]);
    const subExited = new Promise<number | null>((resolve) => sub.once("exit", resolve));
    const listed = await waitFor(async () => {
      const all = (await api(t, "GET", "/api/devices")).body as unknown as Array<Record<string, unknown>>;
      const row = all.find((d) => d.id === "tv");
      return row?.connections === 2 && row;
    }, "two live sessions");
    expect(listed).toMatchObject({ online: true, kind: "tv", revoked: false });
    expect(Date.parse(listed.lastSeen as string)).toBeGreaterThan(Date.now() - 60_000);

    const rotated = await api(t, "POST", "/api/devices/tv/rotate");
    expect(rotated).toMatchObject({ status: 200, body: { id: "tv", token: expect.stringMatching(/^rfd\.dHY\./) } });
    // Both sessions end at once, from the broker's side.
    await closed(first);
    expect(await subExited).not.toBe(0);
    await expect(connectDevice(t.mqttUrl, tv.id, tv.token)).rejects.toThrow(/Bad username or password/i);
    const again = await connectDevice(t.mqttUrl, tv.id, rotated.body.token as string);
    await waitFor(async () => {
      const rows = await presence("tv");
      expect(rows.filter((r) => r.event === "disconnect").map((r) => r.reason)).toEqual([
        "token_rotated",
        "token_rotated",
      ]);
      expect(
        rows
          .filter((r) => r.event === "connect")
          .map((r) => r.client)
          .sort(),
      ).toEqual(["tv", "tv", "tv:sub"]);
      return true;
    }, "the presence events");
    await again.endAsync();
    expect((await api(t, "POST", "/api/devices/nope/rotate")).status).toBe(404);
  });

  it("revocation closes the live session at once; the device stays listed as revoked and cannot be rotated", async () => {
    const kiosk = await provision(t, { id: "kiosk" });
    const client = await connectDevice(t.wsUrl, kiosk.id, kiosk.token);
    const gone = closed(client);
    const answer = await api(t, "DELETE", "/api/devices/kiosk");
    expect(answer).toMatchObject({ status: 200, body: { id: "kiosk", revoked: true, revokedAt: expect.any(String) } });
    await gone;
    await waitFor(
      async () =>
        (await presence("kiosk")).some(
          (r) => r.event === "disconnect" && r.reason === "revoked" && r.transport === "ws",
        ),
      "the revoked disconnect",
    );
    await waitFor(async () => (await device("kiosk")).online === false, "offline");
    expect((await api(t, "POST", "/api/devices/kiosk/rotate")).status).toBe(409);
    // Idempotent, and the id is never handed out again.
    expect((await api(t, "POST", "/api/devices/kiosk/revoke")).status).toBe(200);
    expect((await api(t, "POST", "/api/devices", { id: "kiosk" })).status).toBe(409);
  });

  it("records clean disconnects, keepalive timeouts, take-overs and last wills", async () => {
    const app = await provision(t, { id: "app" });
    const clean = await connectDevice(t.mqttUrl, app.id, app.token);
    await clean.endAsync();

    // Keepalive 1 s, then silence: the broker gives up after 1.5 keepalives.
    const port = Number(new URL(t.mqttUrl).port);
    const socket = tcpConnect(port, "127.0.0.1");
    socket.on("error", () => undefined);
    socket.resume(); // read the CONNACK, or 'close' never comes
    socket.write(
      mqttPacket.generate({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId: "app:silent",
        clean: true,
        keepalive: 1,
        username: app.id,
        password: Buffer.from(app.token),
      }),
    );
    await new Promise((resolve) => socket.once("close", resolve));

    const one = await connectDevice(t.mqttUrl, app.id, app.token, { clientId: "app:x" });
    const tookOver = closed(one);
    const two = await connectDevice(t.mqttUrl, app.id, app.token, { clientId: "app:x" });
    await tookOver;
    await two.endAsync();

    const mortal = await connectDevice(t.mqttUrl, app.id, app.token, {
      clientId: "app:will",
      will: { topic: "devices/app/events", payload: Buffer.from('{"name":"went_offline"}'), qos: 1, retain: false },
    });
    mortal.stream.destroy(); // the link dies without DISCONNECT

    // InfluxDB 1.x makes a point's fields visible one at a time, so wait for the whole picture.
    await waitFor(async () => {
      const rows = await presence("app");
      const byClient = (client: string) =>
        rows.filter((r) => r.client === client && r.event === "disconnect").map((r) => r.reason);
      expect(byClient("app")).toEqual(["clean"]);
      expect(byClient("app:silent")).toEqual(["keepalive_timeout"]);
      expect(byClient("app:x")).toEqual(["taken_over", "clean"]);
      expect(byClient("app:will")).toEqual(["connection_lost"]);
      expect(rows.filter((r) => r.event === "will").map((r) => [r.client, r.topic])).toEqual([
        ["app:will", "devices/app/events"],
      ]);
      return true;
    }, "the presence events");
    // The will went through ingest like any event of the device.
    await waitFor(
      async () =>
        (await influxQuery(t.db, influxql`SELECT * FROM events WHERE device = 'app' AND event = 'went_offline'`))
          .length === 1,
      "the will as an event",
    );
  });

  it("refeed devices add, list, rotate and revoke", async () => {
    // The real binary, with the admin token from the environment as an operator would set it.
    const child = runCli(["devices", "add", "--id", "atm-9", "--kind", "atm", "--subject", "cust-1", "--url", t.http], {
      REFEED_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    expect(await child.exited).toBe(0);
    const added = { stdout: child.stdout.join("\n"), stderr: child.stderr.join("\n") };
    const token = /^token: (rfd\.\S+)$/m.exec(added.stdout)?.[1];
    expect(added.stdout).toMatch(/^id: atm-9$/m);
    expect(added.stderr).toMatch(/shown once/);
    const client = await connectDevice(t.mqttUrl, "atm-9", token!);

    const listed = await cli(t, ["list"]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^ID\s+KIND\s+SUBJECT\s+STATE\s+LAST SEEN$/m);
    expect(listed.stdout).toMatch(/^atm-9\s+atm\s+cust-1\s+online\s+\d{4}-\d\d-\d\dT/m);
    expect(listed.stdout).toMatch(/^kiosk\s+-\s+-\s+revoked/m);
    const json = JSON.parse((await cli(t, ["list", "--json"])).stdout) as Array<{ id: string }>;
    expect(json.map((d) => d.id)).toContain("atm-9");

    const gone = closed(client);
    const rotated = await cli(t, ["rotate", "atm-9"]);
    expect(rotated.code).toBe(0);
    await gone;
    const fresh = /^token: (rfd\.\S+)$/m.exec(rotated.stdout)?.[1];
    expect(fresh).toBeDefined();
    expect(fresh).not.toBe(token);
    (await connectDevice(t.mqttUrl, "atm-9", fresh!)).end(true);

    const revoked = await cli(t, ["revoke", "atm-9"]);
    expect(revoked).toMatchObject({ code: 0, stdout: "revoked atm-9" });
  });

  it("refeed devices explains what is wrong", async () => {
    expect(await cli(t, ["rotate", "ghost"])).toMatchObject({
      code: 1,
      stderr: "refeed devices: no device 'ghost' (HTTP 404)",
    });
    expect(await cli(t, ["list"], { REFEED_ADMIN_TOKEN: "not-the-admin-token" })).toMatchObject({
      code: 1,
      stderr: expect.stringContaining("unknown or invalid token (HTTP 401)"),
    });
    expect(await cli(t, ["add", "--id", "has space"])).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/^refeed devices: id: 1-64 characters/),
    });
    expect(await cli(t, ["rotate"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("'rotate' takes one device id"),
    });
    expect(await cli(t, ["list", "--colour"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("Unknown option '--colour'"),
    });
    expect(await cli(t, ["list"], {})).toMatchObject({
      code: 2,
      stderr: "refeed devices: an admin token is needed: pass --token or set REFEED_ADMIN_TOKEN",
    });
    let stderr = "";
    const down = await devices(
      ["list", "--url", "http://127.0.0.1:9", "--token", "x"],
      {},
      { out: () => undefined, err: (s) => (stderr += s) },
    );
    expect(down).toBe(1);
    expect(stderr).toMatch(/^refeed devices: cannot reach Refeed at http:\/\/127\.0\.0\.1:9 \(/);
  });

  it("keeps tokens, revocations and last-seen across a restart; sessions open at shutdown are recorded", async () => {
    const door = await provision(t, { id: "door" });
    const rotated = (await api(t, "POST", "/api/devices/door/rotate")).body.token as string;
    const live = await connectDevice(t.mqttUrl, door.id, rotated);
    const before = await waitFor(async () => {
      const d = await device("door");
      return d.online === true && d;
    }, "door online");
    await t.restart();
    expect(live.connected).toBe(false);
    // Written before the restart completed: shutdown flushes presence events.
    const shutdown = await presence("door");
    expect(shutdown.at(-1)).toMatchObject({ event: "disconnect", reason: "server_shutdown", client: "door" });
    const after = await device("door");
    expect(after).toMatchObject({ online: false, connections: 0, revoked: false, rotatedAt: expect.any(String) });
    expect(Date.parse(after.lastSeen as string)).toBeGreaterThanOrEqual(Date.parse(before.lastSeen as string));
    expect(after.lastSeen).toBe(new Date(shutdown.at(-1)!.time).toISOString());
    live.end(true);
    await expect(connectDevice(t.mqttUrl, door.id, door.token)).rejects.toThrow(/Bad username or password/i);
    (await connectDevice(t.mqttUrl, door.id, rotated)).end(true);
    expect(await device("kiosk")).toMatchObject({ revoked: true, online: false });
    await expect(connectDevice(t.mqttUrl, "atm-9", "rfd.YXRtLTk.whatever")).rejects.toThrow(/Not authorized/i);
  });
});
