import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { presenceChanges } from "../../broker/presence-view.ts";
import { erasureChanges } from "../../privacy/erasures.ts";
import { nextMicros } from "../../store/clock.ts";
import { tokenChanges } from "../../subjects/tokens-view.ts";
import { linkChanges, sessionChanges } from "../../subjects/touchpoints-view.ts";
import { api, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";

/** Changes published straight on the platform's feed are what another node's changes look like here. */
describe("views follow changes that arrive on the feed from another node", () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(() => t?.close());

  const issue = async (subject: string) => {
    const res = await api(t, "POST", `/api/subjects/${subject}/tokens`, { label: "phone app" });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body as { id: string; token: string };
  };

  it("a token revoked elsewhere stops working here", async () => {
    const { id, token } = await issue("cust-f1");
    expect((await api(t, "GET", "/api/subjects/cust-f1/tokens", undefined, token)).status).toBe(200);
    await t.platform.changes.publish(tokenChanges, {
      op: "revoked",
      token: id,
      subject: "cust-f1",
      by: "node-b",
      micros: nextMicros(),
    });
    expect((await api(t, "GET", "/api/subjects/cust-f1/tokens", undefined, token)).status).toBe(401);
    const listed = (await api(t, "GET", "/api/subjects/cust-f1/tokens")).body as unknown as Array<{
      id: string;
      revokedAt: string | null;
    }>;
    expect(listed.map((l) => [l.id, typeof l.revokedAt])).toEqual([[id, "string"]]);
  });

  it("a link and a shared-device session made elsewhere show on the customer", async () => {
    const phone = await provision(t, { id: "phone-f2" });
    const atm = await provision(t, { id: "atm-f2" });
    await t.platform.changes.publish(linkChanges, {
      op: "linked",
      device: phone.id,
      subject: "cust-f2",
      by: "node-b",
      micros: nextMicros(),
    });
    await t.platform.changes.publish(sessionChanges, {
      op: "start",
      device: atm.id,
      subject: "cust-f2",
      ts: Date.now(),
    });
    const res = await api(t, "GET", "/api/subjects/cust-f2");
    expect(res.body).toMatchObject({
      devices: [{ device: phone.id }],
      sessions: [{ device: atm.id }],
    });
    expect((await api(t, "GET", `/api/devices/${phone.id}`)).body).toMatchObject({ subject: "cust-f2" });
  });

  it("a device connected on another node shows online here, and offline when it leaves", async () => {
    const kiosk = await provision(t, { id: "kiosk-f3" });
    const micros = nextMicros();
    await t.platform.changes.publish(presenceChanges, {
      op: "connect",
      device: kiosk.id,
      micros,
      connections: 1,
      transport: "tcp",
    });
    expect((await api(t, "GET", `/api/devices/${kiosk.id}`)).body).toMatchObject({
      online: true,
      connections: 1,
      lastSeen: new Date(Math.floor(micros / 1000)).toISOString(),
    });
    await t.platform.changes.publish(presenceChanges, {
      op: "disconnect",
      device: kiosk.id,
      micros: nextMicros(),
      connections: 0,
      reason: "clean",
    });
    expect((await api(t, "GET", `/api/devices/${kiosk.id}`)).body).toMatchObject({ online: false, connections: 0 });
  });

  it("an erasure run elsewhere makes this node forget the customer: tokens, links and sessions", async () => {
    const { token } = await issue("cust-f4");
    const tv = await provision(t, { id: "tv-f4" });
    const atm = await provision(t, { id: "atm-f4" });
    expect((await api(t, "PUT", `/api/subjects/cust-f4/devices/${tv.id}`)).status).toBe(200);
    await t.platform.changes.publish(sessionChanges, {
      op: "start",
      device: atm.id,
      subject: "cust-f4",
      ts: Date.now(),
    });
    expect((await api(t, "GET", "/api/subjects/cust-f4")).body).toMatchObject({
      devices: [{ device: tv.id }],
      sessions: [{ device: atm.id }],
    });

    await t.platform.changes.publish(erasureChanges, {
      op: "started",
      erasure: "era_elsewhere",
      subject: "cust-f4",
      micros: nextMicros(),
    });
    expect((await api(t, "GET", "/api/subjects/cust-f4/tokens", undefined, token)).status).toBe(401);
    await t.platform.changes.publish(erasureChanges, {
      op: "forget",
      erasure: "era_elsewhere",
      subject: "cust-f4",
      micros: nextMicros(),
    });
    expect((await api(t, "GET", "/api/subjects/cust-f4")).body).toMatchObject({ devices: [], sessions: [] });
    expect((await api(t, "GET", `/api/devices/${tv.id}`)).body).toMatchObject({ subject: null });
  });
});
