import { describe, expect, it } from "vitest";
import { api, collect, connectDevice, provision } from "../../support/platform.ts";
import { optIn, publishEvents } from "../../support/story.ts";
import { runCli } from "../../support/process.ts";
import { atLeast, influxQuery, rowsOnce } from "../../support/influx.ts";
import { waitFor } from "../../support/wait.ts";
import { influxql, micros } from "../../../store/influxql.ts";
import { parseAction } from "../../support/messages.ts";
import type { TestPlatform } from "../../support/platform.ts";

const DAY = 86_400_000;

/** The story, on whatever platform `world` starts (one node, or a cluster). */
export function story1(world: (...rules: string[]) => () => TestPlatform): void {
  describe("story 1: the ATM that knows you", () => {
    const platform = world("atm-usual-amount");

    it("offers the usual amount first at any ATM once there is enough history, also after a restart", async () => {
      const t = platform();
      await optIn(t, "cust-1");
      const atm1 = await provision(t, { id: "atm-lobby", kind: "atm" });
      const atm2 = await provision(t, { id: "atm-station", kind: "atm" });
      const c1 = await connectDevice(t.mqttUrl, atm1.id, atm1.token);
      const seen1 = collect(c1);
      await c1.subscribeAsync(`devices/${atm1.id}/actions`, { qos: 1 });

      // Four visits: 100, 100, 50, 100. Not enough history yet at the fifth card session.
      for (const amount of [100, 100, 50, 100]) {
        await publishEvents(c1, atm1.id, [
          { name: "session_start", subject: "cust-1" },
          { name: "withdrawal", subject: "cust-1", props: { amount } },
          { name: "session_end", subject: "cust-1" },
        ]);
      }
      await publishEvents(c1, atm1.id, [{ name: "withdrawal", subject: "cust-1", props: { amount: 100 } }]);
      await c1.endAsync();

      // History is in InfluxDB; the engine must remember it after a restart.
      await t.restart();

      const c2 = await connectDevice(t.mqttUrl, atm2.id, atm2.token);
      const seen2 = collect(c2);
      await c2.subscribeAsync(`devices/${atm2.id}/actions`, { qos: 1 });
      await publishEvents(c2, atm2.id, [{ name: "session_start", subject: "cust-1" }]);
      const actions = await waitFor(() => seen2.get(`devices/${atm2.id}/actions`), "the usual amount at the other ATM");
      expect(actions).toHaveLength(1);
      const action = parseAction(actions[0]!);
      expect(action).toMatchObject({ rule: "atm-usual-amount", kind: "set", key: "atm.first_amount", value: 100 });
      expect(action.why).toContain("agg.withdrawals = 5, agg.usual_share = 0.8");
      // The earlier sessions at the first ATM offered nothing: too little history.
      expect(seen1.get(`devices/${atm1.id}/actions`)).toBeUndefined();
      await c2.endAsync();
    });

    it("does nothing for a customer who did not opt in", async () => {
      const t = platform();
      const atm = await provision(t, { id: "atm-mall", kind: "atm" });
      const c = await connectDevice(t.mqttUrl, atm.id, atm.token);
      const seen = collect(c);
      await c.subscribeAsync(`devices/${atm.id}/actions`, { qos: 1 });
      const history = Array.from({ length: 6 }, () => ({
        name: "withdrawal",
        subject: "cust-no",
        props: { amount: 20 },
      }));
      await publishEvents(c, atm.id, [...history, { name: "session_start", subject: "cust-no" }]);
      // A marker rule firing proves the platform processed everything before it. Its customer is new
      // here: cust-1's amount is already on their profile, so it would not be sent again.
      await optIn(t, "cust-marker");
      const marker = Array.from({ length: 6 }, () => ({
        name: "withdrawal",
        subject: "cust-marker",
        props: { amount: 70 },
      }));
      await publishEvents(c, atm.id, [...marker, { name: "session_start", subject: "cust-marker" }]);
      const actions = await waitFor(() => seen.get(`devices/${atm.id}/actions`), "the opted-in customer's action");
      expect(actions.map((a) => parseAction(a).value)).toEqual([70]);
      await c.endAsync();
    });

    it("backtests the rule over generated history and names the customers it would have fired for", async () => {
      const t = platform();
      const now = Date.now();
      const atm = await provision(t, { id: "atm-history", kind: "atm" });
      const c = await connectDevice(t.mqttUrl, atm.id, atm.token);
      let published = 0;
      for (const [subject, amounts] of [
        ["cust-a", [40, 40, 40, 40, 40, 40]],
        ["cust-b", [10, 20, 30, 40, 50, 60]],
        ["cust-c", [200, 200, 200, 200, 200]],
      ] as const) {
        await optIn(t, subject);
        const records = amounts.flatMap((amount, i) => [
          { name: "session_start", subject, ts: now - (20 - i * 2) * DAY },
          { name: "withdrawal", subject, props: { amount }, ts: now - (20 - i * 2) * DAY + 60_000 },
        ]);
        await publishEvents(c, atm.id, [...records, { name: "session_start", subject, ts: now - DAY }]);
        published += records.length + 1;
      }
      await c.endAsync();
      // The backtest reads its history from InfluxDB, which has the events moments after their PUBACKs (durable on disk).
      await rowsOnce(t.db, influxql`SELECT props FROM events WHERE device = ${atm.id}`, atLeast(published));

      // The publishes above fire the rule live too; those rows carry the time of their evaluation, which
      // precedes each PUBACK, so rows newer than this are the backtest's (there must be none).
      const backtestStarted = Date.now();
      const logged = async () =>
        (
          await influxQuery(
            t.db,
            influxql`SELECT count(status) FROM action_log WHERE time >= ${micros(backtestStarted * 1000)}`,
          )
        )[0]?.count ?? 0;
      const res = await api(t, "POST", "/api/rules/atm-usual-amount/backtest", { since: "30d" });
      expect(res.status).toBe(200);
      const targets = (res.body.targets as Array<{ target: string; fires: number }>).map((x) => x.target);
      expect(targets).toContain("subject:cust-a");
      expect(targets).toContain("subject:cust-c");
      expect(targets).not.toContain("subject:cust-b");
      expect((res.body.samples as string[])[0]).toMatch(/^rule atm-usual-amount/);
      expect(res.body.fired).toBeGreaterThanOrEqual(2);
      // Nothing was proposed or sent: no action-log row since the backtest started.
      expect(await logged()).toBe(0);

      // The same through the CLI, as a product team runs it.
      const cli = runCli(
        [
          "rules",
          "backtest",
          `${t.rulesDir}/atm-usual-amount.yaml`,
          "--since",
          "30d",
          "--url",
          t.http,
          "--token",
          "test-admin-token-0123456789",
        ],
        {},
      );
      expect(await cli.exited).toBe(0);
      expect(cli.stdout.join("\n")).toMatch(/would have fired \d+ times for \d+ targets/);
      expect(cli.stdout.join("\n")).toContain("subject:cust-a");
    });
  });
}
