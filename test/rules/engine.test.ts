import { describe, expect, it } from "vitest";
import { RuleEngine, type Guards, type Outcome } from "../../rules/engine.ts";
import { loadRule } from "../../rules/load.ts";
import type { DeviceMessage } from "../../ingest/messages.ts";

const DAY = 86_400_000;
const guardConfig = { promptEverySessions: 10, declineBackoffMs: 30 * DAY };
const open: Guards = {
  lastFired: () => undefined,
  lastPrompt: () => undefined,
  declinedAt: () => undefined,
  consent: () => true,
  profile: () => undefined,
};

const telemetry = (
  metrics: Record<string, number | boolean | string>,
  extra: Partial<DeviceMessage> = {},
): DeviceMessage =>
  ({
    kind: "telemetry",
    device: "d1",
    subject: undefined,
    ts: 1_000_000,
    tsFromDevice: false,
    metrics,
    ...extra,
  }) as DeviceMessage;
const event = (
  name: string,
  props: Record<string, number | string | boolean | null>,
  ts: number,
  extra: Partial<DeviceMessage> = {},
): DeviceMessage =>
  ({
    kind: "event",
    device: "atm-1",
    subject: "cust-1",
    ts,
    tsFromDevice: true,
    name,
    props,
    ...extra,
  }) as DeviceMessage;

function engineWith(...texts: string[]): RuleEngine {
  const engine = new RuleEngine(guardConfig);
  engine.setRules(texts.map((t, i) => loadRule(t, `r${i}.yaml`)));
  return engine;
}
const fired = (outcomes: Outcome[]) => outcomes.filter((o): o is Extract<Outcome, { fired: true }> => o.fired);

describe("rule evaluation", () => {
  const hot = `id: hot\non: telemetry\nwhen: msg.metrics.temp > 30\nthen:\n  - set: ui.theme\n    value: cool\n  - set: ui.fan\n    expr: "msg.metrics.temp > 35.0 ? 'max' : 'auto'"\ncooldown: 10m\n`;

  it("fires with every action and explains itself", () => {
    const [outcome] = fired(engineWith(hot).handle(telemetry({ temp: 36 }), 0, open));
    expect(outcome!.actions.map((a) => [a.kind, a.key, a.value])).toEqual([
      ["set", "ui.theme", "cool"],
      ["set", "ui.fan", "max"],
    ]);
    expect(outcome!.actions[0]!.why).toBe("rule hot: msg.metrics.temp > 30 held with msg.metrics.temp = 36");
  });

  it("does not fire when the condition is false or cannot be evaluated", () => {
    const engine = engineWith(hot);
    expect(engine.handle(telemetry({ temp: 20 }), 0, open)).toEqual([
      { rule: "hot", fired: false, reason: "condition_false" },
    ]);
    expect(engine.handle(telemetry({ humidity: 50 }), 0, open)).toEqual([
      expect.objectContaining({ fired: false, reason: "error", detail: expect.stringMatching(/temp/) }),
    ]);
  });

  it("only evaluates the rules of the message's trigger", () => {
    const engine = engineWith(hot, `id: other\non: event:door\nthen:\n  - set: a\n    value: 1\n`);
    expect(engine.handle(telemetry({ temp: 36 }), 0, open).map((o) => o.rule)).toEqual(["hot"]);
  });

  it("holds back within the cooldown of the same target only", () => {
    const engine = engineWith(hot);
    const guards = {
      ...open,
      lastFired: (r: string, target: string) => (r === "hot" && target === "device:d1" ? 1_000 : undefined),
    };
    expect(engine.handle(telemetry({ temp: 36 }), 1_000 + 5 * 60_000, guards)).toEqual([
      { rule: "hot", fired: false, reason: "cooldown" },
    ]);
    expect(fired(engine.handle(telemetry({ temp: 36 }), 1_000 + 11 * 60_000, guards))).toHaveLength(1);
    expect(fired(engine.handle(telemetry({ temp: 36 }, { device: "d2" }), 1_000 + 5 * 60_000, guards))).toHaveLength(1);
  });

  it("needs a subject, and the subject's personalization consent, for a subject-scoped rule", () => {
    const engine = engineWith(
      `id: big\non: telemetry\nscope: subject\nwhen: msg.metrics.zoom >= 1.5\nthen:\n  - set: ui.font\n    value: large\n`,
    );
    expect(engine.handle(telemetry({ zoom: 2 }), 0, open)).toEqual([
      { rule: "big", fired: false, reason: "no_subject" },
    ]);
    const asked: string[] = [];
    const noConsent = { ...open, consent: (s: string, p: string) => (asked.push(`${s}:${p}`), false) };
    expect(engine.handle(telemetry({ zoom: 2 }, { subject: "cust-1" }), 0, noConsent)).toEqual([
      { rule: "big", fired: false, reason: "no_consent" },
    ]);
    expect(asked).toEqual(["cust-1:personalization"]);
    const [outcome] = fired(engine.handle(telemetry({ zoom: 2 }, { subject: "cust-1" }), 0, open));
    expect(outcome!.actions[0]).toMatchObject({ scope: "subject", subject: "cust-1", value: "large" });
  });
});

describe("windowed aggregates", () => {
  const usual = `id: atm-usual
on: event:session_start
scope: subject
aggregates:
  usual: { fn: mode, of: "event:withdrawal", value: msg.props.amount, window: 90d }
  share: { fn: mode_share, of: "event:withdrawal", value: msg.props.amount, window: 90d }
  n: { fn: count, of: "event:withdrawal", window: 90d }
when: agg.n >= 5 && agg.share >= 0.6
then:
  - set: atm.first_amount
    expr: agg.usual
`;

  it("offers the usual amount once there is enough history, with the values in why", () => {
    const engine = engineWith(usual);
    const start = 100 * DAY;
    [100, 100, 50, 100].forEach((amount, i) => engine.observe(event("withdrawal", { amount }, start + i * DAY)));
    expect(engine.handle(event("session_start", {}, start + 5 * DAY), start + 5 * DAY, open)).toEqual([
      { rule: "atm-usual", fired: false, reason: "condition_false" },
    ]);
    engine.observe(event("withdrawal", { amount: 100 }, start + 6 * DAY));
    const [outcome] = fired(
      engine.handle(event("session_start", {}, start + 7 * DAY, { device: "atm-99" }), start + 7 * DAY, open),
    );
    expect(outcome!.actions[0]).toMatchObject({
      key: "atm.first_amount",
      value: 100,
      device: "atm-99",
      subject: "cust-1",
    });
    expect(outcome!.actions[0]!.why).toContain("agg.n = 5, agg.share = 0.8");
  });

  it("forgets what has left a time window", () => {
    const engine = engineWith(usual);
    for (let i = 0; i < 6; i += 1) engine.observe(event("withdrawal", { amount: 100 }, i * DAY));
    expect(fired(engine.handle(event("session_start", {}, 10 * DAY), 10 * DAY, open))).toHaveLength(1);
    expect(engine.handle(event("session_start", {}, 100 * DAY), 100 * DAY, open)[0]).toMatchObject({ fired: false });
  });

  it("counts per customer, not per device", () => {
    const engine = engineWith(usual);
    for (let i = 0; i < 6; i += 1) engine.observe(event("withdrawal", { amount: 20 }, i * DAY, { subject: "cust-2" }));
    expect(engine.handle(event("session_start", {}, 7 * DAY), 7 * DAY, open)[0]).toMatchObject({
      fired: false,
      reason: "condition_false",
    });
  });

  it("tells absence over the last N sessions (unused menu item)", () => {
    const engine = engineWith(`id: hide-delivery
on: event:session_end
scope: subject
aggregates:
  sessions: { fn: sessions, window: last 5 sessions }
  unused: { fn: absent, of: "event:menu_select", where: "msg.props.item == 'delivery'", window: last 5 sessions }
when: agg.sessions >= 5 && agg.unused
then:
  - set: menu.main.delivery
    value: hidden
`);
    let t = 0;
    const session = (items: string[]) => {
      engine.observe(event("session_start", {}, (t += 1000)));
      for (const item of items) engine.observe(event("menu_select", { item }, (t += 1000)));
      return engine.handle(event("session_end", {}, (t += 1000)), t, open);
    };
    expect(session(["delivery"])[0]).toMatchObject({ fired: false });
    for (let i = 0; i < 3; i += 1) expect(session(["ride"])[0]).toMatchObject({ fired: false });
    // Five sessions, one of them with delivery.
    expect(session(["ride"])[0]).toMatchObject({ fired: false });
    // Now the last five sessions have none.
    expect(fired(session(["ride"]))).toHaveLength(1);
  });

  it("computes count, sum, avg, min, max, last and distinct", () => {
    const engine = engineWith(`id: stats
on: event:tick
aggregates:
  c: { fn: count, of: "event:sale", window: 1d }
  s: { fn: sum, of: "event:sale", value: msg.props.v, window: 1d }
  a: { fn: avg, of: "event:sale", value: msg.props.v, window: 1d }
  lo: { fn: min, of: "event:sale", value: msg.props.v, window: 1d }
  hi: { fn: max, of: "event:sale", value: msg.props.v, window: 1d }
  l: { fn: last, of: "event:sale", value: msg.props.v, window: 1d }
  d: { fn: distinct, of: "event:sale", value: msg.props.v, window: 1d }
  e: { fn: count, of: "event:sale", window: last 2 events }
when: "true"
then:
  - set: stats
    expr: "[agg.c, agg.s, agg.a, agg.lo, agg.hi, agg.l, agg.d, agg.e]"
`);
    [4, 2, 4, 10].forEach((v, i) => engine.observe(event("sale", { v }, 1000 + i, { device: "d1" })));
    const [outcome] = fired(engine.handle(event("tick", {}, 2000, { device: "d1" }), 2000, open));
    expect(outcome!.actions[0]!.value).toEqual([4, 20, 5, 2, 10, 10, 3, 2]);
  });

  it("caps prompts relative to sessions and respects a recent decline", () => {
    const engine = engineWith(
      `id: ask\non: event:session_end\nscope: subject\nthen:\n  - suggest: ui.x\n    value: 1\n    prompt: Try x?\n`,
    );
    for (let i = 0; i < 3; i += 1) engine.observe(event("session_start", {}, 1000 + i));
    const guards = { ...open, lastPrompt: () => 500 };
    expect(engine.handle(event("session_end", {}, 2000), 2000, guards)[0]).toMatchObject({
      fired: false,
      reason: "prompt_cap",
      detail: "3 of 10 sessions since the last prompt",
    });
    for (let i = 0; i < 7; i += 1) engine.observe(event("session_start", {}, 3000 + i));
    expect(fired(engine.handle(event("session_end", {}, 4000), 4000, guards))).toHaveLength(1);
    const declined = { ...open, declinedAt: () => 4000 - DAY };
    expect(engine.handle(event("session_end", {}, 4000), 4000, declined)[0]).toMatchObject({
      fired: false,
      reason: "declined_recently",
    });
  });

  it("keeps windows of unchanged sources when the rule set changes, and forgets an erased subject", () => {
    const engine = engineWith(usual);
    for (let i = 0; i < 6; i += 1) engine.observe(event("withdrawal", { amount: 100 }, i * DAY));
    const fresh = engine.setRules([
      loadRule(usual, "again.yaml"),
      loadRule(`id: x\non: event:a\nthen:\n  - set: a\n    value: 1\n`, "x.yaml"),
    ]);
    expect(fresh).toEqual([]);
    expect(fired(engine.handle(event("session_start", {}, 7 * DAY), 7 * DAY, open))).toHaveLength(1);
    engine.forgetSubject("cust-1");
    expect(engine.handle(event("session_start", {}, 7 * DAY), 7 * DAY, open)[0]).toMatchObject({ fired: false });
  });
});

describe("prompt cap across rules", () => {
  it("lets only one of two suggestion rules on the same message ask", () => {
    const engine = new RuleEngine({ promptEverySessions: 10, declineBackoffMs: 0 });
    engine.setRules(
      ["a", "b"].map((id) =>
        loadRule(
          `id: ask-${id}\non: event:session_end\nscope: subject\nthen:\n  - suggest: ui.${id}\n    value: 1\n    prompt: Try ${id}?\n`,
          `${id}.yaml`,
        ),
      ),
    );
    const outcomes = engine.handle(
      { kind: "event", device: "app", subject: "c1", ts: 1, tsFromDevice: true, name: "session_end", props: {} },
      1,
      {
        lastFired: () => undefined,
        lastPrompt: () => undefined,
        declinedAt: () => undefined,
        consent: () => true,
        profile: () => undefined,
      },
    );
    expect(outcomes.map((o) => (o.fired ? "fired" : o.reason))).toEqual(["fired", "prompt_cap"]);
  });
});

describe("no repeats before the profile changes", () => {
  const usual = `id: usual\non: event:session_start\nscope: subject\nthen:\n  - set: atm.first_amount\n    value: 50\n`;
  const reason = (o: Outcome | undefined) => (o?.fired ? "fired" : o?.reason);

  it("sends a customer's set once when two devices start sessions before the first lands", () => {
    const engine = engineWith(usual);
    // The profile is read before either set is applied: both sessions see it without the key.
    const first = engine.handle(event("session_start", {}, 1_000, { device: "atm-1" }), 1_000, open);
    const second = engine.handle(event("session_start", {}, 1_500, { device: "atm-5" }), 1_500, open);
    expect([reason(first[0]), reason(second[0])]).toEqual(["fired", "unchanged"]);
    expect(second[0]).toMatchObject({ detail: "atm.first_amount is already 50" });
    // Another customer is not held by it.
    const other = engine.handle(event("session_start", {}, 1_600, { subject: "cust-2" }), 1_600, open);
    expect(reason(other[0])).toBe("fired");
  });

  it("sends it again once the sent value has had time to land and the profile still lacks it", () => {
    const engine = engineWith(usual);
    engine.handle(event("session_start", {}, 0), 0, open);
    const later = engine.handle(event("session_start", {}, 11 * 60_000), 11 * 60_000, open);
    expect(reason(later[0])).toBe("fired");
  });

  it("does not hold a resend: true rule, and an erased customer's sent values are forgotten", () => {
    const resend = engineWith(`${usual}resend: true\n`);
    resend.handle(event("session_start", {}, 0), 0, open);
    expect(reason(resend.handle(event("session_start", {}, 1), 1, open)[0])).toBe("fired");
    const engine = engineWith(usual);
    engine.handle(event("session_start", {}, 0), 0, open);
    engine.forgetSubject("cust-1");
    expect(reason(engine.handle(event("session_start", {}, 1), 1, open)[0])).toBe("fired");
  });
});
