import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ident, influxql } from "../../store/influxql.ts";
import { startTestCluster, type TestCluster } from "../support/cluster.ts";
import { influxQuery } from "../support/influx.ts";
import { api, connectDevice, ingestCaughtUp, provision } from "../support/platform.ts";
import { optIn } from "../support/story.ts";

/**
 * An erasure made through one node must wait for what the other nodes have
 * acknowledged about the customer but not yet written: each node writes its
 * ingest out and confirms on the feed before anything is deleted, and an
 * erasure that cannot hear from a live node refuses to report done.
 */
describe("cluster: an erasure waits for every live node's part", () => {
  let cluster: TestCluster;
  let redis: Redis;
  beforeAll(async () => {
    cluster = await startTestCluster(2);
    redis = new Redis(cluster.redis.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await cluster?.close();
  });

  it("includes what another node acknowledged a moment before", async () => {
    const [n1, n2] = [cluster.node(1), cluster.node(2)];
    await optIn(n1, "cust-late");
    const phone = await provision(n1, { id: "phone-late", subject: "cust-late" });
    const client = await connectDevice(n1.mqttUrl, phone.id, phone.token);
    // Acknowledged by node 1 (durable in its commit log), not yet in InfluxDB when node 2 erases.
    await client.publishAsync(
      `devices/${phone.id}/telemetry`,
      JSON.stringify({ subject: "cust-late", metrics: { steps: 12 } }),
      { qos: 1 },
    );
    const erased = await api(n2, "DELETE", "/api/subjects/cust-late");
    expect(erased.status, JSON.stringify(erased.body)).toBe(200);
    await client.endAsync();
    await ingestCaughtUp(n1);
    expect(
      await influxQuery(n1.db, influxql`SELECT * FROM ${ident("telemetry")} WHERE "subject" = 'cust-late'`),
    ).toEqual([]);
  });

  it("refuses to report done while a live node has not confirmed, and names it", async () => {
    await optIn(cluster.node(1), "cust-wait");
    // A node that beats but never answers (hung): alive in the feed's membership, silent on it.
    await redis.zadd("refeed:changes:nodes", Date.now() + 60_000, "node-hung");
    try {
      const refused = await api(cluster.node(1), "DELETE", "/api/subjects/cust-wait");
      expect(refused.status).toBe(503);
      expect(refused.body).toMatchObject({ error: "erasure_incomplete" });
      expect(refused.body.message).toMatch(/node-hung/);
    } finally {
      await redis.zrem("refeed:changes:nodes", "node-hung");
    }
    // Nothing of them is used meanwhile; once the cluster is whole again the erasure finishes.
    expect((await api(cluster.node(2), "DELETE", "/api/subjects/cust-wait")).status).toBe(200);
  });
});
