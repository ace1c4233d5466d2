import yauzl from "yauzl";
import { describe, expect, it } from "vitest";
import { atLeast, influxQuery, rowsOnce } from "../support/influx.ts";
import { api, collect, connectDevice, ingestCaughtUp, provision, type TestPlatform } from "../support/platform.ts";
import { optIn, publishEvents, storyPlatform } from "../support/story.ts";
import { whereSubjectIs } from "../support/subject-search.ts";
import { waitFor } from "../support/wait.ts";
import { influxql, type InfluxQL } from "../../store/influxql.ts";

const ME = "cust-8-erase";
const OTHER = "cust-8-other";

/** A token for the customer, as an app's backend gets one for them at login. */
async function tokenFor(t: TestPlatform, subject: string): Promise<string> {
  const res = await api(t, "POST", `/api/subjects/${subject}/tokens`, { label: "phone app" });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return String(res.body.token);
}

interface ExportedAction {
  rule: string;
  why: string;
  transitions: { status: string }[];
}
interface SubjectExport {
  consent: { history: unknown[] };
  scores: { sentiment: { mean: number | null } };
  actions: ExportedAction[];
  records: Record<string, unknown>;
  erasures: unknown[];
  exportedAt: string;
}
interface Action {
  id: string;
  value: unknown;
}

async function exportJson(t: TestPlatform, subject: string, token: string) {
  const res = await fetch(`${t.http}/api/subjects/${subject}/export`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as SubjectExport };
}

/** The CSV files of a zip export, by name. */
async function exportCsv(t: TestPlatform, subject: string, token: string): Promise<Map<string, string>> {
  const res = await fetch(`${t.http}/api/subjects/${subject}/export?format=csv`, {
    headers: { authorization: `Bearer ${token}` },
  });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/zip");
  const buffer = Buffer.from(await res.arrayBuffer());
  const files = new Map<string, string>();
  await new Promise<void>((resolve, reject) => {
    yauzl.fromBuffer(buffer, { lazyEntries: true }, (err, zip) => {
      if (err) return reject(err);
      zip.on("error", reject);
      zip.on("end", () => resolve());
      zip.on("entry", (entry: yauzl.Entry) => {
        zip.openReadStream(entry, (streamErr, stream) => {
          if (streamErr) return reject(streamErr);
          const chunks: Buffer[] = [];
          stream.on("data", (c: Buffer) => chunks.push(c));
          stream.on("error", reject);
          stream.on("end", () => {
            files.set(entry.fileName, Buffer.concat(chunks).toString("utf8"));
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
  return files;
}

describe("story 8: opt-in only; export everything; erase everything", () => {
  const platform = storyPlatform("bill-paid", "large-type");

  it("stores and uses nothing without opt-in; the customer opts in with their own token", async () => {
    const t = platform();
    const phone = await provision(t, { id: "phone-8a", kind: "app", subject: "cust-8a" });
    const client = await connectDevice(t.mqttUrl, phone.id, phone.token);
    const seen = collect(client);
    await client.subscribeAsync(`devices/${phone.id}/actions`, { qos: 1 });
    await publishEvents(client, phone.id, [{ name: "bill_paid", subject: "cust-8a", props: { bill: "b-1" } }]);
    await client.publishAsync(
      `devices/${phone.id}/telemetry`,
      JSON.stringify({ subject: "cust-8a", metrics: { battery: 40 } }),
      { qos: 1 },
    );
    // Whatever ingest acknowledged is in InfluxDB by now (a PUBACK means durable on disk): none of it is the customer's.
    await ingestCaughtUp(t);
    expect(await influxQuery(t.db, influxql`SELECT * FROM events WHERE subject = 'cust-8a'`)).toEqual([]);
    expect(await influxQuery(t.db, influxql`SELECT * FROM telemetry WHERE subject = 'cust-8a'`)).toEqual([]);

    const token = await tokenFor(t, "cust-8a");
    expect(await api(t, "GET", "/api/subjects/cust-8a/consent", undefined, token)).toMatchObject({
      status: 200,
      body: { consent: { analytics: false, personalization: false, feedback: false } },
    });
    expect(await api(t, "PUT", "/api/subjects/cust-8a/consent", { personalization: true }, token)).toMatchObject({
      status: 200,
      body: { consent: { personalization: true } },
    });
    await publishEvents(client, phone.id, [{ name: "bill_paid", subject: "cust-8a", props: { bill: "b-2" } }]);
    const [action] = (await waitFor(() => seen.get(`devices/${phone.id}/actions`), "the action once opted in")).map(
      (a) => JSON.parse(a) as Action,
    );
    // Only the bill paid after the opt-in was used.
    expect(action!.value).toEqual({ bill: "b-2", status: "paid" });
    expect((await api(t, "GET", "/api/subjects/cust-8a/consent", undefined, token)).body.history).toEqual([
      { purpose: "personalization", granted: true, by: "customer", at: expect.any(String) },
    ]);
    await client.endAsync();
  });

  it("a subject token reads and changes its own subject only", async () => {
    const t = platform();
    await optIn(t, "cust-8b");
    await optIn(t, "cust-8c");
    const phoneC = await provision(t, { id: "phone-8c", subject: "cust-8c" });
    const mine = await tokenFor(t, "cust-8b");
    const theirs = await tokenFor(t, "cust-8c");
    // The other customer has a profile, an action and a suggestion waiting.
    const ingest = (body: unknown) =>
      fetch(`${t.http}/api/ingest/events`, {
        method: "POST",
        headers: { authorization: `Bearer ${phoneC.token}` },
        body: JSON.stringify(body),
      });
    await ingest({ subject: "cust-8c", name: "bill_paid", props: { bill: "b-c" } });
    await ingest(
      Array.from({ length: 10 }, (_, i) => ({
        subject: "cust-8c",
        name: "screen_view",
        props: { screen: `s${i}`, zoom: 1.5 },
      })),
    );
    const actions = await waitFor(async () => {
      const list = (await api(t, "GET", "/api/subjects/cust-8c/actions", undefined, theirs)).body as unknown as Array<{
        id: string;
        kind: string;
      }>;
      return list.length === 2 ? list : undefined;
    }, "the other customer's two actions");
    const suggestion = actions.find((a) => a.kind === "suggest")!;
    const set = actions.find((a) => a.kind === "set")!;
    // The answers came once the events were durable on disk; the export reads InfluxDB, which has them (and the actions' log) moments later.
    const before = await waitFor(async () => {
      const exported = await exportJson(t, "cust-8c", theirs);
      const records = exported.body.records as Record<string, Array<Record<string, unknown>> | undefined>;
      const proposed = (id: string) => records.action_log?.some((r) => r.action === id && r.status === "proposed");
      return records.events?.length === 11 && proposed(set.id) && proposed(suggestion.id) && exported;
    }, "the other customer's events and actions in the export");

    const denied: Array<[string, string, unknown?]> = [
      ["GET", "/api/subjects/cust-8c"],
      ["GET", "/api/subjects/cust-8c/profile"],
      ["PUT", "/api/subjects/cust-8c/profile", { "ui.theme": "dark" }],
      ["GET", "/api/subjects/cust-8c/consent"],
      ["PUT", "/api/subjects/cust-8c/consent", { personalization: false }],
      ["GET", "/api/subjects/cust-8c/actions"],
      ["GET", "/api/subjects/cust-8c/participation"],
      ["GET", "/api/subjects/cust-8c/devices"],
      ["DELETE", `/api/subjects/cust-8c/devices/${phoneC.id}`],
      ["GET", "/api/subjects/cust-8c/tokens"],
      ["GET", "/api/subjects/cust-8c/export"],
      ["GET", "/api/subjects/cust-8c/export?format=csv"],
      ["DELETE", "/api/subjects/cust-8c"],
    ];
    for (const [method, url, body] of denied) {
      expect([method, url, (await api(t, method, url, body, mine)).status]).toEqual([method, url, 403]);
    }
    // Another customer's actions do not exist for this token.
    for (const [method, url] of [
      ["GET", `/api/actions/${set.id}`],
      ["POST", `/api/actions/${set.id}/undo`],
      ["POST", `/api/actions/${suggestion.id}/accept`],
      ["POST", `/api/actions/${suggestion.id}/decline`],
    ] as const) {
      expect([method, url, (await api(t, method, url, undefined, mine)).status]).toEqual([method, url, 404]);
    }
    // Staff calls are not a customer's.
    for (const [method, url, body] of [
      ["POST", "/api/subjects/cust-8b/tokens", {}],
      ["PUT", `/api/subjects/cust-8b/devices/${phoneC.id}`, undefined],
      ["GET", "/api/devices", undefined],
      ["GET", "/api/rules", undefined],
    ] as const) {
      expect([method, url, (await api(t, method, url, body, mine)).status]).toEqual([method, url, 403]);
    }
    expect(
      (await fetch(`${t.http}/api/devices/${phoneC.id}/stream`, { headers: { authorization: `Bearer ${mine}` } }))
        .status,
    ).toBe(401);

    // Nothing of the other customer changed, and their own token still reads it all.
    const after = await exportJson(t, "cust-8c", theirs);
    const { exportedAt: _a, ...b } = before.body;
    const { exportedAt: _b, ...a } = after.body;
    expect(a).toEqual(b);
    expect(a.actions).toHaveLength(2);

    // Its own subject: all of it.
    expect((await api(t, "GET", "/api/subjects/cust-8b/profile", undefined, mine)).status).toBe(200);
    expect(await api(t, "PUT", "/api/subjects/cust-8b/profile", { "ui.theme": "dark" }, mine)).toMatchObject({
      status: 200,
      body: { profile: { "ui.theme": "dark" } },
    });
    // The owner answers their suggestion from the app, and can undo the change that followed.
    expect(await api(t, "POST", `/api/actions/${suggestion.id}/accept`, undefined, theirs)).toMatchObject({
      status: 200,
      body: { status: "applied" },
    });
    expect((await api(t, "GET", "/api/subjects/cust-8c/profile", undefined, theirs)).body.profile).toMatchObject({
      "ui.font_size": "large",
    });
    expect(await api(t, "POST", `/api/actions/${suggestion.id}/undo`, undefined, theirs)).toMatchObject({
      status: 200,
      body: { status: "undone" },
    });
    expect(await api(t, "POST", `/api/actions/${suggestion.id}/decline`, undefined, theirs)).toMatchObject({
      status: 409,
      body: { error: "action_not_answerable" },
    });
  });

  it("exports everything held about the customer, as JSON and as CSV in a zip", async () => {
    const t = platform();
    await optIn(t, ME);
    await optIn(t, OTHER);
    const token = await tokenFor(t, ME);
    const phone = await provision(t, { id: "phone-8", kind: "app", subject: ME });
    const atm = await provision(t, { id: "atm-8", kind: "atm" });
    const phoneClient = await connectDevice(t.mqttUrl, phone.id, phone.token);
    const atmClient = await connectDevice(t.wsUrl, atm.id, atm.token);
    const phoneSeen = collect(phoneClient);
    await phoneClient.subscribeAsync(`devices/${phone.id}/actions`, { qos: 1 });

    await phoneClient.publishAsync(
      `devices/${phone.id}/telemetry`,
      JSON.stringify({ subject: ME, metrics: { battery: 77, network: "wifi" } }),
      { qos: 1 },
    );
    await publishEvents(phoneClient, phone.id, [{ name: "bill_paid", subject: ME, props: { bill: "b-8" } }]);
    await phoneClient.publishAsync(
      `devices/${phone.id}/feedback`,
      JSON.stringify({ subject: ME, rating: 2, text: '=HYPERLINK("http://x") terrible, slow app' }),
      { qos: 1 },
    );
    // Refused copies that name the customer: a bad metric name, and text that is not even JSON.
    await phoneClient.publishAsync(
      `devices/${phone.id}/telemetry`,
      JSON.stringify({ subject: ME, metrics: { "bad name": 1 } }),
      { qos: 1 },
    );
    await phoneClient.publishAsync(`devices/${phone.id}/events`, `{subject: ${ME}, name: oops`, { qos: 1 });
    // A card session on a shared ATM, and another customer's visit there.
    await publishEvents(atmClient, atm.id, [
      { name: "session_start", subject: ME },
      { name: "withdrawal", subject: ME, props: { amount: 50 } },
      { name: "session_end", subject: ME },
      { name: "session_start", subject: OTHER },
      { name: "withdrawal", subject: OTHER, props: { amount: 20 } },
    ]);
    const [action] = (await waitFor(() => phoneSeen.get(`devices/${phone.id}/actions`), "the bill-paid action")).map(
      (a) => JSON.parse(a) as Action,
    );
    await phoneClient.publishAsync(
      `devices/${phone.id}/acks`,
      JSON.stringify({ action: action!.id, status: "applied" }),
      { qos: 1 },
    );
    await api(t, "PUT", `/api/subjects/${ME}/profile`, { "ui.font_size": "large" }, token);
    await waitFor(
      async () => (await api(t, "GET", `/api/actions/${action!.id}`)).body.status === "applied",
      "the ack in the lifecycle",
    );
    // The PUBACKs mean durable on disk; the export reads InfluxDB, which has the records moments later.
    const held: Array<[InfluxQL, number]> = [
      [influxql`SELECT * FROM telemetry WHERE subject = ${ME}`, 1],
      [influxql`SELECT * FROM events WHERE subject = ${ME}`, 4],
      [influxql`SELECT * FROM feedback WHERE subject = ${ME}`, 1],
      [influxql`SELECT * FROM dead_letters WHERE device = ${phone.id}`, 2],
      [influxql`SELECT * FROM events WHERE subject = ${OTHER}`, 2],
    ];
    for (const [q, n] of held) await rowsOnce(t.db, q, atLeast(n));

    const { status, headers, body } = await exportJson(t, ME, token);
    expect(status).toBe(200);
    expect(headers.get("transfer-encoding")).toBe("chunked");
    expect(headers.get("content-disposition")).toBe(`attachment; filename="refeed-export-${ME}.json"`);
    expect(body).toMatchObject({
      subject: ME,
      consent: { current: { analytics: true, personalization: true, feedback: true } },
      profile: { "billing.last_paid": { bill: "b-8", status: "paid" }, "ui.font_size": "large" },
      touchpoints: { linked: [{ device: phone.id }] },
      tokens: [{ label: "phone app", revokedAt: null }],
      scores: { participation: { asks: 0 }, sentiment: { feedback: 1 } },
    });
    expect(body.consent.history).toHaveLength(3);
    expect(body.scores.sentiment.mean).toBeLessThan(0);
    const bill = body.actions.find((a) => a.rule === "bill-paid")!;
    expect(bill.why).toMatch(/^rule bill-paid/);
    expect(bill.transitions.map((x) => x.status)).toEqual(["proposed", "delivered", "applied"]);
    expect(body.actions.find((a) => a.rule === "@customer")).toMatchObject({
      key: "ui.font_size",
      value: "large",
      why: 'the customer set ui.font_size to "large" in their profile',
    });
    const records = body.records as Record<string, Array<Record<string, unknown>>> &
      Record<
        "telemetry" | "events" | "feedback" | "dead_letters" | "profile_changes" | "action_log",
        Array<Record<string, unknown>>
      >;
    expect(records.telemetry).toEqual([
      { time: expect.any(String), device: phone.id, subject: ME, battery: 77, network: "wifi" },
    ]);
    expect(records.events.map((e) => [e.device, e.event]).sort()).toEqual([
      [atm.id, "session_end"],
      [atm.id, "session_start"],
      [atm.id, "withdrawal"],
      [phone.id, "bill_paid"],
    ]);
    expect(records.feedback).toEqual([expect.objectContaining({ rating: 2, sentiment: expect.any(Number) })]);
    expect(records.dead_letters.map((d) => d.reason).sort()).toEqual(["invalid_name", "malformed_json"]);
    expect(records.consent).toHaveLength(3);
    expect(records.profile_changes.map((p) => p.key).sort()).toEqual(["billing.last_paid", "ui.font_size"]);
    expect(records.action_log.map((r) => r.status)).toEqual(
      expect.arrayContaining(["proposed", "delivered", "applied"]),
    );
    expect(records.subject_links).toEqual([expect.objectContaining({ device: phone.id, subject: ME, op: "linked" })]);
    expect(records.subject_tokens).toEqual([expect.objectContaining({ op: "issued", label: "phone app" })]);
    expect(JSON.stringify(body)).not.toContain("scrypt$");
    // Nothing of the other customer.
    expect(JSON.stringify(body)).not.toContain(OTHER);
    expect(body.erasures).toEqual([]);

    const files = await exportCsv(t, ME, token);
    for (const name of [
      "README.txt",
      "consent.csv",
      "profile.csv",
      "touchpoints.csv",
      "actions.csv",
      "scores.csv",
      "records/telemetry.csv",
      "records/events.csv",
      "records/feedback.csv",
      "records/dead_letters.csv",
      "erasures.csv",
    ]) {
      expect([...files.keys()]).toContain(name);
    }
    expect(files.get("records/telemetry.csv")!.split("\n")[0]).toBe("time,device,subject,battery,network");
    expect(files.get("records/events.csv")!.trim().split("\n")).toHaveLength(5);
    // A formula a device sent is text in the spreadsheet, not a formula.
    expect(files.get("records/feedback.csv")).toContain(`"'=HYPERLINK(""http://x"") terrible, slow app"`);
    expect(files.get("actions.csv")).toContain("bill-paid");
    expect(files.get("profile.csv")).toContain("ui.font_size");
    await Promise.all([phoneClient.endAsync(), atmClient.endAsync()]);
  });

  it("erases the customer from every measurement and every view, also after a restart; the export holds only the erasure", async () => {
    const t = platform();
    const token = await tokenFor(t, ME);
    expect(await whereSubjectIs(t.db, ME)).not.toEqual([]);
    const otherBefore = await whereSubjectIs(t.db, OTHER);
    expect(otherBefore).not.toEqual([]);
    const otherEvents = await influxQuery(t.db, influxql`SELECT * FROM events WHERE subject = ${OTHER}`);

    const res = await api(t, "DELETE", `/api/subjects/${ME}`, undefined, token);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ subject: ME, erasure: expect.stringMatching(/^era_/), remaining: {} });
    expect((res.body.deleted as Record<string, number>).telemetry).toBe(1);
    expect((res.body.deleted as Record<string, number>).dead_letters).toBe(2);

    // An InfluxQL search over every measurement finds nothing for the customer.
    expect(await whereSubjectIs(t.db, ME)).toEqual([]);
    // The other customer's data is all there.
    expect(await whereSubjectIs(t.db, OTHER)).toEqual(otherBefore);
    expect(await influxQuery(t.db, influxql`SELECT * FROM events WHERE subject = ${OTHER}`)).toEqual(otherEvents);
    // The erasure event records no erased data.
    const [erasure] = await influxQuery(t.db, influxql`SELECT * FROM erasures`);
    expect(erasure).toMatchObject({ erasure: res.body.erasure, by: "customer", subject_hash: expect.any(String) });
    expect(JSON.stringify(erasure)).not.toContain(ME);

    // Every view forgot them: the token, consent (data about them is withheld again), the phone's state.
    expect((await api(t, "GET", `/api/subjects/${ME}/profile`, undefined, token)).status).toBe(401);
    const onlyErasure = async () => {
      const { body } = await exportJson(t, ME, "test-admin-token-0123456789");
      expect(body).toMatchObject({
        subject: ME,
        consent: { current: { analytics: false, personalization: false, feedback: false }, history: [] },
        profile: {},
        touchpoints: { linked: [], sessions: [] },
        tokens: [],
        actions: [],
        scores: { participation: { asks: 0, answers: 0 }, sentiment: { feedback: 0, mean: null } },
        records: {},
        erasures: [{ erasure: res.body.erasure, by: "customer", at: expect.any(String) }],
      });
    };
    await onlyErasure();
    const phone = (await api(t, "GET", "/api/devices/phone-8")).body;
    expect(phone).toMatchObject({ subject: null, revoked: false, profile: {} });
    const csv = await exportCsv(t, ME, "test-admin-token-0123456789");
    expect(csv.get("erasures.csv")!.trim().split("\n")).toHaveLength(2);
    // Every other file holds its header only.
    for (const [name, text] of csv)
      if (name.endsWith(".csv") && name !== "erasures.csv" && name !== "scores.csv")
        expect([name, text.trim().split("\n").length]).toEqual([name, 1]);

    // After a restart nothing comes back from the views' rebuild either.
    await t.restart();
    expect(await whereSubjectIs(t.db, ME)).toEqual([]);
    await onlyErasure();
    const phoneAgain = await api(t, "GET", "/api/devices/phone-8");
    expect(phoneAgain.body).toMatchObject({ subject: null, profile: {} });
    const client = await connectDevice(
      t.mqttUrl,
      "phone-8",
      String((await api(t, "POST", "/api/devices/phone-8/rotate")).body.token),
    );
    const seen = collect(client);
    await client.subscribeAsync("devices/phone-8/state", { qos: 1 });
    const state = JSON.parse(
      (await waitFor(() => seen.get("devices/phone-8/state"), "the phone's retained state"))[0]!,
    ) as unknown;
    expect(state).toMatchObject({ subject: null, profile: {} });
    await client.publishAsync("devices/phone-8/telemetry", JSON.stringify({ subject: ME, metrics: { battery: 1 } }), {
      qos: 1,
    });
    await ingestCaughtUp(t);
    expect(await influxQuery(t.db, influxql`SELECT * FROM telemetry WHERE subject = ${ME}`)).toEqual([]);
    await client.endAsync();
  });
});
