import { describe, expect, it } from "vitest";
import { api, collect, connectDevice, provision } from "../../support/platform.ts";
import { ack, optIn, publishEvents, session } from "../../support/story.ts";
import { waitFor } from "../../support/wait.ts";
import type { TestPlatform } from "../../support/platform.ts";

/** The story, on whatever platform `world` starts (one node, or a cluster). */
export function story7(world: (...rules: string[]) => () => TestPlatform): void {
  describe("story 7: don't over-ask", () => {
    const platform = world("ask-for-rating");

    it("asks at most once per 10 sessions and measures participation", async () => {
      const t = platform();
      await optIn(t, "cust-7");
      const app = await provision(t, { id: "app-7", kind: "app", subject: "cust-7" });
      const client = await connectDevice(t.mqttUrl, app.id, app.token);
      const seen = collect(client);
      await client.subscribeAsync(`devices/${app.id}/actions`, { qos: 1 });
      const prompts = () => (seen.get(`devices/${app.id}/actions`) ?? []).map((a) => JSON.parse(a) as { id: string });
      const asks = async () => (await api(t, "GET", "/api/subjects/cust-7/participation")).body.asks as number;

      const askedAt: number[] = [];
      for (let n = 1; n <= 25; n += 1) {
        await publishEvents(client, app.id, session("cust-7", [{ name: "ride", props: {} }]));
        // The PUBACK means the rules ran; the participation count tells whether a prompt went out.
        if ((await asks()) > askedAt.length) {
          askedAt.push(n);
          const prompt = await waitFor(() => prompts()[askedAt.length - 1], `prompt ${askedAt.length}`);
          expect(prompt).toMatchObject({
            rule: "ask-for-rating",
            kind: "suggest",
            prompt: "How was your experience? Rate us from 1 to 5.",
          });
          // The customer answers the first two and ignores the third.
          if (askedAt.length <= 2) await ack(client, app.id, prompt.id, "accepted");
        }
      }
      // First after 3 sessions, then no sooner than 10 sessions after the previous prompt.
      expect(askedAt).toEqual([3, 13, 23]);
      expect(prompts()).toHaveLength(3);
      await waitFor(
        async () => (await api(t, "GET", "/api/subjects/cust-7/participation")).body.answers === 2,
        "two answers recorded",
      );
      const participation = (await api(t, "GET", "/api/subjects/cust-7/participation")).body;
      expect(participation).toMatchObject({ asks: 3, answers: 2, accepted: 2, declined: 0 });
      expect(participation.rate).toBeCloseTo(2 / 3);
      await client.endAsync();
    });
  });
}
