import { atm } from "./atm.ts";
import { bankingApp } from "./banking-app.ts";
import { rideApp } from "./ride-app.ts";
import { tv } from "./tv.ts";
import type { Planned, Scenario } from "./types.ts";

/** How a mixed fleet is shared out: ATMs 20%, ride apps 25%, households 30% (whole ones), banking apps the rest. */
export function mixedShares(count: number): { atm: number; bankingApp: number; rideApp: number; tv: number } {
  const tvDevices = 3 * Math.max(1, Math.floor((count * 0.3) / 3));
  const atmDevices = Math.max(1, Math.round(count * 0.2));
  const rideDevices = Math.max(1, Math.round(count * 0.25));
  return {
    atm: atmDevices,
    bankingApp: count - tvDevices - atmDevices - rideDevices,
    rideApp: rideDevices,
    tv: tvDevices,
  };
}

/** Every other scenario in one fleet, so that every story's pattern occurs at once. */
export const mixed: Scenario = {
  name: "mixed",
  summary: "all of the above in one fleet: ATMs 20%, ride apps 25%, households 30%, banking apps the rest",
  minDevices: 7,
  plan(count, ctx) {
    const shares = mixedShares(count);
    const parts: Array<[Scenario, number]> = [
      [atm, shares.atm],
      [bankingApp, shares.bankingApp],
      [rideApp, shares.rideApp],
      [tv, shares.tv],
    ];
    const planned = parts.map(([scenario, n]) => [scenario.name, scenario.plan(n, ctx)] as const);
    const byScenario = new Map<string, Planned>(planned);
    return {
      devices: planned.flatMap(([, p]) => p.devices),
      customers: planned.flatMap(([, p]) => p.customers),
      behaviour: (device, random) => byScenario.get(device.scenario)!.behaviour(device, random),
    };
  },
};
