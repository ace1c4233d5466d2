import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFleet } from "../../firmware-sim/fleet.ts";
import type { Counts } from "../../firmware-sim/stats.ts";
import { influxQuery } from "../support/influx.ts";
import { ADMIN_TOKEN, ingestCaughtUp, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { runCli } from "../support/process.ts";
import { useExampleRules } from "../support/story.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

/** The example rule of every acceptance story the fleet acts out (story 7's rating prompt included). */
const STORY_RULES = [
  "atm-usual-amount",
  "share-price-home",
  "hide-unused-delivery",
  "large-type",
  "ask-for-rating",
  "cool-theme",
  "bill-paid",
];
const answered = (c: Counts | undefined) => (c ? c.applied + c.accepted + c.declined : 0);

describe("the simulated fleet against the platform", () => {
  let t: TestPlatform;
  let stateDir: string;
  beforeAll(async () => {
    t = await startTestPlatform();
    await useExampleRules(t, ...STORY_RULES);
    await t.restart();
    stateDir = await mkdtemp(path.join(os.tmpdir(), "refeed-sim-state-"));
  });
  afterAll(async () => {
    await t?.close();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  it("acts out every story: each scenario gets actions and answers them, and every story rule fires", async () => {
    const problems: string[] = [];
    const options = {
      scenario: "mixed",
      devices: 24,
      rate: 20,
      url: t.http,
      brokerUrl: t.mqttUrl,
      token: ADMIN_TOKEN,
      accept: 0.6,
      undo: 0.3,
      optIn: 0.8,
      seed: 1,
      prefix: "e2e",
      stateDir,
    };
    const fleet = createFleet(options, { warn: (message) => problems.push(message) });
    // The plan holds every story's pattern among customers who opted in, and some who did not (story 8).
    const optedOut = fleet.plan.customers.filter((c) => !c.optedIn).map((c) => c.id);
    expect(new Set(fleet.plan.customers.filter((c) => c.optedIn && c.pattern).map((c) => c.pattern)).size).toBe(4);
    expect(optedOut.length).toBeGreaterThan(0);

    try {
      await fleet.start();
      expect(fleet.provisioned).toEqual({ created: 24, reused: 0 });
      expect(fleet.consentUnavailable).toBe(false);
      await waitFor(
        () => {
          const s = fleet.stats.snapshot();
          const scenariosDone = Object.values(s.byScenario).every((c) => c.actions > 0 && answered(c) > 0);
          const rulesDone = STORY_RULES.every((rule) => answered(s.byRule[rule]) > 0);
          return scenariosDone && rulesDone && s.total.undone > 0 ? s : false;
        },
        "actions and answers in every scenario and for every story rule",
        45_000,
      );
    } finally {
      await fleet.stop();
    }
    const s = fleet.stats.snapshot();
    expect(Object.keys(s.byScenario).sort()).toEqual(["atm", "banking-app", "ride-app", "tv"]);
    expect(s.total.errors, problems.join("\n")).toBe(0);
    // The broker never dropped a well-behaved device (as Aedes did when it removed the wrong queued packet).
    expect(s.total.reconnects).toBe(0);
    // The fleet's last PUBACKs mean durable on disk: wait until InfluxDB has everything ingest acknowledged.
    await ingestCaughtUp(t);

    // The platform's own record agrees: every story rule proposed actions, and the devices' answers are in the action log.
    const log = await influxQuery(t.db, influxql`SELECT action, status, rule, subject FROM action_log`);
    const ruleOf = new Map(log.filter((r) => r.status === "proposed").map((r) => [r.action, r.rule]));
    for (const rule of STORY_RULES) {
      const statuses = new Set(log.filter((r) => ruleOf.get(r.action) === rule).map((r) => r.status));
      expect(statuses, rule).toContain("proposed");
      expect(
        [...statuses].some((x) => x === "applied" || x === "accepted" || x === "declined"),
        `${rule}: ${[...statuses].join()}`,
      ).toBe(true);
    }
    const statuses = new Set(log.map((r) => r.status));
    for (const status of ["proposed", "delivered", "applied", "accepted", "declined", "undone"])
      expect(statuses).toContain(status);
    // An ATM's card session can end before the ATM took the customer's action: it is withdrawn, not applied for the next customer.
    expect(
      [...statuses].filter(
        (x) => !["proposed", "delivered", "applied", "accepted", "declined", "undone", "withdrawn"].includes(String(x)),
      ),
    ).toEqual([]);
    // Story 8: nothing was proposed for, or linked to, a customer who did not opt in.
    expect(log.filter((r) => optedOut.includes(String(r.subject)))).toEqual([]);
    const linked = (await influxQuery(t.db, influxql`SHOW TAG VALUES FROM events WITH KEY = "subject"`)).map((r) =>
      String(r.value),
    );
    expect(linked.length).toBeGreaterThan(0);
    expect(linked.filter((subject) => optedOut.includes(subject))).toEqual([]);
    // Story 6: free-text feedback, both positive and negative, stored with the device it came from.
    const texts = (await influxQuery(t.db, influxql`SELECT device, text FROM feedback WHERE text =~ /./`)).map((r) =>
      String(r.text),
    );
    expect(texts.some((x) => /terrible|awful|frustrating|annoying|hate|bad/i.test(x))).toBe(true);
    expect(texts.some((x) => /great|love|thank|excellent|good/i.test(x))).toBe(true);
    // The fleet speaks the contract: nothing it sent was refused.
    expect(await influxQuery(t.db, influxql`SELECT * FROM dead_letters`)).toEqual([]);
  }, 60_000);

  it("refeed sim reuses the kept tokens, prints progress, and stops cleanly on Ctrl-C with a summary", async () => {
    const sim = runCli(
      [
        "sim",
        "--url",
        t.http,
        "--mqtt",
        t.mqttUrl,
        "--token",
        ADMIN_TOKEN,
        "--devices",
        "24",
        "--rate",
        "5",
        "--prefix",
        "e2e",
        "--state",
        stateDir,
        "--progress",
        "1s",
        "--json",
      ],
      {},
    );
    await waitFor(
      () => sim.stderr.some((line) => /24\/24 connected · sent [1-9]/.test(line)),
      "a progress line with records sent",
      20_000,
    );
    sim.child.kill("SIGINT");
    expect(await sim.exited).toBe(0);
    const summary = JSON.parse(sim.stdout.join("\n")) as {
      totals: { sent: number; errors: number };
      process: { maxRssMb: number };
    };
    expect(summary).toMatchObject({
      scenario: "mixed",
      devices: 24,
      connected: 24,
      provisioned: { created: 0, reused: 24 },
      consentApi: true,
    });
    expect(summary.totals.sent).toBeGreaterThan(0);
    expect(summary.totals.errors, sim.stderr.filter((l) => !l.startsWith("[")).join("\n")).toBe(0);
    expect(summary.process.maxRssMb).toBeGreaterThan(0);
  });

  it("runs over MQTT over WebSocket for --duration, then stops by itself", async () => {
    const sim = runCli(
      [
        "sim",
        "--url",
        t.http,
        "--ws",
        "--token",
        ADMIN_TOKEN,
        "--scenario",
        "tv",
        "--devices",
        "3",
        "--rate",
        "10",
        "--duration",
        "2s",
        "--prefix",
        "ws",
        "--state",
        stateDir,
      ],
      {},
    );
    expect(await sim.exited).toBe(0);
    const out = sim.stdout.join("\n");
    expect(out).toMatch(/refeed sim: tv, 3 devices/);
    expect(out).toMatch(/3 provisioned, 0 reused; 3 connected when stopped/);
    expect(out).toMatch(/^ {2}sent [1-9]/m);
  });

  it("says what is wrong when the token is refused or the platform is not there", async () => {
    const refused = runCli(
      ["sim", "--url", t.http, "--mqtt", t.mqttUrl, "--token", "wrong-token-0123456789", "--state", stateDir],
      {},
    );
    const away = runCli(["sim", "--url", "http://127.0.0.1:9", "--token", ADMIN_TOKEN, "--state", stateDir], {});
    expect(await refused.exited).toBe(1);
    expect(refused.stderr.join("\n")).toMatch(
      /refeed sim: the platform refused the token \(--token\): GET \/api\/devices: 401/,
    );
    expect(await away.exited).toBe(1);
    expect(away.stderr.join("\n")).toMatch(
      /refeed sim: cannot reach the platform at http:\/\/127\.0\.0\.1:9 \(--url\)/,
    );
  });
});
