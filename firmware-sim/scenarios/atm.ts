import { hasTrait, randomFor } from "../random.ts";
import { Mood, RATING_REQUEST, TROUBLED_SHARE } from "./feedback.ts";
import { customerAt, pad, range } from "./fleet-plan.ts";
import { event, round1, sessionLoop, telemetry } from "./sessions.ts";
import type { Behaviour, Scenario } from "./types.ts";

const AMOUNTS = [20, 50, 100, 200] as const;
/** How many card customers share the fleet's ATMs, per ATM. */
const CUSTOMERS_PER_ATM = 3;
const HABITUAL_SHARE = 0.7;
export const ATM_PATTERN = "withdraws the same amount most of the time (story 1)";

interface Habit {
  usual: number;
  /** Share of withdrawals that are the usual amount. */
  share: number;
}

/**
 * Story 1: ATMs shared by card customers. Most customers withdraw the same
 * amount most of the time, at whichever of the bank's ATMs they walk up to.
 */
export const atm: Scenario = {
  name: "atm",
  summary: "bank ATMs shared by card customers, most of whom withdraw the same amount (story 1)",
  minDevices: 1,
  plan(count, ctx) {
    const devices = range(count).map((i) => ({ id: `${ctx.prefix}-atm-${pad(i + 1)}`, kind: "atm", scenario: "atm" }));
    const habitual = (i: number) => hasTrait(ctx.seed, "pattern", i, HABITUAL_SHARE);
    const customers = range(Math.max(3, count * CUSTOMERS_PER_ATM)).map((i) =>
      customerAt(ctx, "atm", "atm", i, habitual(i) ? ATM_PATTERN : undefined),
    );
    const habits = new Map<string, Habit>(
      customers.map((c, i) => {
        const r = randomFor(ctx.seed, `habit:${c.id}`);
        const usual = r.pick([20, 50, 100, 100, 100, 200]);
        return [c.id, { usual, share: habitual(i) ? r.between(0.75, 0.95) : r.between(0.2, 0.45) }];
      }),
    );
    return {
      devices,
      customers,
      behaviour(device, random): Behaviour {
        const index = devices.findIndex((d) => d.id === device.id);
        const hot = hasTrait(ctx.seed, "hot", index, 0.25);
        const mood = new Mood(random, hasTrait(ctx.seed, "troubled", index, ctx.troubled ?? TROUBLED_SHARE));
        let cash = random.between(40, 100);
        let current: string | undefined;
        /** The withdrawal screen of the card session in progress; an offer fills in what the ATM showed first. */
        let screen: { amount: number; offered_first: number | string | null } = { amount: 0, offered_first: null };
        const next = sessionLoop(random, 0.2, {
          session() {
            const customer = random.pick(customers).id;
            const habit = habits.get(customer)!;
            current = customer;
            mood.session();
            const amount = random.chance(habit.share)
              ? habit.usual
              : random.pick(AMOUNTS.filter((a) => a !== habit.usual));
            cash = cash < 10 ? 100 : cash - amount / 100;
            screen = { amount, offered_first: null };
            return [
              event(customer, "session_start", { card: random.pick(["chip", "contactless"]) }),
              ...(random.chance(0.25) ? [event(customer, "balance_check")] : []),
              event(customer, "withdrawal", screen),
              ...mood.troubles(customer),
              ...(random.chance(mood.feedbackChance(0.1)) ? [mood.feedback(customer, "atm")] : []),
              event(customer, "session_end", { seconds: random.int(25, 120) }),
            ];
          },
          telemetry: () =>
            telemetry({
              cash_level: round1(cash),
              temp: round1(hot ? random.between(30.5, 34) : random.between(18, 26)),
              errors: random.chance(0.03) ? 1 : 0,
              latency_ms: mood.latency(),
            }),
        });
        return {
          next,
          actionArrived(action) {
            const value = action.value;
            if (action.key === "atm.first_amount" && (typeof value === "number" || typeof value === "string"))
              screen.offered_first = value;
          },
          accepted: (action) => (action.key === RATING_REQUEST ? [mood.rating(current, "atm")] : []),
          // The amount offered first is a convenience of one card session, nothing to undo.
          undoable: (action) => action.key !== "atm.first_amount",
        };
      },
    };
  },
};
