import { describe, expect, it } from "vitest";
import { api, collect, connectDevice, provision } from "../../support/platform.ts";
import { openStream } from "../../support/sse.ts";
import { optIn, publishEvents } from "../../support/story.ts";
import { waitFor } from "../../support/wait.ts";
import type { TestPlatform } from "../../support/platform.ts";

interface Action {
  id: string;
}
interface DeviceState {
  subject: string | null;
  profile: Record<string, { status?: string } | undefined>;
}

const PAID = { bill: "bill-2024-07", status: "paid" };

/** A device's message over HTTP, as an app that cannot keep an MQTT connection sends it. */
async function post(http: string, token: string, channel: string, body: unknown) {
  const res = await fetch(`${http}/api/ingest/${channel}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The story, on whatever platform `world` starts (one node, or a cluster). */
export function story5(world: (...rules: string[]) => () => TestPlatform): void {
  describe("story 5: concurrent everywhere", () => {
    const platform = world("bill-paid");

    it("a bill paid in the web app shows paid on the tablet (WebSocket) at once and on the phone (TCP) when it is back online", async () => {
      const t = platform();
      await optIn(t, "cust-5");
      const web = await provision(t, { id: "web-5", kind: "web-app", subject: "cust-5" });
      const tablet = await provision(t, { id: "tablet-5", kind: "app", subject: "cust-5" });
      const phone = await provision(t, { id: "phone-5", kind: "app", subject: "cust-5" });

      // The phone was online once, then went offline (underground, in flight mode).
      const phoneFirst = await connectDevice(t.mqttUrl, phone.id, phone.token);
      await phoneFirst.subscribeAsync([`devices/${phone.id}/actions`, `devices/${phone.id}/state`], { qos: 1 });
      await phoneFirst.endAsync();
      // The tablet's app speaks MQTT over WebSocket; the web app only HTTP and server-sent events.
      const tabletClient = await connectDevice(t.wsUrl, tablet.id, tablet.token);
      const tabletSeen = collect(tabletClient);
      await tabletClient.subscribeAsync([`devices/${tablet.id}/actions`, `devices/${tablet.id}/state`], { qos: 1 });
      const webStream = await openStream(`${t.http}/api/devices/${web.id}/stream`, web.token);
      expect(webStream.status).toBe(200);
      await waitFor(() => webStream.events.find((e) => e.event === "state"), "the web app's first state");

      const paid = await post(t.http, web.token, "events", {
        subject: "cust-5",
        name: "bill_paid",
        props: { bill: PAID.bill, amount: 120 },
      });
      expect(paid).toEqual({ status: 200, body: { accepted: 1, withheld: 0, refused: [] } });

      // The web app itself: the action and its new state, over SSE.
      const webAction = await waitFor(
        () => webStream.events.find((e) => e.event === "action"),
        "the action on the web app's stream",
      );
      const action = JSON.parse(webAction.data) as Action;
      expect(action).toMatchObject({ rule: "bill-paid", kind: "set", key: "billing.last_paid", value: PAID });
      expect(webAction.id).toBe(action.id);
      await waitFor(
        () =>
          webStream.events.some(
            (e) =>
              e.event === "state" &&
              (JSON.parse(e.data) as DeviceState).profile["billing.last_paid"]?.status === "paid",
          ),
        "the web app's new state",
      );
      // The tablet, online now: the same action, and its retained state.
      const tabletAction = JSON.parse(
        (await waitFor(() => tabletSeen.get(`devices/${tablet.id}/actions`), "the action on the tablet"))[0]!,
      ) as Action;
      expect(tabletAction).toMatchObject({ id: action.id, key: "billing.last_paid", value: PAID });
      await waitFor(
        () =>
          tabletSeen
            .get(`devices/${tablet.id}/state`)
            ?.some((s) => (JSON.parse(s) as DeviceState).profile["billing.last_paid"]?.status === "paid"),
        "the tablet's state",
      );

      // The phone comes back: the action waited for it, and so did its state.
      expect((await api(t, "GET", `/api/devices/${phone.id}`)).body.pendingActions).toBe(1);
      const phoneAgain = await connectDevice(t.mqttUrl, phone.id, phone.token);
      const phoneSeen = collect(phoneAgain);
      await phoneAgain.subscribeAsync([`devices/${phone.id}/actions`, `devices/${phone.id}/state`], { qos: 1 });
      const phoneAction = JSON.parse(
        (
          await waitFor(
            () => phoneSeen.get(`devices/${phone.id}/actions`),
            "the action on the phone after it reconnected",
          )
        )[0]!,
      ) as Action;
      expect(phoneAction).toMatchObject({ id: action.id, value: PAID });
      const phoneState = JSON.parse(
        (await waitFor(() => phoneSeen.get(`devices/${phone.id}/state`), "the phone's retained state"))[0]!,
      ) as DeviceState;
      expect(phoneState).toMatchObject({ device: phone.id, subject: "cust-5", profile: { "billing.last_paid": PAID } });
      await waitFor(
        async () => (await api(t, "GET", `/api/devices/${phone.id}`)).body.pendingActions === 0,
        "the phone's PUBACK to settle its delivery",
      );

      webStream.close();
      await Promise.all([tabletClient.endAsync(), phoneAgain.endAsync()]);
    });

    it("keeps an action pending for an SSE client until it acks over HTTP, sending it again on every new stream", async () => {
      const t = platform();
      await optIn(t, "cust-5b");
      const web = await provision(t, { id: "web-5b", kind: "web-app", subject: "cust-5b" });
      const first = await openStream(`${t.http}/api/devices/${web.id}/stream`, web.token);
      await waitFor(() => first.events.find((e) => e.event === "state"), "the first stream's state");
      await post(t.http, web.token, "events", { subject: "cust-5b", name: "bill_paid", props: { bill: "b-1" } });
      const sent = await waitFor(
        () => first.events.find((e) => e.event === "action"),
        "the action on the first stream",
      );
      // The tab is closed before the app confirmed it: still pending.
      first.close();
      expect((await api(t, "GET", `/api/devices/${web.id}`)).body.pendingActions).toBe(1);

      const second = await openStream(`${t.http}/api/devices/${web.id}/stream`, web.token);
      const again = await waitFor(
        () => second.events.find((e) => e.event === "action"),
        "the pending action on a new stream",
      );
      expect(again.id).toBe(sent.id);
      expect(await post(t.http, web.token, "acks", { action: sent.id, status: "applied" })).toMatchObject({
        status: 200,
        body: { accepted: 1 },
      });
      await waitFor(
        async () => (await api(t, "GET", `/api/devices/${web.id}`)).body.pendingActions === 0,
        "the ack to settle the delivery",
      );
      second.close();

      const third = await openStream(`${t.http}/api/devices/${web.id}/stream`, web.token);
      const state = await waitFor(() => third.events.find((e) => e.event === "state"), "the third stream's state");
      expect((JSON.parse(state.data) as DeviceState).profile).toEqual({
        "billing.last_paid": { bill: "b-1", status: "paid" },
      });
      // Follow a later change to know that the stream is live, then check nothing old was repeated.
      await post(t.http, web.token, "events", { subject: "cust-5b", name: "bill_paid", props: { bill: "b-2" } });
      await waitFor(() => third.events.find((e) => e.event === "action"), "the next action");
      expect(third.events.filter((e) => e.event === "action").map((e) => e.id)).not.toContain(sent.id);
      const lifecycle = (await api(t, "GET", `/api/actions/${sent.id}`)).body.transitions as Array<{
        status: string;
        device: string;
      }>;
      expect(lifecycle.map((x) => x.status)).toEqual(["proposed", "applied"]);
      third.close();
    });

    it("refuses a stream without the device's own token", async () => {
      const t = platform();
      const a = await provision(t, { id: "web-5c" });
      const b = await provision(t, { id: "web-5d" });
      expect((await openStream(`${t.http}/api/devices/${a.id}/stream`, null)).status).toBe(401);
      expect((await openStream(`${t.http}/api/devices/${a.id}/stream`, "rfd.bm9wZQ.wrong")).status).toBe(401);
      expect((await openStream(`${t.http}/api/devices/${a.id}/stream`, b.token)).status).toBe(403);
      await api(t, "POST", `/api/devices/${a.id}/revoke`);
      expect((await openStream(`${t.http}/api/devices/${a.id}/stream`, a.token)).status).toBe(403);
    });

    it("a shared kiosk shows the customer's profile from session_start to session_end, and nobody's after", async () => {
      const t = platform();
      await optIn(t, "cust-5k");
      const phone = await provision(t, { id: "phone-5k", subject: "cust-5k" });
      const kiosk = await provision(t, { id: "kiosk-5k", kind: "kiosk" });
      await post(t.http, phone.token, "events", { subject: "cust-5k", name: "bill_paid", props: { bill: "b-9" } });
      await waitFor(
        async () => (await api(t, "GET", `/api/subjects/cust-5k/profile`)).body.profile,
        "the customer's profile",
      );

      const kioskClient = await connectDevice(t.mqttUrl, kiosk.id, kiosk.token);
      const seen = collect(kioskClient);
      await kioskClient.subscribeAsync(`devices/${kiosk.id}/state`, { qos: 1 });
      const states = () => (seen.get(`devices/${kiosk.id}/state`) ?? []).map((s) => JSON.parse(s) as DeviceState);
      await waitFor(() => states().length > 0, "the kiosk's retained state");
      expect(states().at(-1)).toMatchObject({ subject: null, profile: {} });

      await publishEvents(kioskClient, kiosk.id, [{ name: "session_start", subject: "cust-5k" }]);
      await waitFor(() => states().at(-1)?.subject === "cust-5k", "the kiosk serving the customer");
      expect(states().at(-1)!.profile).toEqual({ "billing.last_paid": { bill: "b-9", status: "paid" } });
      expect((await api(t, "GET", `/api/subjects/cust-5k/devices`)).body.sessions).toEqual([
        { device: kiosk.id, since: expect.any(String) },
      ]);

      await publishEvents(kioskClient, kiosk.id, [{ name: "session_end", subject: "cust-5k" }]);
      await waitFor(() => states().at(-1)?.subject === null, "the kiosk after the session");
      expect(states().at(-1)!.profile).toEqual({});
      await kioskClient.endAsync();
    });

    it("ends open streams when the platform stops, without holding up the shutdown", async () => {
      const t = platform();
      const web = await provision(t, { id: "web-5s" });
      const stream = await openStream(`${t.http}/api/devices/${web.id}/stream`, web.token);
      await waitFor(() => stream.events.find((e) => e.event === "state"), "the stream's state");
      await t.restart();
      await stream.ended;
      expect(stream.events.at(-1)).toMatchObject({ event: "bye", data: JSON.stringify({ reason: "server_shutdown" }) });
      // After the restart the device streams again, with its state.
      const again = await openStream(`${t.http}/api/devices/${web.id}/stream`, web.token);
      await waitFor(() => again.events.find((e) => e.event === "state"), "the state after the restart");
      again.close();
    });
  });
}
