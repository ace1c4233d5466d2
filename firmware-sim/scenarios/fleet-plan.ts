import { hasTrait, type Random } from "../random.ts";
import { Mood, RATING_REQUEST, TROUBLED_SHARE } from "./feedback.ts";
import type { Action, PlanContext, Publish, SimCustomer, SimDeviceSpec } from "./types.ts";

/** 1 -> "00001": ids sort in fleet order and stay the same when the fleet grows. */
export const pad = (n: number) => String(n).padStart(5, "0");

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** The `index`-th customer of a scenario, opted in or not as the fleet's share says. */
export function customerAt(
  ctx: PlanContext,
  scenario: string,
  code: string,
  index: number,
  pattern: string | undefined,
): SimCustomer {
  return {
    id: `${ctx.prefix}-cust-${code}-${pad(index + 1)}`,
    scenario,
    optedIn: hasTrait(ctx.seed, "opt-in", index, ctx.optIn),
    ...(pattern ? { pattern } : {}),
  };
}

/** What an app's behaviour starts from: its customer, whether they show the pattern, and their mood. */
export interface AppCustomer {
  subject: string;
  hasPattern: boolean;
  mood: Mood;
  /** A rating request the customer accepted is answered with a rating. */
  accepted: (action: Action) => Publish[];
}

/**
 * One app install per customer, provisioned with the customer as its `subject`;
 * `share` of the customers show `pattern`.
 */
export function appPerCustomer(
  count: number,
  ctx: PlanContext,
  app: { scenario: string; code: string; kind: string; pattern: string; share: number },
): {
  devices: SimDeviceSpec[];
  customers: SimCustomer[];
  customerOf: (device: SimDeviceSpec, random: Random) => AppCustomer;
} {
  const hasPattern = (i: number) => hasTrait(ctx.seed, "pattern", i, app.share);
  const customers = range(count).map((i) =>
    customerAt(ctx, app.scenario, app.code, i, hasPattern(i) ? app.pattern : undefined),
  );
  const devices = range(count).map((i) => ({
    id: `${ctx.prefix}-${app.code}-${pad(i + 1)}`,
    kind: app.kind,
    subject: customers[i]!.id,
    scenario: app.scenario,
  }));
  const indexOf = new Map(devices.map((d, i) => [d.id, i]));
  return {
    devices,
    customers,
    customerOf(device, random) {
      const index = indexOf.get(device.id)!;
      const subject = device.subject!;
      const mood = new Mood(random, hasTrait(ctx.seed, "troubled", index, ctx.troubled ?? TROUBLED_SHARE));
      return {
        subject,
        hasPattern: hasPattern(index),
        mood,
        accepted: (action) => (action.key === RATING_REQUEST ? [mood.rating(subject, "app")] : []),
      };
    },
  };
}
