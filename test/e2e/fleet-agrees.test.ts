import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  connectDevice,
  ingestCaughtUp,
  provision,
  startTestPlatform,
  type TestPlatform,
} from "../support/platform.ts";
import { optIn, session } from "../support/story.ts";

const MIN = 60_000;
type Components = Record<string, number | null>;
interface Row {
  device: string;
  kind: string | null;
  online: boolean;
  lastSeen: string | null;
  score: number | null;
  status: string;
  components: Components;
}
interface DeviceHealth extends Omit<Row, "components"> {
  components: Record<string, { score: number | null }>;
}

/**
 * The fleet view (`/api/fleet/health`) is a materialized view; each device's
 * own health (`/api/devices/{id}/health`) is computed on the spot. A support
 * agent must never see them disagree: not right after a start, not after a
 * restart with history, not while devices come back.
 */
describe("the fleet view agrees with each device's own health", () => {
  let t: TestPlatform;
  let support: string;
  const tokens = new Map<string, string>();
  const clients: MqttClient[] = [];
  const devices = ["kiosk-fine-1", "kiosk-fine-2", "kiosk-fine-3", "kiosk-sad-1", "kiosk-sad-2", "kiosk-unplugged"];

  const connect = async (id: string) => {
    const client = await connectDevice(t.mqttUrl, id, tokens.get(id)!);
    clients.push(client);
    return client;
  };

  const fleetRows = async () => {
    const fleet = await api(t, "GET", "/api/fleet/health?limit=100", undefined, support);
    expect(fleet.status).toBe(200);
    return new Map((fleet.body.devices as Row[]).map((r) => [r.device, r]));
  };

  /**
   * Every device's own health beside the fleet rows answered just before and
   * just after it. Scores move with the clock (time online, time in service),
   * so a device's score must lie between its two fleet rows' (give or take the
   * rounding to 0.1); everything else must be equal.
   */
  const disagreements = async () => {
    const before = await fleetRows();
    const own = new Map<string, DeviceHealth>();
    for (const id of devices) {
      const res = await api(t, "GET", `/api/devices/${id}/health`, undefined, support);
      expect(res.status).toBe(200);
      own.set(id, res.body as unknown as DeviceHealth);
    }
    const after = await fleetRows();
    const found: string[] = [];
    const between = (what: string, a: number | null, b: number | null, v: number | null) => {
      if (a === null || b === null || v === null) {
        if (!(a === v && b === v)) found.push(`${what}: fleet ${a}/${b} vs device ${v}`);
      } else if (v < Math.min(a, b) - 0.1 || v > Math.max(a, b) + 0.1)
        found.push(`${what}: fleet ${a}/${b} vs device ${v}`);
    };
    for (const [id, h] of own) {
      const [x, y] = [before.get(id), after.get(id)];
      if (!x || !y) {
        found.push(`${id}: no fleet row`);
        continue;
      }
      for (const field of ["kind", "online", "lastSeen", "status"] as const)
        if (x[field] !== h[field] || y[field] !== h[field])
          found.push(`${id}.${field}: fleet ${x[field]}/${y[field]} vs device ${h[field]}`);
      between(`${id}.score`, x.score, y.score, h.score);
      for (const [name, c] of Object.entries(h.components))
        between(`${id}.${name}`, x.components[name] ?? null, y.components[name] ?? null, c.score);
    }
    return found;
  };

  beforeAll(async () => {
    t = await startTestPlatform();
    const key = await api(t, "POST", "/api/keys", { name: "support desk", role: "support" });
    support = key.body.token as string;
    for (const id of devices) {
      const subject = id.replace("kiosk", "cust");
      tokens.set(id, (await provision(t, { id, kind: "kiosk", subject })).token);
      await optIn(t, subject);
    }
  });

  afterAll(async () => {
    for (const c of clients) c.end(true);
    await t.close();
  });

  it("from the first answer after the devices published, and after a restart with history", async () => {
    const now = Date.now();
    for (const id of devices.filter((d) => d !== "kiosk-unplugged")) {
      const subject = id.replace("kiosk", "cust");
      const sad = id.includes("sad");
      const c = await connect(id);
      const pub = (topic: string, payload: unknown) =>
        c.publishAsync(`devices/${id}/${topic}`, JSON.stringify(payload), { qos: 1 });
      for (let i = 0; i < 3; i += 1) {
        const at = now - (30 - i * 10) * MIN;
        await pub(
          "events",
          session(subject, [{ name: "screen_view", props: { screen: "menu" } }]).map((e, j) => ({ ...e, ts: at + j })),
        );
        await pub("telemetry", { ts: at + 5000, metrics: { latency_ms: sad ? 3000 : 120, errors: sad ? 2 : 0 } });
      }
      await pub("feedback", {
        ts: now - 5 * MIN,
        subject,
        rating: sad ? 1 : 5,
        text: sad ? "The screen keeps freezing, terrible." : "Works great.",
      });
    }
    await ingestCaughtUp(t);
    // The very first fleet answer of this platform, right after the news.
    expect(await disagreements()).toEqual([]);

    // A restart: the view is built from history; two devices come back at once, the others stay away.
    for (const c of clients.splice(0)) await c.endAsync();
    await t.restart();
    for (const id of ["kiosk-fine-1", "kiosk-sad-1"]) {
      const c = await connect(id);
      await c.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ metrics: { latency_ms: 130 } }), { qos: 1 });
    }
    await ingestCaughtUp(t);
    expect(await disagreements()).toEqual([]);
    const fleet = await api(t, "GET", "/api/fleet/health?limit=100", undefined, support);
    const online = (fleet.body.devices as Row[]).filter((r) => r.online).map((r) => r.device);
    expect(online.sort()).toEqual(["kiosk-fine-1", "kiosk-sad-1"]);
  });

  it("forgets an erased customer's feedback at once", async () => {
    const before = await fleetRows();
    expect(JSON.stringify(before.get("kiosk-sad-2"))).toContain("The screen keeps freezing");
    expect((await api(t, "DELETE", "/api/subjects/cust-sad-2")).status).toBe(200);
    const after = await fleetRows();
    expect(JSON.stringify(after.get("kiosk-sad-2"))).not.toContain("The screen keeps freezing");
    expect(await disagreements()).toEqual([]);
  });
});
