import { createDevice, type AckStatus, type Device } from "../sdk/index.ts";
import type { Random } from "./random.ts";
import type { Action, Behaviour, Publish, SimDeviceSpec } from "./scenarios/index.ts";
import type { CounterName, FleetStats } from "./stats.ts";

export interface DeviceSettings {
  spec: SimDeviceSpec;
  token: string;
  /** mqtt://host:port or ws://host:port/mqtt */
  brokerUrl: string;
  behaviour: Behaviour;
  /** Timing draws (ticks, backoff). */
  random: Random;
  /** The customer's decisions, a stream of their own so they do not depend on timing. */
  answers: Random;
  /** Records per second this device publishes. */
  rate: number;
  /** Share of suggestions the customer accepts. */
  accept: number;
  /** Share of applied changes the customer undoes later. */
  undo: number;
  stats: FleetStats;
  onAction?(device: SimDeviceSpec, action: Action): void;
  /** A problem worth one line (a refused connection); counted in `errors` too. */
  onProblem?(device: SimDeviceSpec, message: string): void;
}

/** A device stops publishing new records while this many QoS 1 publishes wait for their PUBACK. */
const MAX_PENDING = 20;

/**
 * One simulated device or app, built on the device SDK like any product: the SDK speaks the contract
 * (identity, topics, QoS, de-duplication, acks after the PUBACK, reconnects with backoff); this adds
 * the behaviour: it publishes its records at its rate, applies actions, answers suggestions as its
 * customer would, and sometimes undoes a change.
 */
export class SimDevice {
  readonly spec: SimDeviceSpec;
  /** Why the broker refused this device for good, if it did. */
  refused: string | undefined;
  private readonly device: Device;
  private stopped = false;
  private profile: Record<string, unknown> = {};
  /** Records the customer sends next, before the behaviour's own (a rating they were asked for). */
  private readonly urgent: Publish[] = [];
  private tickTimer: NodeJS.Timeout | undefined;
  private readonly later = new Set<NodeJS.Timeout>();
  private stopping: Promise<void> | undefined;

  constructor(private readonly settings: DeviceSettings) {
    this.spec = settings.spec;
    this.device = createDevice({
      url: settings.brokerUrl,
      id: this.spec.id,
      token: settings.token,
      // A persistent session: actions sent while the device was away wait for it at the broker.
      clean: false,
      keepaliveS: 60,
      connectTimeoutMs: 30_000,
      random: () => settings.random.next(),
    });
    const device = this.device;
    device.on("connect", () => {
      settings.stats.connected += 1;
      this.scheduleTick(true);
    });
    device.on("disconnect", () => {
      settings.stats.connected -= 1;
      clearTimeout(this.tickTimer);
      this.tickTimer = undefined;
    });
    device.on("reconnect", () => this.count("reconnects"));
    device.on("error", (err) => {
      if (this.stopped) return;
      if (err.final) {
        this.refused = err.message;
        settings.onProblem?.(this.spec, `refused by the broker, not trying again: ${err.message}`);
      } else if (err.code === "INVALID_ACTION" || err.code === "SUBSCRIPTION_REFUSED") {
        settings.onProblem?.(this.spec, err.message);
      } else {
        settings.onProblem?.(this.spec, `cannot connect to ${settings.brokerUrl}: ${err.message}`);
      }
      this.count("errors");
    });
    device.onState((state) => {
      this.profile = { ...state.profile };
      settings.behaviour.profileChanged?.(this.profile);
      this.count("states");
    });
    device.onAction((action) => this.onAction(action));
  }

  /** Connects; resolves at the first CONNACK, refusal or failure, so that a fleet can ramp up. */
  start(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return this.device.start();
  }

  /** Stops publishing, lets in-flight publishes finish (up to `graceMs`), and disconnects. Idempotent. */
  stop(graceMs = 5000): Promise<void> {
    this.stopping ??= this.shutdown(graceMs);
    return this.stopping;
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.tickTimer);
    for (const t of this.later) clearTimeout(t);
    this.later.clear();
    await this.device.close({ graceMs });
  }

  private scheduleTick(first = false): void {
    if (this.stopped || !this.device.connected || this.tickTimer) return;
    const mean = 1000 / this.settings.rate;
    // The first tick lands anywhere in one period, so a fleet does not publish in lockstep.
    const delay = first ? this.settings.random.next() * mean : mean * (0.5 + this.settings.random.next());
    this.tickTimer = setTimeout(() => {
      this.tickTimer = undefined;
      this.tick();
      this.scheduleTick();
    }, delay);
  }

  private tick(): void {
    // A slow platform slows the device down instead of piling up unacknowledged publishes.
    if (this.device.pending >= MAX_PENDING) return;
    const item = this.urgent.shift() ?? this.settings.behaviour.next();
    const qos = item.channel === "telemetry" ? 0 : 1;
    this.device.publish(item.channel, item.record as never, { qos }).then(
      () => this.count("sent"),
      (err: Error) => {
        if (this.stopped) return;
        this.settings.onProblem?.(this.spec, `publish to ${item.channel} failed: ${err.message}`);
        this.count("errors");
      },
    );
  }

  private onAction(action: Action): void {
    this.count("actions", action.rule);
    this.settings.behaviour.actionArrived?.(action);
    this.settings.onAction?.(this.spec, action);
    switch (action.kind) {
      case "set":
      case "clear":
        this.apply(action);
        this.ack(action, "applied");
        // Another touchpoint accepted this; the customer undoes it there, if at all.
        if (action.kind === "set" && !action.why.startsWith("accepted on ") && this.mayUndo(action))
          this.undoLater(action);
        return;
      case "suggest":
        this.answer(action);
        return;
      default:
        // Notifications go to support tools, never to devices.
        this.ack(action, "failed", `a device cannot carry out '${action.kind}'`);
    }
  }

  /** The customer reads the prompt for a moment, then answers. */
  private answer(action: Action): void {
    const accept = this.settings.answers.chance(this.settings.accept);
    const undo = accept && this.settings.answers.chance(this.settings.undo);
    const thinkMs = Math.min(10_000, (1000 / this.settings.rate) * this.settings.random.between(1, 3));
    this.after(thinkMs, () => {
      if (!accept) return this.ack(action, "declined");
      this.apply(action);
      this.ack(action, "accepted");
      this.urgent.push(...(this.settings.behaviour.accepted?.(action) ?? []));
      if (undo) this.undoLater(action);
    });
  }

  private mayUndo(action: Action): boolean {
    return (this.settings.behaviour.undoable?.(action) ?? true) && this.settings.answers.chance(this.settings.undo);
  }

  /** A while later the customer changes their mind. */
  private undoLater(action: Action): void {
    const waitMs = Math.min(60_000, (1000 / this.settings.rate) * this.settings.random.between(5, 20));
    this.after(waitMs, () => this.ack(action, "undone"));
  }

  private apply(action: Action): void {
    if (action.kind === "clear") delete this.profile[action.key];
    else this.profile[action.key] = action.value;
    this.settings.behaviour.profileChanged?.(this.profile);
  }

  private ack(action: Action, status: AckStatus, reason?: string): void {
    // Once stopping, nothing more is sent: an action arriving now goes unanswered, as on a device
    // switched off mid-message (the action log shows it delivered, never applied).
    if (this.stopped) return;
    this.device.ack(action.id, status, reason).then(
      () => this.count(status, action.rule),
      (err: Error) => {
        if (this.stopped) return;
        this.settings.onProblem?.(this.spec, `ack of ${action.id} failed: ${err.message}`);
        this.count("errors", action.rule);
      },
    );
  }

  private after(ms: number, fn: () => void): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.later.delete(timer);
      if (!this.stopped) fn();
    }, ms);
    this.later.add(timer);
  }

  private count(name: CounterName, rule?: string): void {
    this.settings.stats.count(name, this.spec.scenario, rule);
  }
}
