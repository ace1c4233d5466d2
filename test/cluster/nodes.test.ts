import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStream } from "../support/sse.ts";
import { optIn, publishEvents } from "../support/story.ts";
import { influxQuery } from "../support/influx.ts";
import { ident, influxql } from "../../store/influxql.ts";
import { startTestCluster, type TestCluster } from "../support/cluster.ts";
import { api, connectDevice, provision, type TestPlatform } from "../support/platform.ts";
import { polling, waitFor } from "../support/wait.ts";

/** Three nodes on one InfluxDB database and one Redis, each with its own data dir and ports. */
describe("cluster: three nodes on one Redis behave as one platform", () => {
  let cluster: TestCluster;
  let nodes: TestPlatform[] = [];
  const node = (n: 1 | 2 | 3) => nodes[n - 1]!;
  beforeAll(async () => {
    cluster = await startTestCluster(3, {}, { logs: true });
    nodes = cluster.nodes;
  });
  afterAll(() => cluster?.close());

  it("says on /healthz that it reaches Redis", async () => {
    for (const t of nodes)
      expect(await api(t, "GET", "/healthz", undefined, null)).toMatchObject({
        status: 200,
        body: { status: "ok", influx: "reachable", redis: "reachable" },
      });
  });

  it("a device provisioned through node 2 connects to node 1 at once; revoked through node 3, it is cut off and refused everywhere", async () => {
    const tv = await provision(node(2), { id: "tv-c1", kind: "tv" });
    // No waiting: the provisioning answer came after every other node applied it.
    const client: MqttClient = await connectDevice(node(1).mqttUrl, tv.id, tv.token);
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    expect((await api(node(3), "DELETE", `/api/devices/${tv.id}`)).status).toBe(200);
    await closed;
    for (const t of nodes)
      await expect(connectDevice(t.mqttUrl, tv.id, tv.token)).rejects.toThrow(
        /Not authorized|Bad username or password/,
      );
    for (const t of nodes)
      expect((await api(t, "GET", `/api/devices/${tv.id}`)).body).toMatchObject({ id: tv.id, revoked: true });
  });

  it("a token rotated through node 3 ends the session on node 1; the new token works on node 2, the old one nowhere", async () => {
    const tv = await provision(node(1), { id: "tv-c2", kind: "tv" });
    const client = await connectDevice(node(1).mqttUrl, tv.id, tv.token);
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    const rotated = await api(node(3), "POST", `/api/devices/${tv.id}/rotate`);
    expect(rotated.status).toBe(200);
    await closed;
    const again = await connectDevice(node(2).mqttUrl, tv.id, rotated.body.token as string);
    await again.endAsync();
    await expect(connectDevice(node(1).mqttUrl, tv.id, tv.token)).rejects.toThrow(/Bad username or password/);
  });

  it("an opt-out made through node 1 holds for the next message ingested by node 2", async () => {
    const atm = await provision(node(3), { id: "atm-c1", kind: "atm" });
    const ingest = (t: TestPlatform, n: number) =>
      fetch(`${t.http}/api/ingest/telemetry`, {
        method: "POST",
        headers: { authorization: `Bearer ${atm.token}`, "content-type": "application/json" },
        body: JSON.stringify({ subject: "cust-c1", metrics: { n } }),
      }).then(async (res) => [res.status, await res.json()] as const);
    expect((await api(node(1), "PUT", "/api/subjects/cust-c1/consent", { analytics: true })).status).toBe(200);
    expect(await ingest(node(2), 1)).toEqual([200, { accepted: 1, withheld: 0, refused: [] }]);
    expect((await api(node(1), "PUT", "/api/subjects/cust-c1/consent", { analytics: false })).status).toBe(200);
    expect(await ingest(node(2), 2)).toEqual([200, { accepted: 0, withheld: 1, refused: [] }]);
    expect(await ingest(node(3), 3)).toEqual([200, { accepted: 0, withheld: 1, refused: [] }]);
  });

  it("an API key made through node 1 is taken by nodes 2 and 3; revoked through node 2, refused by all", async () => {
    const made = await api(node(1), "POST", "/api/keys", { role: "product", name: "growth" });
    expect(made.status).toBe(201);
    const key = made.body.token as string;
    for (const t of nodes) expect((await api(t, "GET", "/api/rules", undefined, key)).status).toBe(200);
    expect((await api(node(2), "DELETE", `/api/keys/${String(made.body.id)}`)).status).toBe(200);
    for (const t of nodes) expect((await api(t, "GET", "/api/rules", undefined, key)).status).toBe(401);
  });

  it("the same client id connecting to node 2 while connected to node 1 takes the session over", async () => {
    const tv = await provision(node(1), { id: "tv-c3", kind: "tv" });
    const first = await connectDevice(node(1).mqttUrl, tv.id, tv.token);
    const closed = new Promise<void>((resolve) => first.once("close", () => resolve()));
    const second = await connectDevice(node(2).mqttUrl, tv.id, tv.token);
    await closed;
    expect(second.connected).toBe(true);
    await second.endAsync();
  });

  it("an action a rule on node 1 produces reaches the device's connection on node 2, which acknowledges it there", async () => {
    const rule = await api(node(3), "POST", "/api/rules", {
      id: "dim-when-hot",
      on: "telemetry",
      when: "msg.metrics.temp > 40",
      then: [{ set: "brightness", value: 30 }],
    });
    expect(rule.status, JSON.stringify(rule.body)).toBe(201);
    const tv = await provision(node(2), { id: "tv-c4", kind: "tv" });
    const client = await connectDevice(node(2).mqttUrl, tv.id, tv.token);
    const received: Array<{ id: string; set?: Record<string, unknown> }> = [];
    client.on("message", (_topic, payload) =>
      received.push(JSON.parse(payload.toString()) as (typeof received)[number]),
    );
    await client.subscribeAsync(`devices/${tv.id}/actions`, { qos: 1 });
    const res = await fetch(`${node(1).http}/api/ingest/telemetry`, {
      method: "POST",
      headers: { authorization: `Bearer ${tv.token}`, "content-type": "application/json" },
      body: JSON.stringify({ metrics: { temp: 45 } }),
    });
    expect(res.status).toBe(200);
    const action = await waitFor(() => received[0], "the action on node 2");
    await client.publishAsync(`devices/${tv.id}/acks`, JSON.stringify({ action: action.id, status: "applied" }), {
      qos: 1,
    });
    for (const t of nodes)
      await expect
        .poll(async () => (await api(t, "GET", `/api/actions/${action.id}`)).body.status, polling)
        .toBe("applied");
    await client.endAsync();
  });

  it("a live-stream ticket from node 1 opens one stream on node 2, and nothing more anywhere", async () => {
    const key = (await api(node(1), "POST", "/api/keys", { name: "desk", role: "support" })).body as { token: string };
    const ticket = (await api(node(1), "POST", "/api/live/tickets", undefined, key.token)).body.ticket as string;
    const stream = await openStream(`${node(2).http}/api/live/fleet?ticket=${ticket}`, null);
    expect(stream.status).toBe(200);
    expect((await openStream(`${node(3).http}/api/live/fleet?ticket=${ticket}`, null)).status).toBe(401);
    expect((await openStream(`${node(1).http}/api/live/fleet?ticket=${ticket}`, null)).status).toBe(401);
    stream.close();
  });

  it("the fleet health view is measured once for the cluster, by the jobs-lease holder, and every node answers with it", async () => {
    const kiosk = await provision(node(2), { id: "kiosk-fleet", kind: "kiosk" });
    const client = await connectDevice(node(3).mqttUrl, kiosk.id, kiosk.token);
    await client.publishAsync(`devices/${kiosk.id}/telemetry`, JSON.stringify({ metrics: { latency_ms: 4000 } }), {
      qos: 1,
    });
    for (const t of nodes)
      await waitFor(async () => {
        const own = (await api(t, "GET", `/api/devices/${kiosk.id}/health`)).body;
        const fleet = (await api(t, "GET", "/api/fleet/health?q=kiosk-fleet")).body.devices as Array<
          Record<string, unknown>
        >;
        const row = fleet.find((r) => r.device === kiosk.id);
        return (
          own.online === true &&
          row?.online === true &&
          row.score === own.score &&
          (row.components as Record<string, unknown>).performance ===
            (own.components as Record<string, { score: unknown }>).performance!.score
        );
      }, `node ${t.config.nodeId}'s fleet row to agree with the device's health`);
    await client.endAsync();
    // Whole-fleet measurements (at start, then every full refresh) come from one node only, as the leader.
    const measuredBy = nodes.filter((t) => t.logs.some((l) => l.msg === "fleet health measured"));
    expect(measuredBy.map((t) => t.config.nodeId)).toHaveLength(1);
    expect(measuredBy[0]!.logs.filter((l) => l.msg === "fleet health measured").map((l) => l.mode)).toEqual(
      expect.arrayContaining(["leading"]),
    );
  });

  it("an erasure through node 3 leaves nothing of the customer in any node's answers or in InfluxDB", async () => {
    const rule = `id: erasure-greeting
on: event:hello
scope: subject
then:
  - set: ui.greeting
    value: hi
`;
    expect((await api(node(1), "POST", "/api/rules", rule)).status).toBe(201);
    await optIn(node(1), "cust-gone");
    const phone = await provision(node(2), { id: "phone-gone", subject: "cust-gone" });
    const client = await connectDevice(node(1).mqttUrl, phone.id, phone.token);
    await publishEvents(client, phone.id, [{ name: "hello", subject: "cust-gone" }]);
    await cluster.rulesCaughtUp();
    for (const t of nodes)
      await waitFor(
        async () =>
          ((await api(t, "GET", "/api/subjects/cust-gone/actions")).body as unknown as unknown[]).length === 1,
        "the customer's action on every node",
      );
    await client.endAsync();

    const erased = await api(node(3), "DELETE", "/api/subjects/cust-gone");
    expect(erased.status).toBe(200);
    for (const t of nodes) {
      expect((await api(t, "GET", "/api/subjects/cust-gone/actions")).body).toEqual([]);
      expect((await api(t, "GET", "/api/subjects/cust-gone/profile")).body.profile).toEqual({});
      // No record means no, for every purpose.
      const consent = (await api(t, "GET", "/api/subjects/cust-gone/consent")).body.consent as Record<string, boolean>;
      expect(Object.values(consent).every((granted) => !granted)).toBe(true);
    }
    for (const measurement of ["events", "actions", "consent"])
      expect(
        await influxQuery(node(1).db, influxql`SELECT * FROM ${ident(measurement)} WHERE "subject" = 'cust-gone'`),
      ).toEqual([]);
  });
});
