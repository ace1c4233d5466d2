import { hasTrait } from "../random.ts";
import { Mood, RATING_REQUEST, TROUBLED_SHARE } from "./feedback.ts";
import { customerAt, pad, range } from "./fleet-plan.ts";
import { event, round1, sessionLoop, telemetry } from "./sessions.ts";
import type { Behaviour, Publish, Scenario, SimDeviceSpec } from "./types.ts";

const ZOOMER_SHARE = 0.3;
export const ZOOM_PATTERN = "zooms in on every screen (story 4)";
export const FONT_SIZE = "ui.font_size";

/** Each touchpoint of a household: kind, screens, and what it measures. */
const TOUCHPOINTS = {
  tv: { kind: "tv", screens: ["guide", "movies", "series", "search", "settings"] },
  phone: { kind: "phone-app", screens: ["home", "remote", "watchlist", "search"] },
  kiosk: { kind: "kiosk", screens: ["welcome", "menu", "offers", "checkout"] },
} as const;
type Touchpoint = keyof typeof TOUCHPOINTS;

/**
 * Story 4: households with a TV, the phone app and a kiosk of the same
 * customer (provisioned with that customer as `subject`). Some customers zoom
 * in on every screen, on every one of their devices, until large text is on.
 */
export const tv: Scenario = {
  name: "tv",
  summary: "households with a TV, a phone app and a kiosk of one customer; some zoom in on every screen (story 4)",
  minDevices: 3,
  plan(count, ctx) {
    const households = Math.floor(count / 3);
    const zoomer = (h: number) => hasTrait(ctx.seed, "pattern", h, ZOOMER_SHARE);
    const customers = range(households).map((h) =>
      customerAt(ctx, "tv", "home", h, zoomer(h) ? ZOOM_PATTERN : undefined),
    );
    const devices: Array<SimDeviceSpec & { household: number; touchpoint: Touchpoint }> = [];
    for (const h of range(households)) {
      const home = `${ctx.prefix}-home-${pad(h + 1)}`;
      for (const touchpoint of ["tv", "phone", "kiosk"] as const) {
        devices.push({
          id: `${home}-${touchpoint}`,
          kind: TOUCHPOINTS[touchpoint].kind,
          subject: customers[h]!.id,
          scenario: "tv",
          household: h,
          touchpoint,
        });
      }
    }
    // What does not make a whole household is a second TV in the first homes.
    for (const h of range(count - households * 3)) {
      devices.push({
        id: `${ctx.prefix}-home-${pad(h + 1)}-tv2`,
        kind: "tv",
        subject: customers[h]!.id,
        scenario: "tv",
        household: h,
        touchpoint: "tv",
      });
    }
    const byId = new Map(devices.map((d, i) => [d.id, { ...d, index: i }]));
    return {
      devices: devices.map(({ id, kind, subject, scenario }) => ({ id, kind, subject, scenario })),
      customers,
      behaviour(spec, random): Behaviour {
        const device = byId.get(spec.id)!;
        const subject = device.subject!;
        const { screens } = TOUCHPOINTS[device.touchpoint];
        const hot = hasTrait(ctx.seed, "hot", device.index, 0.25);
        const mood = new Mood(random, hasTrait(ctx.seed, "troubled", device.index, ctx.troubled ?? TROUBLED_SHARE));
        let largeText = false;
        const zoom = () =>
          zoomer(device.household) && !largeText ? round1(random.between(1.4, 1.8)) : random.chance(0.1) ? 1.3 : 1;
        const measure = (): Publish => {
          const temp = round1(hot ? random.between(30.5, 33) : random.between(19, 25));
          const latency_ms = mood.latency();
          if (device.touchpoint === "tv")
            return telemetry({ temp, brightness: random.int(40, 100), volume: random.int(0, 60), latency_ms });
          if (device.touchpoint === "kiosk") return telemetry({ temp, paper_level: random.int(0, 100), latency_ms });
          return telemetry({ battery: random.int(5, 100), latency_ms });
        };
        const next = sessionLoop(random, 0.2, {
          session() {
            mood.session();
            const views = range(random.int(2, 4)).map(() =>
              event(subject, "screen_view", { screen: random.pick(screens), zoom: zoom() }),
            );
            return [
              event(subject, "session_start"),
              ...views,
              ...mood.troubles(subject),
              ...(random.chance(mood.feedbackChance(0.08)) ? [mood.feedback(subject, "tv")] : []),
              event(subject, "session_end", { seconds: random.int(60, 3600) }),
            ];
          },
          telemetry: measure,
        });
        return {
          next,
          profileChanged(profile) {
            largeText = profile[FONT_SIZE] === "large";
          },
          accepted: (action) => (action.key === RATING_REQUEST ? [mood.rating(subject, "tv")] : []),
        };
      },
    };
  },
};
