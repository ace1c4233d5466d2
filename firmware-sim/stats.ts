/** What the fleet counts, per scenario and per rule. */
export const counterNames = [
  "sent", // records the platform acknowledged (QoS 1) or that were written (QoS 0 telemetry)
  "actions", // actions received
  "applied", // acks: applied
  "accepted",
  "declined",
  "undone",
  "failed",
  "states", // retained state updates received
  "errors", // refused connections, failed connects and publishes, unreadable actions
  "reconnects",
] as const;
export type CounterName = (typeof counterNames)[number];
export type Counts = Record<CounterName, number>;

const zero = (): Counts => Object.fromEntries(counterNames.map((n) => [n, 0])) as Counts;

export interface StatsSnapshot {
  elapsedMs: number;
  devices: number;
  connected: number;
  total: Counts;
  byScenario: Record<string, Counts>;
  /** Actions received and acks sent, per rule that sent them. */
  byRule: Record<string, Counts>;
}

export class FleetStats {
  readonly total = zero();
  private readonly byScenario = new Map<string, Counts>();
  private readonly byRule = new Map<string, Counts>();
  private readonly started = Date.now();
  connected = 0;

  constructor(
    readonly devices: number,
    scenarioNames: readonly string[],
  ) {
    // Scenarios with nothing to show still appear, so a missing one is visible.
    for (const name of scenarioNames) this.byScenario.set(name, zero());
  }

  count(name: CounterName, scenario: string, rule?: string, n = 1): void {
    this.total[name] += n;
    this.bucket(this.byScenario, scenario)[name] += n;
    if (rule !== undefined) this.bucket(this.byRule, rule)[name] += n;
  }

  snapshot(): StatsSnapshot {
    const copy = (m: Map<string, Counts>) => Object.fromEntries([...m].map(([k, v]) => [k, { ...v }]));
    return {
      elapsedMs: Date.now() - this.started,
      devices: this.devices,
      connected: this.connected,
      total: { ...this.total },
      byScenario: copy(this.byScenario),
      byRule: copy(this.byRule),
    };
  }

  private bucket(map: Map<string, Counts>, key: string): Counts {
    let counts = map.get(key);
    if (!counts) map.set(key, (counts = zero()));
    return counts;
  }
}
