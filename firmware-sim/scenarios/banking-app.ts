import { appPerCustomer } from "./fleet-plan.ts";
import { event, sessionLoop, telemetry } from "./sessions.ts";
import type { Behaviour, Publish, Scenario } from "./types.ts";

const FAN_SHARE = 0.35;
export const SHARE_PRICE_PATTERN = "opens the share-price page in most sessions (story 2)";
const PAGES = ["accounts", "payments", "cards", "messages", "settings"] as const;
export const SHARE_PRICE_WIDGET = "home.widgets.share_price";

/**
 * Story 2: one banking app per customer. Some customers open the share-price
 * page in most sessions; once it is on their home screen they need the page less.
 */
export const bankingApp: Scenario = {
  name: "banking-app",
  summary: "a banking app per customer; some open the share-price page in most sessions (story 2)",
  minDevices: 1,
  plan(count, ctx) {
    const apps = appPerCustomer(count, ctx, {
      scenario: "banking-app",
      code: "bank",
      kind: "banking-app",
      pattern: SHARE_PRICE_PATTERN,
      share: FAN_SHARE,
    });
    return {
      devices: apps.devices,
      customers: apps.customers,
      behaviour(device, random): Behaviour {
        const { subject, hasPattern: fan, mood, accepted } = apps.customerOf(device, random);
        let onHome = false;
        const next = sessionLoop(random, 0.15, {
          session() {
            mood.session();
            const sharePrice = random.chance(fan ? (onHome ? 0.3 : 0.8) : 0.1);
            const pages: Publish[] = [];
            for (let n = random.int(1, 3); n > 0; n -= 1)
              pages.push(event(subject, "page_view", { page: random.pick(PAGES) }));
            if (sharePrice)
              pages.splice(random.int(0, pages.length), 0, event(subject, "page_view", { page: "share_price" }));
            return [
              event(subject, "session_start", { platform: random.pick(["ios", "android"]) }),
              event(subject, "page_view", { page: "home", share_price_widget: onHome }),
              ...pages,
              ...(random.chance(0.15)
                ? [event(subject, "bill_paid", { bill: `bill-${random.int(1000, 9999)}`, amount: random.int(20, 400) })]
                : []),
              ...mood.troubles(subject),
              ...(random.chance(mood.feedbackChance(0.12)) ? [mood.feedback(subject, "app")] : []),
              event(subject, "session_end", { seconds: random.int(20, 300) }),
            ];
          },
          telemetry: () =>
            telemetry({
              battery: random.int(5, 100),
              latency_ms: mood.latency(),
              app_version: "5.3.0",
            }),
        });
        return {
          next,
          profileChanged(profile) {
            onHome = profile[SHARE_PRICE_WIDGET] === true;
          },
          accepted,
        };
      },
    };
  },
};
