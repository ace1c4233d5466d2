import { appPerCustomer } from "./fleet-plan.ts";
import { event, round1, sessionLoop, telemetry } from "./sessions.ts";
import type { Behaviour, Scenario } from "./types.ts";

const NEVER_DELIVERY_SHARE = 0.6;
export const NO_DELIVERY_PATTERN = "never picks delivery (story 3)";
export const DELIVERY_MENU = "menu.main.delivery";

/**
 * Story 3: one ride-hailing app per rider. Most riders never pick delivery;
 * the others do now and then, so their menu keeps it.
 */
export const rideApp: Scenario = {
  name: "ride-app",
  summary: "a ride-hailing app per rider; many never pick delivery (story 3, 30 sessions)",
  minDevices: 1,
  plan(count, ctx) {
    const apps = appPerCustomer(count, ctx, {
      scenario: "ride-app",
      code: "ride",
      kind: "ride-app",
      pattern: NO_DELIVERY_PATTERN,
      share: NEVER_DELIVERY_SHARE,
    });
    return {
      devices: apps.devices,
      customers: apps.customers,
      behaviour(device, random): Behaviour {
        const { subject, hasPattern: never, mood, accepted } = apps.customerOf(device, random);
        let deliveryShown = true;
        const next = sessionLoop(random, 0.15, {
          session() {
            mood.session();
            const delivery = deliveryShown && !never && random.chance(0.35);
            const item = delivery ? "delivery" : random.chance(0.85) ? "ride" : "scheduled";
            return [
              event(subject, "session_start", { platform: random.pick(["ios", "android"]) }),
              event(subject, "menu_view", { delivery_shown: deliveryShown }),
              event(subject, "menu_select", { item }),
              item === "delivery"
                ? event(subject, "order_completed", { total: random.int(8, 60) })
                : event(subject, "trip_completed", { fare: random.int(6, 45), minutes: random.int(5, 50) }),
              ...mood.troubles(subject),
              ...(random.chance(mood.feedbackChance(0.1)) ? [mood.feedback(subject, "app")] : []),
              event(subject, "session_end", { seconds: random.int(30, 240) }),
            ];
          },
          telemetry: () =>
            telemetry({
              battery: random.int(5, 100),
              gps_accuracy_m: round1(random.between(3, 40)),
              latency_ms: mood.latency(),
            }),
        });
        return {
          next,
          profileChanged(profile) {
            deliveryShown = profile[DELIVERY_MENU] !== "hidden";
          },
          accepted,
        };
      },
    };
  },
};
