import { describe, expect, it } from "vitest";
import { collect, connectDevice, provision } from "../../support/platform.ts";
import { ack, optIn, publishEvents } from "../../support/story.ts";
import { waitFor } from "../../support/wait.ts";
import type { TestPlatform } from "../../support/platform.ts";

interface Action {
  id: string;
  why: string;
}
interface DeviceState {
  profile: Record<string, unknown>;
}

/** The story, on whatever platform `world` starts (one node, or a cluster). */
export function story4(world: (...rules: string[]) => () => TestPlatform): void {
  describe("story 4: large type reaches every device of the customer", () => {
    const platform = world("large-type");

    it("offers large text on the phone; once accepted the TV, and the kiosk when it comes back, get it", async () => {
      const t = platform();
      await optIn(t, "cust-4");
      const phone = await provision(t, { id: "phone-4", kind: "app", subject: "cust-4" });
      const tv = await provision(t, { id: "tv-4", kind: "tv", subject: "cust-4" });
      const kiosk = await provision(t, { id: "kiosk-4", kind: "kiosk", subject: "cust-4" });

      const phoneClient = await connectDevice(t.mqttUrl, phone.id, phone.token);
      const phoneSeen = collect(phoneClient);
      await phoneClient.subscribeAsync(`devices/${phone.id}/actions`, { qos: 1 });
      const tvClient = await connectDevice(t.wsUrl, tv.id, tv.token);
      const tvSeen = collect(tvClient);
      await tvClient.subscribeAsync([`devices/${tv.id}/actions`, `devices/${tv.id}/state`], { qos: 1 });
      // The kiosk has a persistent session and is offline when the customer says yes.
      const kioskFirst = await connectDevice(t.mqttUrl, kiosk.id, kiosk.token, { clean: false });
      await kioskFirst.subscribeAsync(`devices/${kiosk.id}/actions`, { qos: 1 });
      await kioskFirst.endAsync();

      const screens = Array.from({ length: 10 }, (_, i) => ({
        name: "screen_view",
        subject: "cust-4",
        props: { screen: `s${i}`, zoom: 1.5 },
      }));
      await publishEvents(phoneClient, phone.id, screens);
      const [suggestion] = (
        await waitFor(() => phoneSeen.get(`devices/${phone.id}/actions`), "the suggestion on the phone")
      ).map((a) => JSON.parse(a) as Action);
      expect(suggestion).toMatchObject({
        kind: "suggest",
        key: "ui.font_size",
        value: "large",
        prompt: "Use large text on all your devices?",
      });
      // Asked once, on the phone only.
      expect(tvSeen.get(`devices/${tv.id}/actions`)).toBeUndefined();

      await ack(phoneClient, phone.id, suggestion!.id, "accepted");
      const tvAction = JSON.parse(
        (await waitFor(() => tvSeen.get(`devices/${tv.id}/actions`), "the change on the TV"))[0]!,
      ) as Action;
      expect(tvAction).toMatchObject({ rule: "large-type", kind: "set", key: "ui.font_size", value: "large" });
      expect(tvAction.id).not.toBe(suggestion!.id); // an action of its own, caused by the accepted suggestion
      expect(tvAction.why).toMatch(/^accepted on phone-4: rule large-type/);
      await waitFor(
        () =>
          tvSeen
            .get(`devices/${tv.id}/state`)
            ?.some((s) => (JSON.parse(s) as DeviceState).profile["ui.font_size"] === "large"),
        "the TV's state",
      );

      const kioskAgain = await connectDevice(t.mqttUrl, kiosk.id, kiosk.token, { clean: false });
      const kioskSeen = collect(kioskAgain);
      await kioskAgain.subscribeAsync(`devices/${kiosk.id}/state`, { qos: 1 });
      const kioskAction = JSON.parse(
        (await waitFor(() => kioskSeen.get(`devices/${kiosk.id}/actions`), "the queued change on the kiosk"))[0]!,
      ) as Action;
      expect(kioskAction).toMatchObject({ key: "ui.font_size", value: "large" });
      const kioskState = JSON.parse(
        (await waitFor(() => kioskSeen.get(`devices/${kiosk.id}/state`), "the kiosk's retained state"))[0]!,
      ) as DeviceState;
      expect(kioskState).toMatchObject({ device: kiosk.id, subject: "cust-4", profile: { "ui.font_size": "large" } });

      await Promise.all([phoneClient.endAsync(), tvClient.endAsync(), kioskAgain.endAsync()]);
    });
  });
}
