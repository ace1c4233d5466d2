import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, collect, connectDevice, provision } from "../support/platform.ts";
import { partitions, startTestCluster, type TestCluster } from "../support/cluster.ts";
import { optIn, publishEvents } from "../support/story.ts";
import { waitFor } from "../support/wait.ts";

const SKIPS = `id: skips-everywhere
description: A customer who skips three times, on any of their devices, gets shorter previews
on: event:skip
scope: subject
cooldown: 1h
aggregates:
  skips: { fn: count, of: "event:skip", window: 10m }
when: agg.skips >= 3
then:
  - set: ui.preview
    value: short
`;

interface Action {
  id: string;
  rule: string;
}

describe("cluster: rule windows live in partitions, one owner each", () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startTestCluster(3);
  });
  afterAll(() => cluster?.close());

  it("shares the 32 partitions evenly among the three nodes", async () => {
    const shares = await waitFor(async () => {
      const owners = (await partitions(cluster.node(2))).map((p) => p.owner);
      if (owners.some((o) => o === null)) return false;
      const counts = ["node-1", "node-2", "node-3"].map((n) => owners.filter((o) => o === n).length);
      return counts.every((c) => c >= 10 && c <= 11) && counts;
    }, "an even share of partitions");
    expect(shares.reduce((a, b) => a + b, 0)).toBe(32);
    // Every node tells the same story.
    expect(await partitions(cluster.node(3))).toEqual(await partitions(cluster.node(1)));
  });

  it("counts a customer's events from devices on three nodes in one window: one action, on every touchpoint", async () => {
    const rule = await api(cluster.node(1), "POST", "/api/rules", SKIPS);
    expect(rule.status).toBe(201);
    await optIn(cluster.node(2), "cust-p1");
    const phone = await provision(cluster.node(1), { id: "phone-p1", kind: "app", subject: "cust-p1" });
    const tv = await provision(cluster.node(2), { id: "tv-p1", kind: "tv", subject: "cust-p1" });
    const onPhone = await connectDevice(cluster.node(1).mqttUrl, phone.id, phone.token);
    const onTv = await connectDevice(cluster.node(2).mqttUrl, tv.id, tv.token);
    const phoneSeen = collect(onPhone);
    const tvSeen = collect(onTv);
    await onPhone.subscribeAsync(`devices/${phone.id}/actions`, { qos: 1 });
    await onTv.subscribeAsync(`devices/${tv.id}/actions`, { qos: 1 });

    // Two skips, on two nodes: not yet three.
    await publishEvents(onPhone, phone.id, [{ name: "skip", subject: "cust-p1" }]);
    await publishEvents(onTv, tv.id, [{ name: "skip", subject: "cust-p1" }]);
    await cluster.rulesCaughtUp();
    expect((await api(cluster.node(3), "GET", "/api/subjects/cust-p1/actions")).body).toEqual([]);

    // The third, through node 3's HTTP ingest.
    const third = await fetch(`${cluster.node(3).http}/api/ingest/events`, {
      method: "POST",
      headers: { authorization: `Bearer ${phone.token}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "skip", subject: "cust-p1" }),
    });
    expect(third.status).toBe(200);
    const sent = JSON.parse(
      (await waitFor(() => phoneSeen.get(`devices/${phone.id}/actions`), "the action on the phone"))[0]!,
    ) as Action;
    expect(sent.rule).toBe("skips-everywhere");
    const onTvToo = JSON.parse(
      (await waitFor(() => tvSeen.get(`devices/${tv.id}/actions`), "the action on the TV"))[0]!,
    ) as Action;
    expect(onTvToo.id).toBe(sent.id);

    // A fourth skip is within the cooldown: still exactly one action, as every node says.
    await publishEvents(onTv, tv.id, [{ name: "skip", subject: "cust-p1" }]);
    await cluster.rulesCaughtUp();
    for (const t of cluster.nodes) {
      const listed = (await api(t, "GET", "/api/subjects/cust-p1/actions")).body as unknown as Action[];
      expect(listed.map((a) => a.id)).toEqual([sent.id]);
    }
    for (const t of cluster.nodes)
      expect((await api(t, "GET", "/api/subjects/cust-p1/profile")).body.profile).toEqual({ "ui.preview": "short" });
    await Promise.all([onPhone.endAsync(), onTv.endAsync()]);
  });

  it("a node that leaves hands its partitions to the others at once", async () => {
    const leaving = cluster.nodes.pop()!;
    await leaving.close();
    const owners = await waitFor(async () => {
      const now = (await partitions(cluster.node(1))).map((p) => p.owner);
      return now.every((o) => o === "node-1" || o === "node-2") && now;
    }, "the partitions of node 3 taken by nodes 1 and 2");
    expect(owners.filter((o) => o === "node-1")).toHaveLength(16);
  });
});
