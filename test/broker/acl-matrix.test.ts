import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxQuery } from "../support/influx.ts";
import {
  api,
  collect,
  connectDevice,
  logLine,
  provision,
  startTestPlatform,
  type TestPlatform,
} from "../support/platform.ts";
import { run } from "../support/process.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

// The value follows the reading: a set that changes nothing is not sent, and each round below needs an action.
const rule =
  'id: hot\non: telemetry\nwhen: has(msg.metrics.temp) && msg.metrics.temp > 30\nthen:\n  - set: ui.theme\n    expr: "msg.metrics.temp"\n';

/** Resolves when the broker closes the connection (MQTT 3.1.1's only answer to a refused publish). */
const closed = (client: MqttClient) =>
  new Promise<void>((resolve) => (client.disconnected ? resolve() : client.once("close", () => resolve())));

/** SUBACK return codes for one filter, whether mqtt.js resolves or rejects. */
async function granted(client: MqttClient, topic: string): Promise<number[]> {
  const result = await client.subscribeAsync(topic, { qos: 1 }).then(
    (grants) => grants.map((g) => g.qos),
    (err: { packet?: { granted?: number[] } }) => err.packet?.granted ?? [-1],
  );
  return result;
}

/**
 * Device A against device B, from real clients: mqtt.js over TCP and
 * WebSocket, and Debian's mosquitto_pub / mosquitto_sub.
 */
describe("ACL matrix: device A cannot reach device B", () => {
  let t: TestPlatform;
  let port: string;
  let a: { id: string; token: string };
  let b: { id: string; token: string };
  let bClient: MqttClient;
  let bSeen: Map<string, string[]>;

  beforeAll(async () => {
    t = await startTestPlatform({}, { logs: true });
    await writeFile(path.join(t.rulesDir, "hot.yaml"), rule);
    // Start again so the rule file is read at start, as an operator would have it.
    await t.restart();
    port = new URL(t.mqttUrl).port;
    a = await provision(t, { id: "dev-a" });
    b = await provision(t, { id: "dev-b" });
    bClient = await connectDevice(t.mqttUrl, b.id, b.token);
    bSeen = collect(bClient);
    await bClient.subscribeAsync([`devices/${b.id}/actions`, `devices/${b.id}/state`], { qos: 1 });
  });
  afterAll(async () => {
    await bClient?.endAsync(true);
    await t?.close();
  });

  const mosquitto = (
    tool: "mosquitto_pub" | "mosquitto_sub",
    clientId: string,
    user: string,
    token: string,
    args: string[],
  ) => run(tool, ["-p", port, "-i", clientId, "-u", user, "-P", token, "-q", "1", ...args]);

  it("mqtt.js: publishing into B's topics closes A's connection and stores nothing for B", async () => {
    for (const channel of ["telemetry", "events", "feedback", "acks"]) {
      const client = await connectDevice(t.mqttUrl, a.id, a.token);
      const gone = closed(client);
      client.publish(`devices/${b.id}/${channel}`, JSON.stringify({ metrics: { temp: 99 } }), { qos: 1 });
      await gone;
      client.end(true);
    }
    const line = await logLine(
      t,
      (l) => l.msg === "publish refused" && l.device === a.id && l.topic === `devices/${b.id}/acks`,
      "the refusal in the log",
    );
    expect(line).toMatchObject({ reason: "acl_denied", clientId: a.id });
    expect(await influxQuery(t.db, influxql`SELECT * FROM telemetry WHERE device = ${b.id}`)).toEqual([]);
    expect(bClient.connected).toBe(true);
  });

  it("mosquitto_pub: publishing into B's topics loses the connection and stores nothing for B", async () => {
    const pub = await mosquitto("mosquitto_pub", a.id, a.id, a.token, [
      "-t",
      `devices/${b.id}/telemetry`,
      "-m",
      '{"metrics":{"temp":99}}',
    ]);
    expect(pub.code).not.toBe(0);
    expect(pub.stderr).toMatch(/connection was lost/i);
    // Publishing into the platform's own topics or $SYS is refused the same way.
    for (const topic of [`devices/${a.id}/state`, `devices/${a.id}/actions`, "$SYS/broker/clients"]) {
      const stray = await mosquitto("mosquitto_pub", a.id, a.id, a.token, ["-t", topic, "-m", "{}"]);
      expect([topic, stray.stderr]).toEqual([topic, expect.stringMatching(/connection was lost/i)]);
    }
    expect(await influxQuery(t.db, influxql`SELECT * FROM telemetry WHERE device = ${b.id}`)).toEqual([]);
  });

  it("mqtt.js over TCP and WebSocket: subscriptions to B's actions and state, devices/#, # and $SYS are refused, and nothing of B arrives", async () => {
    for (const [round, url] of [t.mqttUrl, t.wsUrl].entries()) {
      const temp = 31 + round;
      const client = await connectDevice(url, a.id, a.token);
      const seen = collect(client);
      for (const topic of [
        `devices/${b.id}/actions`,
        `devices/${b.id}/state`,
        "devices/#",
        "#",
        "devices/+/actions",
        "+/+/state",
        "$SYS/#",
      ]) {
        expect([topic, await granted(client, topic)]).toEqual([topic, [128]]);
      }
      // A's own subscription works, and serves as the barrier: B's action goes out first.
      expect(await granted(client, `devices/${a.id}/actions`)).toEqual([1]);
      await bClient.publishAsync(`devices/${b.id}/telemetry`, JSON.stringify({ metrics: { temp } }), { qos: 1 });
      await waitFor(() => (bSeen.get(`devices/${b.id}/actions`)?.length ?? 0) > round, "B's own action");
      const own = await connectDevice(t.mqttUrl, `${a.id}`, a.token, { clientId: `${a.id}:pub` });
      await own.publishAsync(`devices/${a.id}/telemetry`, JSON.stringify({ metrics: { temp } }), { qos: 1 });
      await own.endAsync();
      await waitFor(() => seen.get(`devices/${a.id}/actions`), "A's own action");
      expect([...seen.keys()]).toEqual([`devices/${a.id}/actions`]);
      await client.endAsync();
    }
  });

  it("mosquitto_sub: subscriptions to B's actions and state, devices/# and # are all denied", async () => {
    for (const topic of [`devices/${b.id}/actions`, `devices/${b.id}/state`, "devices/#", "#"]) {
      const sub = await mosquitto("mosquitto_sub", a.id, a.id, a.token, ["-t", topic, "-W", "5"]);
      expect([topic, sub.stderr]).toEqual([topic, "All subscription requests were denied.\n"]);
    }
  });

  it("A cannot connect with B's client id, in any form, and B's session is untouched", async () => {
    for (const clientId of [b.id, `${b.id}:x`, `${a.id}x`]) {
      await expect(connectDevice(t.mqttUrl, a.id, a.token, { clientId })).rejects.toThrow(/Identifier rejected/i);
    }
    const sub = await mosquitto("mosquitto_sub", b.id, a.id, a.token, ["-t", `devices/${a.id}/actions`, "-W", "5"]);
    expect(sub.stderr).toMatch(/Connection Refused: identifier rejected/);
    // Even with B's own token A's username decides the identity: wrong pairings are refused.
    await expect(connectDevice(t.mqttUrl, a.id, b.token)).rejects.toThrow(/Bad username or password/i);
    expect(bClient.connected).toBe(true);
    await logLine(
      t,
      (l) =>
        l.msg === "connection refused" && l.reason === "client_id_mismatch" && l.clientId === b.id && l.device === a.id,
      "the client id refusal",
    );
  });

  it("a rotated token is refused at once and the new one works; a revoked token is refused", async () => {
    const c = await provision(t, { id: "dev-c" });
    const rotated = await api(t, "POST", `/api/devices/${c.id}/rotate`);
    expect(rotated.status).toBe(200);
    const fresh = rotated.body.token as string;
    expect(fresh).not.toBe(c.token);
    await expect(connectDevice(t.mqttUrl, c.id, c.token)).rejects.toThrow(/Bad username or password/i);
    const old = await mosquitto("mosquitto_pub", c.id, c.id, c.token, ["-t", `devices/${c.id}/telemetry`, "-m", "{}"]);
    expect(old.stderr).toMatch(/bad user name or password/i);
    const ok = await mosquitto("mosquitto_pub", c.id, c.id, fresh, [
      "-t",
      `devices/${c.id}/telemetry`,
      "-m",
      '{"metrics":{"x":1}}',
    ]);
    expect(ok).toMatchObject({ code: 0, stderr: "" });

    expect((await api(t, "POST", `/api/devices/${c.id}/revoke`)).status).toBe(200);
    await expect(connectDevice(t.mqttUrl, c.id, fresh)).rejects.toThrow(/Not authorized/i);
    const revoked = await mosquitto("mosquitto_pub", c.id, c.id, fresh, [
      "-t",
      `devices/${c.id}/telemetry`,
      "-m",
      "{}",
    ]);
    expect(revoked.stderr).toMatch(/not authorised/i);
  });
});
