import { describe, expect, it } from "vitest";
import { api, collect, connectDevice, provision } from "../support/platform.ts";
import { optIn, publishEvents, session, storyPlatform } from "../support/story.ts";
import { waitFor } from "../support/wait.ts";
import { parseAction, parseState } from "../support/messages.ts";

describe("story 3: unused menu items leave the main menu", () => {
  const platform = storyPlatform("hide-unused-delivery");

  it("hides delivery after 30 sessions without it, and brings it back on undo", async () => {
    const t = platform();
    await optIn(t, "rider-1");
    const app = await provision(t, { id: "ride-app-1", kind: "app", subject: "rider-1" });
    const client = await connectDevice(t.mqttUrl, app.id, app.token);
    const seen = collect(client);
    await client.subscribeAsync([`devices/${app.id}/actions`, `devices/${app.id}/state`], { qos: 1 });

    // A delivery in the first session, then 29 sessions of rides: 30 sessions, one with delivery.
    await publishEvents(client, app.id, session("rider-1", [{ name: "menu_select", props: { item: "delivery" } }]));
    for (let i = 0; i < 29; i += 1)
      await publishEvents(client, app.id, session("rider-1", [{ name: "menu_select", props: { item: "ride" } }]));
    const profile = async () => (await api(t, "GET", `/api/devices/${app.id}`)).body.profile as Record<string, unknown>;
    expect(await profile()).toEqual({});
    // The 31st session pushes the delivery session out of the last 30.
    await publishEvents(client, app.id, session("rider-1", [{ name: "menu_select", props: { item: "ride" } }]));

    const [action] = (await waitFor(() => seen.get(`devices/${app.id}/actions`), "the menu change")).map(parseAction);
    expect(action).toMatchObject({
      rule: "hide-unused-delivery",
      kind: "set",
      key: "menu.main.delivery",
      value: "hidden",
    });
    expect(action!.why).toContain("agg.sessions = 30, agg.menu_sessions = 30, agg.delivery_unused = true");
    await waitFor(async () => (await profile())["menu.main.delivery"] === "hidden", "the hidden item in the profile");

    // Reversible: undo from the API (support) restores the menu on the device.
    const undo = await api(t, "POST", `/api/actions/${action!.id}/undo`, {});
    expect(undo).toMatchObject({ status: 200, body: { status: "undone" } });
    expect(await profile()).toEqual({});
    await waitFor(() => {
      const last = seen.get(`devices/${app.id}/state`)?.at(-1);
      return (
        last !== undefined &&
        parseState(last).profile["menu.main.delivery"] === undefined &&
        seen.get(`devices/${app.id}/state`)!.length >= 2
      );
    }, "the restored state");
    expect((await api(t, "POST", `/api/actions/${action!.id}/undo`, {})).status).toBe(409);
    await client.endAsync();
  });
});
