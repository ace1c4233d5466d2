import { hasTrait } from "../random.ts";
import type { PlanContext, SimCustomer } from "./types.ts";

/** 1 -> "00001": ids sort in fleet order and stay the same when the fleet grows. */
export const pad = (n: number) => String(n).padStart(5, "0");

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** The `index`-th customer of a scenario, opted in or not as the fleet's share says. */
export function customerAt(ctx: PlanContext, scenario: string, code: string, index: number, pattern: string | undefined): SimCustomer {
  return {
    id: `${ctx.prefix}-cust-${code}-${pad(index + 1)}`,
    scenario,
    optedIn: hasTrait(ctx.seed, "opt-in", index, ctx.optIn),
    ...(pattern ? { pattern } : {}),
  };
}
