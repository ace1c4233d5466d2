import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, collect, connectDevice, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { ack } from "../support/story.ts";
import { waitFor } from "../support/wait.ts";

/** What a product team reads of a rule's effect: GET /api/rules/{id}/report, from the stored action log. */
describe("rule report", () => {
  let t: TestPlatform;
  let client: MqttClient;
  let device: { id: string; token: string };
  beforeAll(async () => {
    t = await startTestPlatform();
    device = await provision(t, { id: "tv-r" });
    client = await connectDevice(t.mqttUrl, device.id, device.token);
    await client.subscribeAsync(`devices/${device.id}/actions`, { qos: 1 });
  });
  afterAll(async () => {
    await client?.endAsync();
    await t?.close();
  });

  it("counts each version's actions through the funnel, and refuses a bad since", async () => {
    const seen = collect(client);
    const pushed = await api(t, "POST", "/api/rules", {
      id: "mode",
      on: "event:pick",
      when: "has(msg.props.mode)",
      then: [{ set: "ui.mode", expr: "msg.props.mode" }],
    });
    expect(pushed.status).toBe(201);
    const actions = () => (seen.get(`devices/${device.id}/actions`) ?? []).map((a) => JSON.parse(a) as { id: string });
    for (const [i, mode] of ["dark", "light", "sepia"].entries()) {
      await client.publishAsync(`devices/${device.id}/events`, JSON.stringify({ name: "pick", props: { mode } }), {
        qos: 1,
      });
      const action = await waitFor(() => actions()[i], `action ${i + 1}`);
      await ack(client, device.id, action.id, "applied");
    }
    type Report = { rule: string; versions: Array<{ funnel: Record<string, number> }> };
    const report = async () => (await api(t, "GET", "/api/rules/mode/report?since=1h")).body as Report;
    await waitFor(async () => (await report()).versions[0]?.funnel.applied === 3, "three applied in the report");
    const body = await report();
    expect(body.rule).toBe("mode");
    expect(body.versions).toHaveLength(1);
    expect(body.versions[0]!.funnel).toMatchObject({ proposed: 3, delivered: 3, applied: 3, declined: 0, undone: 0 });

    const bad = await api(t, "GET", "/api/rules/mode/report?since=yesterday");
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain("24h or 7d");
    expect((await api(t, "GET", "/api/rules/nope/report")).status).toBe(404);
  });
});
