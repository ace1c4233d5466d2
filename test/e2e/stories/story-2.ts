import { describe, expect, it } from "vitest";
import { api, collect, connectDevice, provision } from "../../support/platform.ts";
import { ack, optIn, publishEvents, session } from "../../support/story.ts";
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
export function story2(world: (...rules: string[]) => () => TestPlatform): void {
  describe("story 2: move it to my home screen?", () => {
    const platform = world("share-price-home");

    it("suggests, changes nothing until yes, applies on yes, and can be undone", async () => {
      const t = platform();
      await optIn(t, "cust-2");
      const app = await provision(t, { id: "bank-app-2", kind: "app", subject: "cust-2" });
      const client = await connectDevice(t.mqttUrl, app.id, app.token);
      const seen = collect(client);
      await client.subscribeAsync([`devices/${app.id}/actions`, `devices/${app.id}/state`], { qos: 1 });
      const states = () =>
        (seen.get(`devices/${app.id}/state`) ?? []).map((s) => (JSON.parse(s) as DeviceState).profile);

      const pages = [
        ["share_price", "accounts"],
        ["accounts"],
        ["share_price"],
        ["share_price", "cards"],
        ["share_price"],
      ];
      for (const visited of pages)
        await publishEvents(
          client,
          app.id,
          session(
            "cust-2",
            visited.map((page) => ({ name: "page_view", props: { page } })),
          ),
        );

      const [suggestion] = (await waitFor(() => seen.get(`devices/${app.id}/actions`), "the suggestion")).map(
        (a) => JSON.parse(a) as Action,
      );
      expect(suggestion).toMatchObject({
        rule: "share-price-home",
        kind: "suggest",
        key: "home.widgets.share_price",
        value: true,
        prompt: "Move share price to your home screen?",
      });
      expect(suggestion!.why).toContain("agg.sessions = 5, agg.with_share_price = 4");
      // A suggestion alone changes no profile.
      expect((await api(t, "GET", `/api/devices/${app.id}`)).body.profile).toEqual({});

      await ack(client, app.id, suggestion!.id, "accepted");
      await waitFor(() => states().some((p) => p["home.widgets.share_price"] === true), "the accepted change in state");
      expect((await api(t, "GET", `/api/devices/${app.id}`)).body.profile).toEqual({
        "home.widgets.share_price": true,
      });

      await ack(client, app.id, suggestion!.id, "undone");
      await waitFor(
        () => states().at(-1)?.["home.widgets.share_price"] === undefined && states().length >= 2,
        "the undo in state",
      );
      expect((await api(t, "GET", `/api/devices/${app.id}`)).body.profile).toEqual({});

      const lifecycle = await api(t, "GET", `/api/actions/${suggestion!.id}`);
      expect((lifecycle.body.transitions as Array<{ status: string }>).map((x) => x.status)).toEqual([
        "proposed",
        "delivered",
        "accepted",
        "applied",
        "undone",
      ]);
      expect(lifecycle.body.status).toBe("undone");
      await client.endAsync();
    });

    it("applies nothing when the customer says no, and does not ask again soon", async () => {
      const t = platform();
      await optIn(t, "cust-2b");
      const app = await provision(t, { id: "bank-app-2b", kind: "app", subject: "cust-2b" });
      const client = await connectDevice(t.mqttUrl, app.id, app.token);
      const seen = collect(client);
      await client.subscribeAsync(`devices/${app.id}/actions`, { qos: 1 });
      for (let i = 0; i < 5; i += 1)
        await publishEvents(
          client,
          app.id,
          session("cust-2b", [{ name: "page_view", props: { page: "share_price" } }]),
        );
      const [suggestion] = (await waitFor(() => seen.get(`devices/${app.id}/actions`), "the suggestion")).map(
        (a) => JSON.parse(a) as Action,
      );
      await ack(client, app.id, suggestion!.id, "declined");
      await waitFor(
        async () => (await api(t, "GET", `/api/actions/${suggestion!.id}`)).body.status === "declined",
        "the decline recorded",
      );
      // Ten more sessions lift the prompt cap, but the decline back-off still holds.
      for (let i = 0; i < 11; i += 1)
        await publishEvents(
          client,
          app.id,
          session("cust-2b", [{ name: "page_view", props: { page: "share_price" } }]),
        );
      expect((await api(t, "GET", `/api/devices/${app.id}`)).body.profile).toEqual({});
      expect(await api(t, "GET", "/api/subjects/cust-2b/participation")).toMatchObject({
        body: { asks: 1, answers: 1, declined: 1 },
      });
      expect(seen.get(`devices/${app.id}/actions`)).toHaveLength(1);
      await client.endAsync();
    });
  });
}
