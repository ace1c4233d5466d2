/**
 * The fleet `npm run demo` runs: 24 devices and apps of every scenario, two records a second each.
 * A quarter of the plan turns bad after a few sessions (with seed 1: a banking app, a ride app and a
 * household's kiosk): errors and crashes, slow answers, customers who complain. Without them every device
 * stays "good" and the support dashboard has nothing to find.
 */
export const DEMO_FLEET = {
  scenario: "mixed",
  devices: 24,
  rate: 2,
  accept: 0.7,
  undo: 0.1,
  optIn: 0.8,
  troubled: 0.25,
  seed: 1,
  prefix: "demo",
} as const;

/** The demo's devices that turn bad (firmware-sim/random.ts spreads the trait evenly; see the fleet test). */
export const DEMO_TROUBLED = ["demo-bank-00006", "demo-ride-00006", "demo-home-00002-kiosk"] as const;
