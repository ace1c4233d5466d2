import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxQuery, influxUrl } from "../support/influx.ts";
import { api, connectDevice, collect, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { optIn, publishEvents, useExampleRules } from "../support/story.ts";
import { whereSubjectIs } from "../support/subject-search.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";
import { parseAction } from "../support/messages.ts";

const ME = "cust-e1";
const OTHER = "cust-e2";

/** Writes line protocol straight into InfluxDB, as an older Refeed or another tool would have. */
async function writeLines(db: string, lines: string[]): Promise<void> {
  const res = await fetch(`${influxUrl()}/write?db=${db}&precision=u`, { method: "POST", body: lines.join("\n") });
  expect(res.status, await res.text()).toBe(204);
}

describe("erasure: every place a subject can be named, and the views built from them", () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
    await useExampleRules(t, "large-type");
    await t.restart();
  });
  afterAll(() => t?.close());

  it("deletes their points, redacts mentions in others' records, keeps rule texts (reported), and legacy device links lose the subject", async () => {
    const micros = Date.now() * 1000;
    await writeLines(t.db, [
      // A device provisioned by an older Refeed, with the customer in the registry itself.
      `device_registry,device=old-phone op="provisioned",token_hash="scrypt$x",kind="app",subject="${ME}" ${micros}`,
      // A device-only message that names the customer in a string metric: theirs, so it goes.
      `telemetry,device=kiosk-e user="${ME}",temp=21 ${micros + 1}`,
      `telemetry,device=kiosk-e user="somebody",temp=22 ${micros + 2}`,
      // Someone else's action whose explanation quotes the customer: the record stays, the mention goes.
      `action_log,device=kiosk-e action="act_other",status="proposed",rule="r",kind="set",key="k",owner="subject:${OTHER}",subject="${OTHER}",why="rule r: msg.props.friend == \\"${ME}\\" held",value="1" ${micros + 3}`,
      // A rule that names the customer: staff configuration, kept and reported.
      `rule_versions,rule=vip op="version",origin="api",version=1,text="when: msg.subject == '${ME}'",by="admin" ${micros + 4}`,
    ]);
    await t.restart();
    // The legacy row is read as a link.
    expect((await api(t, "GET", "/api/devices/old-phone")).body).toMatchObject({ subject: ME });

    const res = await api(t, "DELETE", `/api/subjects/${ME}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({
      deleted: { telemetry: 1 },
      redacted: { action_log: 1, device_registry: 1 },
      remaining: { rule_versions: 1 },
    });

    expect(await whereSubjectIs(t.db, ME)).toEqual(["rule_versions: field text (1)"]);
    expect(await influxQuery(t.db, influxql`SELECT "user", temp FROM telemetry`)).toEqual([
      expect.objectContaining({ user: "somebody", temp: 22 }),
    ]);
    const [other] = await influxQuery(t.db, influxql`SELECT * FROM action_log WHERE action = 'act_other'`);
    expect(other).toMatchObject({
      owner: `subject:${OTHER}`,
      subject: OTHER,
      why: 'rule r: msg.props.friend == "[erased]" held',
      device: "kiosk-e",
    });
    const [registry] = await influxQuery(t.db, influxql`SELECT * FROM device_registry WHERE device = 'old-phone'`);
    expect(registry).toMatchObject({ op: "provisioned", token_hash: "scrypt$x", kind: "app", subject: "" });

    await t.restart();
    expect((await api(t, "GET", "/api/devices/old-phone")).body).toMatchObject({ subject: null, revoked: false });
  });

  it("forgets the customer's windows: after an erasure their old history no longer counts, also for the device they used", async () => {
    const SUBJECT = "cust-e3";
    await optIn(t, SUBJECT);
    const phone = await provision(t, { id: "phone-e3", subject: SUBJECT });
    const client = await connectDevice(t.mqttUrl, phone.id, phone.token);
    const seen = collect(client);
    await client.subscribeAsync(`devices/${phone.id}/actions`, { qos: 1 });
    const screens = (n: number) =>
      Array.from({ length: n }, (_, i) => ({
        name: "screen_view",
        subject: SUBJECT,
        props: { screen: `s${i}`, zoom: 1.5 },
      }));
    await publishEvents(client, phone.id, screens(9));
    expect((await api(t, "DELETE", `/api/subjects/${SUBJECT}`)).status).toBe(200);

    // Back as a new customer with the same id: nine old screens would make the tenth fire the suggestion.
    await optIn(t, SUBJECT);
    await api(t, "PUT", `/api/subjects/${SUBJECT}/devices/${phone.id}`);
    await publishEvents(client, phone.id, screens(1));
    // Nine more make ten of the new history: now, and only now, it fires.
    await publishEvents(client, phone.id, screens(8));
    expect(seen.get(`devices/${phone.id}/actions`)).toBeUndefined();
    await publishEvents(client, phone.id, screens(1));
    const [suggestion] = (
      await waitFor(() => seen.get(`devices/${phone.id}/actions`), "the suggestion at the tenth new screen")
    ).map(parseAction);
    expect(suggestion!.why).toContain("agg.screens = 10");
    await client.endAsync();
  });

  it("drops the erased customer's actions from a persistent session's offline queue: the device never gets them", async () => {
    const SUBJECT = "cust-e5";
    await optIn(t, SUBJECT);
    const phone = await provision(t, { id: "phone-e5", subject: SUBJECT });
    const first = await connectDevice(t.mqttUrl, phone.id, phone.token, { clean: false });
    await first.subscribeAsync(`devices/${phone.id}/actions`, { qos: 1 });
    await first.endAsync();
    // Offline: the customer's change waits in the broker's queue for the phone.
    const queued = await api(t, "PUT", `/api/subjects/${SUBJECT}/profile`, { "ui.theme": "dark" });
    expect(queued.status).toBe(200);
    expect((await api(t, "DELETE", `/api/subjects/${SUBJECT}`)).status).toBe(200);

    const again = await connectDevice(t.mqttUrl, phone.id, phone.token, { clean: false });
    const seen = collect(again);
    // A change for the phone's next owner comes after whatever the queue still held.
    await api(t, "PUT", `/api/subjects/cust-e6/devices/${phone.id}`);
    await api(t, "PUT", "/api/subjects/cust-e6/profile", { "ui.theme": "light" });
    const actions = (await waitFor(() => seen.get(`devices/${phone.id}/actions`), "the next owner's change")).map(
      parseAction,
    );
    expect(actions.map((a) => a.value)).toEqual(["light"]);
    expect(actions.map((a) => a.id)).not.toContain((queued.body.actions as string[])[0]);
    await again.endAsync();
  });

  it("refuses a bad subject id and a caller without a token", async () => {
    expect(await api(t, "DELETE", "/api/subjects/bad,id")).toMatchObject({
      status: 400,
      body: { error: "invalid_subject" },
    });
    expect((await api(t, "DELETE", "/api/subjects/cust-e4", undefined, null)).status).toBe(401);
  });
});
