import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scoreSentiment } from "../../ingest/sentiment.ts";
import { atLeast, rowsOnce } from "../support/influx.ts";
import { api, collect, connectDevice, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { openStream } from "../support/sse.ts";
import { optIn, session, useExampleRules } from "../support/story.ts";
import { waitFor } from "../support/wait.ts";
import { ident, influxql } from "../../store/influxql.ts";

type ComponentName = "reliability" | "performance" | "sentiment" | "participation" | "connectivity";
interface Component {
  score: number | null;
  weight: number;
  explanation: string;
  inputs: Record<string, number | string>;
}
interface DeviceHealth {
  score: number | null;
  status: string;
  components: Record<ComponentName, Component>;
  feedback: { negative: number; latestNegative: unknown };
}
interface FleetDevice {
  device: string;
  components: Record<ComponentName, number | null>;
  feedback: { latestNegative: unknown };
}
interface FleetPage {
  devices: FleetDevice[];
}
interface TimelineEntry {
  key: string;
  type: string;
  at: string;
  name?: string;
  text?: string;
  purpose?: string;
  why?: string;
  props?: unknown;
  lifecycle?: { status: string }[];
}
interface Timeline {
  subjects: string[];
  entries: TimelineEntry[];
  next: string | null;
  telemetry: { time: number[]; metrics: Record<string, { max: (number | null)[]; mean: (number | null)[] }> } | null;
}
interface Action {
  id: string;
  rule: string;
}
const MIN = 60_000;
const BAD_TEXT = "The screen keeps freezing, terrible.";
const GOOD_TEXT = "Works great, I love it.";

/**
 * Experience health through the public interfaces only: devices publish over
 * MQTT (with their own `ts`, as firmware does), a support key reads the
 * scores, the timeline and the live stream over HTTP.
 */
describe("experience health, timeline and live updates", () => {
  let t: TestPlatform;
  let support: string;
  const clients: MqttClient[] = [];
  const as = async <T = Record<string, unknown>>(method: string, url: string, body?: unknown) =>
    (await api(t, method, url, body, support)) as { status: number; body: T };

  beforeAll(async () => {
    t = await startTestPlatform();
    await useExampleRules(t, "ask-for-rating");
    await t.restart();
    const key = await api(t, "POST", "/api/keys", { name: "support desk", role: "support" });
    expect(key.status).toBe(201);
    support = key.body.token as string;

    const now = Date.now();
    const tokens = new Map<string, string>();
    for (const [device, subject] of [
      ["kiosk-bad", "cust-bad"],
      ["kiosk-good", "cust-good"],
      ["kiosk-quiet", undefined],
    ] as const) {
      tokens.set(device, (await provision(t, { id: device, kind: "kiosk", ...(subject ? { subject } : {}) })).token);
      if (subject) await optIn(t, subject);
    }
    const connect = async (id: string) => {
      const client = await connectDevice(t.mqttUrl, id, tokens.get(id)!);
      await client.subscribeAsync(`devices/${id}/actions`, { qos: 1 });
      clients.push(client);
      return client;
    };
    const bad = await connect("kiosk-bad");
    const good = await connect("kiosk-good");
    const pub = (c: MqttClient, topic: string, payload: unknown) =>
      c.publishAsync(topic, JSON.stringify(payload), { qos: 1 });

    // kiosk-bad: 4 sessions, 2 errors (one event, one counted in telemetry), latency 200/250/900/3000 ms, unhappy customers.
    const badActions = collect(bad);
    const latencies = [200, 900, 3000, 250];
    for (let i = 0; i < 4; i += 1) {
      const at = now - (40 - i * 10) * MIN;
      await pub(
        bad,
        "devices/kiosk-bad/events",
        session("cust-bad", [{ name: "screen_view", props: { screen: "menu" } }]).map((e, j) => ({
          ...e,
          ts: at + j * 1000,
        })),
      );
      await pub(bad, "devices/kiosk-bad/telemetry", {
        ts: at + 5000,
        metrics: { latency_ms: latencies[i], errors: i === 2 ? 1 : 0, temp: 20 + i },
      });
    }
    await pub(bad, "devices/kiosk-bad/events", {
      ts: now - 15 * MIN,
      subject: "cust-bad",
      name: "error",
      props: { code: "E42" },
    });
    for (let i = 0; i < 3; i += 1)
      await pub(bad, "devices/kiosk-bad/feedback", {
        ts: now - (30 - i) * MIN,
        subject: "cust-bad",
        rating: 1,
        text: BAD_TEXT,
      });
    // The rating request after the third session is declined.
    const prompt = await waitFor(
      () =>
        badActions
          .get("devices/kiosk-bad/actions")
          ?.map((a) => JSON.parse(a) as Action)
          .find((a) => a.rule === "ask-for-rating"),
      "a rating request on kiosk-bad",
    );
    await pub(bad, "devices/kiosk-bad/acks", { action: prompt.id, status: "declined" });

    // kiosk-good: fast, happy, accepts its rating request.
    const goodActions = collect(good);
    for (let i = 0; i < 3; i += 1) {
      const at = now - (40 - i * 10) * MIN;
      await pub(
        good,
        "devices/kiosk-good/events",
        session("cust-good", []).map((e, j) => ({ ...e, ts: at + j * 1000 })),
      );
      await pub(good, "devices/kiosk-good/telemetry", { ts: at + 5000, metrics: { latency_ms: 120, errors: 0 } });
    }
    await pub(good, "devices/kiosk-good/feedback", {
      ts: now - 5 * MIN,
      subject: "cust-good",
      rating: 5,
      text: GOOD_TEXT,
    });
    const goodPrompt = await waitFor(
      () =>
        goodActions
          .get("devices/kiosk-good/actions")
          ?.map((a) => JSON.parse(a) as Action)
          .find((a) => a.rule === "ask-for-rating"),
      "a rating request on kiosk-good",
    );
    await pub(good, "devices/kiosk-good/acks", { action: goodPrompt.id, status: "accepted" });
    await waitFor(
      async () =>
        (await as<DeviceHealth>("GET", "/api/devices/kiosk-good/health")).body.components?.participation.inputs
          .accepted === 1,
      "the accepted prompt counted",
    );
    await waitFor(
      async () =>
        (await as<DeviceHealth>("GET", "/api/devices/kiosk-bad/health")).body.components?.participation.inputs
          .declined === 1,
      "the declined prompt counted",
    );
    // A PUBACK means durable on disk; InfluxDB, where the scores and the timeline come from, has the records moments later.
    const expected: Array<[string, string, number]> = [
      ["kiosk-bad", "events", 4 * 3 + 1],
      ["kiosk-bad", "telemetry", 4],
      ["kiosk-bad", "feedback", 3],
      ["kiosk-good", "events", 3 * 2],
      ["kiosk-good", "telemetry", 3],
      ["kiosk-good", "feedback", 1],
    ];
    for (const [device, measurement, n] of expected)
      await rowsOnce(t.db, influxql`SELECT * FROM ${ident(measurement)} WHERE device = ${device}`, atLeast(n));
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) await c.endAsync().catch(() => {});
    await t?.close();
  });

  it("scores each component from InfluxDB's aggregates, with the formula's inputs and a sentence", async () => {
    const res = await as<DeviceHealth>("GET", "/api/devices/kiosk-bad/health");
    expect(res.status).toBe(200);
    const h = res.body;
    expect(h).toMatchObject({ device: "kiosk-bad", kind: "kiosk", window: "7d", online: true, subjects: ["cust-bad"] });
    const c = h.components;
    // 2 errors in 4 sessions against a budget of 1 per session.
    expect(c.reliability).toMatchObject({
      score: 50,
      weight: 1,
      inputs: { sessions: 4, errors: 2, crashes: 0, per: "session" },
    });
    expect(c.reliability.explanation).toBe(
      "2 errors and 0 crashes in 4 sessions: 0.5 errors and 0 crashes per session (budgets 1 and 0.25)",
    );
    // Apdex, T = 500 ms: 200 and 250 satisfied, 900 tolerating, 3000 frustrated: (2 + 0.5) / 4.
    expect(c.performance).toMatchObject({
      score: 62.5,
      inputs: { samples: 4, satisfied: 2, tolerating: 1, frustrated: 1, targetMs: 500, meanMs: 1087.5 },
    });
    // Three ratings of 1 (score 0) and three texts at the sentiment package's score, weighed equally.
    const comparative = scoreSentiment(BAD_TEXT).comparative;
    expect(c.sentiment.inputs).toMatchObject({ ratings: 3, meanRating: 1, texts: 3, negativeTexts: 3 });
    expect(c.sentiment.score).toBeCloseTo((3 * 0 + 3 * (50 + 50 * comparative)) / 6, 1);
    expect(c.participation).toMatchObject({ score: 50, inputs: { asks: 1, answered: 1, accepted: 0, declined: 1 } });
    expect(c.connectivity.inputs.drops).toBe(0);
    expect(c.connectivity.score).toBeGreaterThan(80);
    expect(h.feedback.negative).toBe(3);
    expect(h.feedback.latestNegative).toMatchObject({ text: BAD_TEXT, rating: 1 });
    // The overall score is the weighted mean of the components (participation weighs 0.5).
    const parts = ["reliability", "performance", "sentiment", "participation", "connectivity"].map(
      (n) => c[n as ComponentName],
    );
    const expected = parts.reduce((s, p) => s + p.score! * p.weight, 0) / parts.reduce((s, p) => s + p.weight, 0);
    expect(h.score).toBeCloseTo(expected, 0);
    expect(h.status).toBe("poor");
  });

  it("says when a component has nothing to go by, and leaves it out of the score", async () => {
    const h = (await as<DeviceHealth>("GET", "/api/devices/kiosk-quiet/health")).body;
    expect(h.score).toBeNull();
    expect(h.status).toBe("unknown");
    expect(h.components.performance).toMatchObject({
      score: null,
      explanation: "no 'latency_ms' telemetry in the window",
    });
    expect(h.components.connectivity).toMatchObject({ score: null, explanation: "never connected over MQTT" });
    expect((await as("GET", "/api/devices/no-such/health")).status).toBe(404);
  });

  it("lists the fleet worst first, with the latest negative feedback, filtered and paginated", async () => {
    // The fleet view scores devices with news every 2 s: what the setup sent shows within a refresh.
    const fleet = await waitFor(async () => {
      const body = (await as<FleetPage>("GET", "/api/fleet/health")).body;
      return (
        body.devices.map((d) => d.device).join() === "kiosk-bad,kiosk-good,kiosk-quiet" &&
        body.devices[1]?.components.participation === 100 &&
        body
      );
    }, "the fleet view to show the three kiosks");
    expect(fleet).toMatchObject({
      window: "7d",
      total: 3,
      offset: 0,
      limit: 50,
      summary: { devices: 3, poor: 1, good: 1, unknown: 1 },
    });
    expect(fleet.devices[0]).toMatchObject({
      device: "kiosk-bad",
      status: "poor",
      online: true,
      feedback: { negative: 3, latestNegative: { text: BAD_TEXT, rating: 1 } },
    });
    expect(fleet.devices[0]!.components.performance).toBe(62.5);
    expect(fleet.devices[1]!.feedback.latestNegative).toBeNull();

    expect((await as<FleetPage>("GET", "/api/fleet/health?sort=-score")).body.devices.map((d) => d.device)).toEqual([
      "kiosk-good",
      "kiosk-bad",
      "kiosk-quiet",
    ]);
    expect((await as<FleetPage>("GET", "/api/fleet/health?status=good")).body.devices.map((d) => d.device)).toEqual([
      "kiosk-good",
    ]);
    expect((await as<FleetPage>("GET", "/api/fleet/health?q=QUIET")).body.devices.map((d) => d.device)).toEqual([
      "kiosk-quiet",
    ]);
    // A customer's id finds the devices that carried their data.
    expect((await as<FleetPage>("GET", "/api/fleet/health?q=cust-good")).body.devices.map((d) => d.device)).toEqual([
      "kiosk-good",
    ]);
    const page = (await as<FleetPage>("GET", "/api/fleet/health?limit=1&offset=1")).body;
    expect(page).toMatchObject({ total: 3, offset: 1, limit: 1 });
    expect(page.devices.map((d) => d.device)).toEqual(["kiosk-good"]);
    expect((await as<FleetPage>("GET", "/api/fleet/health?online=false")).body.devices.map((d) => d.device)).toEqual([
      "kiosk-quiet",
    ]);
  });

  it("refuses bad queries with the parameter named", async () => {
    const bad = async (url: string) => {
      const res = await as("GET", url);
      expect(res.status, url).toBe(400);
      return res.body.message as string;
    };
    expect(await bad("/api/fleet/health?limit=0")).toMatch(/^limit: a whole number from 1 to 500/);
    expect(await bad("/api/fleet/health?sort=best")).toMatch(/^sort: one of score, -score/);
    expect(await bad("/api/fleet/health?window=forever")).toMatch(/^window: a duration/);
    expect(await bad("/api/fleet/health?colour=red")).toMatch(/unknown field colour/);
    expect(await bad("/api/devices/kiosk-bad/timeline?types=feedback,gossip")).toMatch(/^types: .*\(not gossip\)/);
    expect(await bad("/api/devices/kiosk-bad/timeline?from=yesterday")).toMatch(/^from: an ISO-8601 time/);
    expect(await bad("/api/devices/kiosk-bad/timeline?cursor=nonsense")).toMatch(/^cursor: /);
    expect(await bad("/api/devices/kiosk-bad/timeline?last=30d&interval=10s")).toMatch(/^interval: .*buckets/);
  });

  it("shows the timeline: feedback with sentiment, actions with lifecycle and why, events, connections, consent", async () => {
    const tl = (await as<Timeline>("GET", "/api/devices/kiosk-bad/timeline?last=2h")).body;
    expect(tl.subjects).toEqual(["cust-bad"]);
    const of = (type: string) => tl.entries.filter((e) => e.type === type);
    expect(of("feedback")).toHaveLength(3);
    expect(of("feedback")[0]).toMatchObject({
      text: BAD_TEXT,
      rating: 1,
      subject: "cust-bad",
      sentiment: scoreSentiment(BAD_TEXT).comparative,
    });
    const action = of("action")[0];
    expect(action).toMatchObject({
      rule: "ask-for-rating",
      kind: "suggest",
      target: "feedback.rating_request",
      status: "declined",
      prompt: "How was your experience? Rate us from 1 to 5.",
    });
    expect(action!.why).toMatch(/^rule ask-for-rating/);
    expect(action!.lifecycle!.map((s) => s.status)).toEqual(["proposed", "delivered", "declined"]);
    expect(of("event").map((e) => e.name)).toContain("error");
    expect(of("event").find((e) => e.name === "error")!.props).toEqual({ code: "E42" });
    expect(of("presence")[0]).toMatchObject({ event: "connect", transport: "tcp" });
    expect(
      of("consent")
        .map((e) => e.purpose)
        .sort(),
    ).toEqual(["analytics", "feedback", "personalization"]);
    // Newest first.
    const times = tl.entries.map((e) => Date.parse(e.at));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    // Telemetry summaries per bucket, for the charts.
    expect(Object.keys(tl.telemetry!.metrics).sort()).toEqual(["errors", "latency_ms", "temp"]);
    const latency = tl.telemetry!.metrics.latency_ms!;
    expect(latency.max.filter((v) => v !== null).sort((a, b) => a - b)).toEqual([200, 250, 900, 3000]);
    expect(tl.telemetry!.time).toHaveLength(latency.mean.length);
  });

  it("pages through the timeline with cursors, each entry once", async () => {
    const all = (await as<Timeline>("GET", "/api/devices/kiosk-bad/timeline?last=2h&limit=1000")).body.entries;
    expect(all.length).toBeGreaterThan(20);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Timeline = (
        await as<Timeline>(
          "GET",
          `/api/devices/kiosk-bad/timeline?last=2h&limit=7&types=event,feedback,action,presence,consent,dead_letter${cursor ? `&cursor=${cursor}` : ""}`,
        )
      ).body;
      expect(page.entries.length).toBeLessThanOrEqual(7);
      if (cursor) expect(page.telemetry).toBeNull();
      seen.push(...page.entries.map((e) => e.key));
      cursor = page.next;
    } while (cursor);
    expect(seen).toEqual(all.map((e) => e.key));
    const onlyFeedback = (await as<Timeline>("GET", "/api/devices/kiosk-bad/timeline?last=2h&types=feedback")).body;
    expect(new Set(onlyFeedback.entries.map((e) => e.type))).toEqual(new Set(["feedback"]));
    expect(onlyFeedback.telemetry).toBeNull();
  });

  it("streams live updates with a single-use ticket, and ends the stream when the key is revoked", async () => {
    const key = (await api(t, "POST", "/api/keys", { name: "live", role: "support" })).body as {
      id: string;
      token: string;
    };
    const ticket = (await api(t, "POST", "/api/live/tickets", undefined, key.token)).body.ticket as string;
    expect(ticket).toMatch(/^rft_/);
    const stream = await openStream(
      `${t.http}/api/live/devices/kiosk-bad?ticket=${ticket}&after=${Date.now() * 1000}`,
      null,
    );
    expect(stream.status).toBe(200);
    // Used once: the same ticket opens nothing more.
    expect((await openStream(`${t.http}/api/live/devices/kiosk-bad?ticket=${ticket}`, null)).status).toBe(401);
    await waitFor(() => stream.events.find((e) => e.event === "health"), "the device's health on the stream");

    const text = "Still freezing, this is awful.";
    await clients[0]!.publishAsync(
      "devices/kiosk-bad/feedback",
      JSON.stringify({ subject: "cust-bad", rating: 2, text }),
      { qos: 1 },
    );
    const arrived = await waitFor(
      () =>
        stream.events
          .flatMap((e) => (e.event === "entries" ? (JSON.parse(e.data) as Timeline).entries : []))
          .find((e) => e.type === "feedback" && e.text === text),
      "the new feedback on the stream",
      15_000,
    );
    expect(arrived).toMatchObject({ rating: 2, subject: "cust-bad", sentiment: scoreSentiment(text).comparative });
    await waitFor(
      () =>
        stream.events
          .filter((e) => e.event === "health")
          .some((e) => (JSON.parse(e.data) as DeviceHealth).components.sentiment.inputs.ratings === 4),
      "a health update with the new rating",
      20_000,
    );

    expect((await api(t, "DELETE", `/api/keys/${key.id}`)).status).toBe(200);
    await stream.ended;
    expect((await api(t, "POST", "/api/live/tickets", undefined, key.token)).status).toBe(401);
  });

  it("tells a fleet stream when the fleet's health changed", async () => {
    const ticket = (await as("POST", "/api/live/tickets")).body.ticket as string;
    const stream = await openStream(`${t.http}/api/live/fleet?ticket=${ticket}`, null);
    expect(stream.status).toBe(200);
    await waitFor(() => stream.events.find((e) => e.event === "fleet"), "the first fleet event");
    const before = stream.events.length;
    await clients[1]!.publishAsync(
      "devices/kiosk-good/feedback",
      JSON.stringify({ subject: "cust-good", rating: 1, text: "Terrible experience, very slow today." }),
      { qos: 1 },
    );
    await waitFor(
      () => stream.events.length > before && stream.events.at(-1)!.event === "fleet",
      "a fleet event after the new feedback",
      20_000,
    );
    stream.close();
    expect((await openStream(`${t.http}/api/live/fleet?ticket=rft_made-up`, null)).status).toBe(401);
    expect((await openStream(`${t.http}/api/live/devices/kiosk-bad`, null)).status).toBe(400);
    const another = (await as("POST", "/api/live/tickets")).body.ticket as string;
    expect((await openStream(`${t.http}/api/live/devices/no-such-device?ticket=${another}`, null)).status).toBe(404);
    // Without a key there is no ticket.
    expect((await api(t, "POST", "/api/live/tickets", undefined, null)).status).toBe(401);
  });
});
