import { atm } from "./atm.ts";
import { bankingApp } from "./banking-app.ts";
import { mixed } from "./mixed.ts";
import { rideApp } from "./ride-app.ts";
import { tv } from "./tv.ts";
import type { Scenario } from "./types.ts";

export type { Action, Behaviour, Planned, Publish, Scenario, SimCustomer, SimDeviceSpec } from "./types.ts";

/** Every scenario `refeed sim --scenario` knows, by name. */
export const scenarios: ReadonlyMap<string, Scenario> = new Map(
  [atm, bankingApp, rideApp, tv, mixed].map((s) => [s.name, s]),
);
