import { describe, expect, it } from "vitest";
import { createParser } from "../../ingest/parse.ts";
import { configSchema } from "../../config/schema.ts";
import { randomFor } from "../../firmware-sim/random.ts";
import { scenarios, type Publish, type SimDeviceSpec } from "../../firmware-sim/scenarios/index.ts";
import { mixedShares } from "../../firmware-sim/scenarios/mixed.ts";

const ctx = { prefix: "sim", seed: 1, optIn: 0.8 };
// The platform's own parser with its default limits: what a device's publish meets.
const parse = createParser(configSchema.parse({}).ingest);

/** A device's records until `sessions` sessions ended (no platform: what the device would publish). */
function drive(scenario: string, devices: number, sessions: number) {
  const plan = scenarios.get(scenario)!.plan(devices, ctx);
  const out = new Map<string, Publish[]>();
  for (const device of plan.devices) {
    const behaviour = plan.behaviour(device, randomFor(1, `behaviour:${device.id}`));
    const records: Publish[] = [];
    for (let ended = 0; ended < sessions;) {
      const p = behaviour.next();
      records.push(p);
      if (p.channel === "events" && p.record.name === "session_end") ended += 1;
    }
    out.set(device.id, records);
  }
  return { plan, out };
}

const events = (records: Publish[], name: string) =>
  records
    .filter((p) => p.channel === "events" && p.record.name === name)
    .map((p) => p.record as { subject?: string; props?: Record<string, unknown> });

/** Records between one session_start and the next, per subject. */
function sessionsOf(records: Publish[]): Publish[][] {
  const sessions: Publish[][] = [];
  for (const p of records) {
    if (p.channel === "events" && p.record.name === "session_start") sessions.push([]);
    sessions.at(-1)?.push(p);
  }
  return sessions;
}

describe("fleet scenarios", () => {
  it("publish only records that the platform's MQTT contract accepts, with positive and negative free text", () => {
    const texts: string[] = [];
    for (const name of ["atm", "banking-app", "ride-app", "tv"]) {
      const { out } = drive(name, 12, 40);
      for (const records of out.values()) {
        for (const p of records) {
          const result = parse(p.channel, JSON.stringify({ ts: Date.now(), ...p.record }), {
            device: "sim-device",
            now: Date.now(),
          });
          expect(result.refused, `${name} ${p.channel} ${JSON.stringify(p.record)}`).toEqual([]);
          if (p.channel === "feedback" && typeof p.record.text === "string") texts.push(p.record.text);
        }
      }
    }
    expect(texts.some((t) => /terrible|awful|frustrating|annoying|hate/i.test(t))).toBe(true);
    expect(texts.some((t) => /great|love|thank|excellent/i.test(t))).toBe(true);
  });

  it("story 1: ATMs are shared, and habitual customers withdraw their usual amount most of the time at several ATMs", () => {
    const { plan, out } = drive("atm", 5, 200);
    expect(plan.devices.every((d) => d.subject === undefined && d.kind === "atm")).toBe(true);
    const byCustomer = new Map<string, { amounts: number[]; atms: Set<string> }>();
    for (const [device, records] of out) {
      for (const w of events(records, "withdrawal")) {
        const entry = byCustomer.get(w.subject!) ?? { amounts: [], atms: new Set() };
        entry.amounts.push(w.props!.amount as number);
        entry.atms.add(device);
        byCustomer.set(w.subject!, entry);
      }
    }
    const habitual = plan.customers.filter((c) => c.pattern);
    expect(habitual.length).toBeGreaterThanOrEqual(plan.customers.length / 2);
    for (const c of habitual) {
      const { amounts, atms } = byCustomer.get(c.id)!;
      const counts = new Map<number, number>();
      for (const a of amounts) counts.set(a, (counts.get(a) ?? 0) + 1);
      expect(Math.max(...counts.values()) / amounts.length, c.id).toBeGreaterThanOrEqual(0.6);
      expect(atms.size, `${c.id} uses more than one ATM`).toBeGreaterThan(1);
    }
  });

  it("story 2: share-price fans open the page in most sessions, other customers seldom", () => {
    const { plan, out } = drive("banking-app", 10, 30);
    const share = (d: SimDeviceSpec) => {
      const sessions = sessionsOf(out.get(d.id)!);
      return (
        sessions.filter((s) =>
          s.some((p) => p.record.name === "page_view" && (p.record.props as { page: string }).page === "share_price"),
        ).length / sessions.length
      );
    };
    const fans = new Set(plan.customers.filter((c) => c.pattern).map((c) => c.id));
    expect(fans.size).toBeGreaterThan(0);
    for (const d of plan.devices) {
      if (fans.has(d.subject!)) expect(share(d), d.id).toBeGreaterThan(0.5);
      else expect(share(d), d.id).toBeLessThan(0.4);
    }
  });

  it("story 3: riders who never pick delivery do not in 30 sessions; the others do", () => {
    const { plan, out } = drive("ride-app", 10, 30);
    const never = new Set(plan.customers.filter((c) => c.pattern).map((c) => c.id));
    expect(never.size).toBeGreaterThan(0);
    expect(never.size).toBeLessThan(10);
    for (const d of plan.devices) {
      const delivery = events(out.get(d.id)!, "menu_select").filter((e) => e.props!.item === "delivery").length;
      if (never.has(d.subject!)) expect(delivery, d.id).toBe(0);
      else expect(delivery, d.id).toBeGreaterThan(0);
    }
  });

  it("story 4: a household's TV, phone app and kiosk share the customer, and zoomers zoom on every screen of every device", () => {
    const { plan, out } = drive("tv", 10, 10);
    expect(plan.devices.map((d) => d.id)).toEqual([
      ...["00001", "00002", "00003"].flatMap((h) => ["tv", "phone", "kiosk"].map((t) => `sim-home-${h}-${t}`)),
      "sim-home-00001-tv2",
    ]);
    for (const h of ["00001", "00002", "00003"]) {
      const subjects = new Set(plan.devices.filter((d) => d.id.includes(h)).map((d) => d.subject));
      expect([...subjects]).toEqual([`sim-cust-home-${h}`]);
    }
    const zoomers = new Set(plan.customers.filter((c) => c.pattern).map((c) => c.id));
    expect(zoomers.size).toBeGreaterThan(0);
    for (const d of plan.devices) {
      const zooms = events(out.get(d.id)!, "screen_view").map((e) => e.props!.zoom as number);
      if (zoomers.has(d.subject!))
        expect(
          zooms.every((z) => z > 1.2),
          d.id,
        ).toBe(true);
      else
        expect(
          zooms.every((z) => z > 1.2),
          d.id,
        ).toBe(false);
    }
  });

  it("behave after an action: zoomers stop zooming with large text, the home screen shows the accepted widget", () => {
    const tv = scenarios.get("tv")!.plan(12, ctx);
    const zoomer = tv.devices.find((d) => tv.customers.find((c) => c.id === d.subject)!.pattern)!;
    const behaviour = tv.behaviour(zoomer, randomFor(1, "zoomer"));
    const views = (n: number) =>
      Array.from({ length: n }, () => behaviour.next())
        .filter((p) => p.record.name === "screen_view")
        .map((p) => (p.record.props as { zoom: number }).zoom);
    expect(views(40).every((z) => z > 1.2)).toBe(true);
    behaviour.profileChanged!({ "ui.font_size": "large" });
    expect(views(80).filter((z) => z <= 1.2).length).toBeGreaterThan(10);

    const bank = scenarios.get("banking-app")!.plan(6, ctx);
    const app = bank.behaviour(bank.devices[0]!, randomFor(1, "bank"));
    app.profileChanged!({ "home.widgets.share_price": true });
    const home = Array.from({ length: 40 }, () => app.next()).filter(
      (p) => (p.record.props as { page?: string } | undefined)?.page === "home",
    );
    expect(home.slice(-1)[0]!.record.props).toMatchObject({ share_price_widget: true });
  });

  it("story 8: about the opt-in share of customers opt in, even in a small fleet", () => {
    const plan = scenarios.get("mixed")!.plan(24, { ...ctx, optIn: 0.75 });
    const share = plan.customers.filter((c) => c.optedIn).length / plan.customers.length;
    expect(share).toBeGreaterThan(0.65);
    expect(share).toBeLessThan(0.85);
  });

  it("a mixed fleet has every scenario from 7 devices on, with whole households", () => {
    for (let n = 7; n <= 300; n += 1) {
      const s = mixedShares(n);
      expect(s.atm + s.bankingApp + s.rideApp + s.tv).toBe(n);
      expect(Math.min(s.atm, s.bankingApp, s.rideApp, s.tv / 3)).toBeGreaterThanOrEqual(1);
      expect(s.tv % 3).toBe(0);
    }
    const plan = scenarios.get("mixed")!.plan(24, ctx);
    expect(new Set(plan.devices.map((d) => d.scenario))).toEqual(new Set(["atm", "banking-app", "ride-app", "tv"]));
    expect(new Set(plan.devices.map((d) => d.id)).size).toBe(24);
    // Every story's pattern occurs among opted-in customers of the demo's fleet.
    expect(new Set(plan.customers.filter((c) => c.optedIn && c.pattern).map((c) => c.pattern)).size).toBe(4);
  });

  it("plan the same fleet for the same seed, and keep ids when the fleet grows", () => {
    const a = scenarios.get("ride-app")!.plan(5, ctx);
    const b = scenarios.get("ride-app")!.plan(8, ctx);
    expect(b.customers.slice(0, 5)).toEqual(a.customers);
    expect(b.devices.slice(0, 5)).toEqual(a.devices);
  });
});
