import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type * as Sdk from "../../sdk/browser.ts";
import { launchBrowser, type Browser } from "../support/browser.ts";
import { bundleDeviceSdk } from "../support/bundle.ts";
import { influxQuery } from "../support/influx.ts";
import { provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

const rule = "id: hot\non: telemetry\nwhen: msg.metrics.temp > 30\nthen:\n  - set: ui.theme\n    value: cool\n";

/** The browser build of the SDK, in Debian's Chromium, as a web app on MQTT over WebSocket at /mqtt. */
describe("device SDK in a browser", () => {
  let t: TestPlatform;
  let browser: Browser;
  let bundle: string;
  beforeAll(async () => {
    [t, browser, bundle] = await Promise.all([startTestPlatform(), launchBrowser(), bundleDeviceSdk()]);
    await writeFile(path.join(t.rulesDir, "hot.yaml"), rule);
    await t.restart();
  }, 90_000);
  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it("connects over /mqtt, publishes, handles the action once, acks it after its PUBACK and shows the new state", async () => {
    const { id, token } = await provision(t, { id: "web-app" });
    const page = await browser.context.newPage();
    const problems: string[] = [];
    page.on("pageerror", (err) => problems.push(err.message));
    // The platform's own origin: a web app served beside its API.
    await page.goto(`${t.http}/healthz`);
    await page.addScriptTag({ content: bundle });
    const seen = await page.evaluate(
      async ({ url, id, token }) => {
        const { connect } = (globalThis as unknown as { RefeedDevice: typeof Sdk }).RefeedDevice;
        const device = await connect({ url, id, token });
        const actions: string[] = [];
        const cool = new Promise<Sdk.State>((resolve) =>
          device.onState((s) => s.profile["ui.theme"] === "cool" && resolve(s)),
        );
        const acked = new Promise<void>((resolve) =>
          device.onAction((a) => {
            actions.push(`${a.kind} ${a.key}=${String(a.value)}`);
            void device.ack(a.id, "applied").then(resolve);
          }),
        );
        await device.telemetry({ metrics: { temp: 35 } });
        const [state] = await Promise.all([cool, acked]);
        await device.close();
        return { actions, profile: state.profile };
      },
      { url: t.wsUrl, id, token },
    );
    expect(problems).toEqual([]);
    expect(seen.actions).toEqual(["set ui.theme=cool"]);
    expect(seen.profile).toEqual({ "ui.theme": "cool" });
    const log = () =>
      influxQuery(t.db, influxql`SELECT status FROM action_log WHERE device = ${id}`).then((rows) =>
        rows.map((r) => r.status),
      );
    await waitFor(async () => (await log()).length >= 3, "the action's lifecycle");
    expect(await log()).toEqual(["proposed", "delivered", "applied"]);
  }, 60_000);
});
