import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionOf, RULE_PARTITIONS } from "../../rules/partitions.ts";
import { influxql } from "../../store/influxql.ts";
import { startCliCluster, type CliCluster, type CliNode } from "../support/cli-cluster.ts";
import type { PartitionView } from "../support/cluster.ts";
import { influxQuery } from "../support/influx.ts";
import { waitFor } from "../support/wait.ts";

const EVERY_FIFTH = `id: every-fifth
on: telemetry
scope: device
when: int(msg.metrics.seq) % 5 == 0
then:
  - set: alert.seq
    expr: msg.metrics.seq
`;

interface Sent {
  id: string;
  value: number;
}

describe("cluster: kill -9 of the node that owns a busy partition", () => {
  let cluster: CliCluster;
  const call = async (node: CliNode, method: string, url: string, body?: unknown) => {
    const res = await fetch(`${node.http}${url}`, {
      method,
      headers: {
        authorization: `Bearer ${cluster.adminToken}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as unknown };
  };
  const partitions = async (node: CliNode) =>
    (await call(node, "GET", "/api/rules/partitions")).body as PartitionView[];

  beforeAll(async () => {
    // One busy device: its publish rate limit is above what the test sends.
    cluster = await startCliCluster(
      3,
      { "every-fifth.yaml": EVERY_FIFTH },
      { REFEED_MQTT_PUBLISH_RATE: "5000", REFEED_MQTT_PUBLISH_BURST: "5000" },
    );
  }, 90_000);
  afterAll(() => cluster?.close());

  it("stores every acknowledged record once, moves the partition within 15 s, and gives every trigger exactly one action", async () => {
    const [n1, n2, n3] = cluster.nodes as [CliNode, CliNode, CliNode];
    // Settled: every node owns its share.
    const owners = await waitFor(
      async () => {
        const now = (await partitions(n1)).map((p) => p.owner);
        const counts = [n1, n2, n3].map((n) => now.filter((o) => o === n.id).length);
        return counts.every((c) => c >= 10) && now;
      },
      "an even share of partitions",
      20_000,
    );
    // A device whose partition node 1 owns, connected to node 2.
    let device = "";
    for (let i = 0; !device; i++)
      if (owners[partitionOf(`meter-${i}`, RULE_PARTITIONS)] === n1.id) device = `meter-${i}`;
    const part = partitionOf(device, RULE_PARTITIONS);
    const created = await call(n3, "POST", "/api/devices", { id: device, kind: "meter" });
    expect(created.status).toBe(201);
    const { token } = created.body as { token: string };
    const client = await mqtt.connectAsync(n2.mqttUrl, {
      clientId: device,
      username: device,
      password: token,
      reconnectPeriod: 0,
    });
    const delivered: Sent[] = [];
    client.on("message", (_topic, payload) => {
      const action = JSON.parse(payload.toString()) as { id: string; value: number };
      delivered.push({ id: action.id, value: action.value });
    });
    await client.subscribeAsync(`devices/${device}/actions`, { qos: 1 });

    // QoS 1 load, one publish after another's PUBACK; node 1 dies in the middle of it.
    const acked: number[] = [];
    let stop = false;
    const load = (async () => {
      for (let seq = 1; !stop; seq++) {
        await client.publishAsync(`devices/${device}/telemetry`, JSON.stringify({ metrics: { seq } }), { qos: 1 });
        acked.push(seq);
      }
    })();
    await waitFor(() => acked.length >= 200 && delivered.length > 0, "load under way, actions flowing", 20_000);
    const killedAt = Date.now();
    n1.run.child.kill("SIGKILL");
    await n1.run.exited;
    const newOwner = await waitFor(
      async () => {
        const owner = (await partitions(n2))[part]!.owner;
        return owner !== null && owner !== n1.id && owner;
      },
      "another node owning the partition",
      20_000,
    );
    const takeover = Date.now() - killedAt;
    expect(takeover).toBeLessThan(15_000);
    expect([n2.id, n3.id]).toContain(newOwner);
    // Load goes on for a while under the new owner.
    const atTakeover = acked.length;
    await waitFor(() => acked.length >= atTakeover + 200, "load under the new owner", 20_000);
    stop = true;
    await load;

    // Nothing routed is left unevaluated, and every trigger's action reached the device.
    await waitFor(
      async () => (await partitions(n2)).every((p) => p.owner !== null && p.pending === 0 && p.lag === 0),
      "every partition owned and caught up",
      20_000,
    );
    const triggers = acked.filter((seq) => seq % 5 === 0);
    await waitFor(
      () => triggers.every((seq) => delivered.some((d) => d.value === seq)),
      "an action for every trigger",
      20_000,
    );
    const idsBySeq = new Map<number, Set<string>>();
    const seqsById = new Map<string, Set<number>>();
    for (const d of delivered) {
      idsBySeq.set(d.value, (idsBySeq.get(d.value) ?? new Set()).add(d.id));
      seqsById.set(d.id, (seqsById.get(d.id) ?? new Set()).add(d.value));
    }
    expect([...seqsById.values()].filter((s) => s.size > 1)).toEqual([]);
    expect([...idsBySeq].filter(([, ids]) => ids.size > 1)).toEqual([]);
    expect([...idsBySeq.keys()].sort((a, b) => a - b)).toEqual(triggers);

    // Every acknowledged record is stored, once.
    const stored = await waitFor(
      async () => {
        const rows = await influxQuery(cluster.db, influxql`SELECT seq FROM telemetry WHERE device = ${device}`);
        return rows.length >= acked.length && rows;
      },
      "every acknowledged record in InfluxDB",
      20_000,
    );
    expect(stored.map((r) => r.seq).sort((a, b) => Number(a) - Number(b))).toEqual(acked);
    await client.endAsync();
    console.info(
      `partition ${part} taken over ${takeover} ms after kill -9; ${acked.length} records, ${triggers.length} actions`,
    );
  }, 120_000);
});
