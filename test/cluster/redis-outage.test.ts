import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxql } from "../../store/influxql.ts";
import { startTestCluster, type TestCluster } from "../support/cluster.ts";
import { influxQuery } from "../support/influx.ts";
import { api, provision, type TestPlatform } from "../support/platform.ts";
import { optIn } from "../support/story.ts";
import { waitFor } from "../support/wait.ts";

const OUTAGE_MS = 30_000;

// Every fifth record of the customer's, from either device, is an action whose value names the record.
const EVERY_FIFTH = `id: every-fifth-of-customer
on: telemetry
scope: subject
when: int(msg.metrics.seq) % 5 == 0
then:
  - set: alert.last
    expr: int(msg.metrics.seq) * 10 + int(msg.metrics.dev)
`;

interface Listed {
  rule: string;
  value: unknown;
}

describe("cluster: Redis stopped for 30 s under load, then started again", () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    // Two busy devices: their publish rate limit is above what the test sends.
    cluster = await startTestCluster(2, {}, { limits: { publishRate: 5000, publishBurst: 5000 } });
  });
  afterAll(() => cluster?.close());

  it("acknowledges only what is durable meanwhile, loses nothing, and every view converges", async () => {
    const [n1, n2] = cluster.nodes as [TestPlatform, TestPlatform];
    expect((await api(n1, "POST", "/api/rules", EVERY_FIFTH)).status).toBe(201);
    await optIn(n2, "cust-r");
    const devices = [await provision(n1, { id: "meter-r1" }), await provision(n2, { id: "meter-r2" })];
    const clients: MqttClient[] = [];
    const acked: number[][] = [[], []];
    let stop = false;
    const loads = devices.map(async (d, i) => {
      const client = await mqtt.connectAsync([n1, n2][i]!.mqttUrl, {
        clientId: d.id,
        username: d.id,
        password: d.token,
        reconnectPeriod: 0,
      });
      clients.push(client);
      for (let seq = 1; !stop; seq++) {
        await client.publishAsync(
          `devices/${d.id}/telemetry`,
          JSON.stringify({ subject: "cust-r", metrics: { seq, dev: i + 1 } }),
          { qos: 1 },
        );
        acked[i]!.push(seq);
      }
    });
    const total = () => acked[0]!.length + acked[1]!.length;
    await waitFor(() => total() >= 200, "load under way");

    await cluster.redis.stop();
    const stoppedAt = Date.now();
    // Both nodes say so, and name Redis.
    for (const t of cluster.nodes)
      await waitFor(async () => {
        const res = await api(t, "GET", "/healthz", undefined, null);
        return res.status === 503 && res.body.redis === "unreachable" && res.body.status === "degraded";
      }, "healthz degraded, naming redis");
    // Devices keep being served: their records are acknowledged once durable on the node's disk.
    const before = total();
    await waitFor(() => total() >= before + 200, "PUBACKs while Redis is away", 20_000);
    // Changes made meanwhile, through either node.
    const late = await provision(n1, { id: "meter-late" });
    expect((await api(n2, "PUT", "/api/subjects/cust-late/consent", { analytics: true })).status).toBeLessThan(300);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, stoppedAt + OUTAGE_MS - Date.now())));
    await cluster.redis.start();

    for (const t of cluster.nodes)
      await waitFor(
        async () => (await api(t, "GET", "/healthz", undefined, null)).status === 200,
        "healthz ok again",
        20_000,
      );
    stop = true;
    await Promise.all(loads);
    await cluster.rulesCaughtUp(30_000);

    // Nothing acknowledged is lost, and nothing is stored twice.
    for (const [i, d] of devices.entries()) {
      const rows = await waitFor(
        async () => {
          const found = await influxQuery(
            cluster.node(1).db,
            influxql`SELECT seq FROM telemetry WHERE device = ${d.id}`,
          );
          return found.length >= acked[i]!.length && found;
        },
        `every acknowledged record of ${d.id} in InfluxDB`,
        20_000,
      );
      expect(rows.map((r) => Number(r.seq)).sort((a, b) => a - b)).toEqual(acked[i]);
    }
    // Every trigger has its one action, on both nodes alike.
    const triggers = acked.flatMap((seqs, i) => seqs.filter((s) => s % 5 === 0).map((s) => s * 10 + i + 1));
    const listed = async (t: TestPlatform) =>
      ((await api(t, "GET", "/api/subjects/cust-r/actions")).body as unknown as Listed[])
        .filter((a) => a.rule === "every-fifth-of-customer")
        .map((a) => Number(a.value))
        .sort((a, b) => a - b);
    const values = await waitFor(
      async () => {
        const got = await listed(n1);
        return got.length >= triggers.length && got;
      },
      "an action for every trigger",
      60_000,
    );
    expect(values).toEqual([...triggers].sort((a, b) => a - b));
    await waitFor(
      async () => JSON.stringify(await listed(n2)) === JSON.stringify(values),
      "node 2's action log equal",
      60_000,
    );
    // The changes made during the outage reached the other node.
    expect((await api(n2, "GET", `/api/devices/${late.id}`)).status).toBe(200);
    expect((await api(n1, "GET", "/api/subjects/cust-late/consent")).body).toMatchObject({
      consent: { analytics: true },
    });
    // The registry is the same on both (each node's own presence fields aside).
    const registry = async (t: TestPlatform) =>
      ((await api(t, "GET", "/api/devices")).body as unknown as Array<{ id: string; revoked: boolean }>).map(
        ({ id, revoked }) => ({ id, revoked }),
      );
    expect(await registry(n2)).toEqual(await registry(n1));
    await Promise.all(clients.map((c) => c.endAsync()));
  }, 150_000);
});
