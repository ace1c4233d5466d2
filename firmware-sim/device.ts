import mqtt, { type IConnackPacket, type MqttClient } from "mqtt";
import { Backoff } from "./backoff.ts";
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
/** MQTT 3.1.1 CONNACK codes after which retrying cannot help: bad protocol, identifier, credentials, not authorized. */
const FINAL_REFUSALS = new Set([1, 2, 4, 5]);

const ACTION_KINDS = new Set(["set", "suggest", "clear", "notify"]);

function parseAction(payload: Buffer): Action | undefined {
  try {
    const a = JSON.parse(payload.toString("utf8")) as Partial<Action>;
    if (
      typeof a.id === "string" &&
      typeof a.rule === "string" &&
      typeof a.key === "string" &&
      typeof a.kind === "string" &&
      ACTION_KINDS.has(a.kind)
    )
      return a as Action;
  } catch {
    // counted below as an unreadable action
  }
  return undefined;
}

/**
 * One simulated device or app: an MQTT client with its own identity that
 * publishes its behaviour's records at its rate, applies and acknowledges
 * actions, answers suggestions as its customer would, sometimes undoes a
 * change, and reconnects with backoff when the connection drops.
 */
export class SimDevice {
  readonly spec: SimDeviceSpec;
  /** Why the broker refused this device for good, if it did. */
  refused: string | undefined;
  private client: MqttClient | undefined;
  private connected = false;
  private stopped = false;
  /** QoS 1 publishes waiting for their PUBACK. */
  private pending = 0;
  /** Publishes of any QoS whose callback has not come yet; a clean stop waits for them. */
  private unconfirmed = 0;
  private settled: (() => void) | undefined;
  private lastTs = 0;
  private profile: Record<string, unknown> = {};
  /** Records the customer sends next, before the behaviour's own (a rating they were asked for). */
  private readonly urgent: Publish[] = [];
  private tickTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly later = new Set<NodeJS.Timeout>();
  private readonly backoff: Backoff;
  private readonly topics: { actions: string; state: string };
  private stopping: Promise<void> | undefined;
  /** Set once the connection is being closed: nothing more can be written to it. */
  private ending = false;

  constructor(private readonly settings: DeviceSettings) {
    this.spec = settings.spec;
    this.backoff = new Backoff(() => settings.random.next());
    this.topics = { actions: `devices/${this.spec.id}/actions`, state: `devices/${this.spec.id}/state` };
  }

  /** Connects; resolves at the first CONNACK, refusal or failure, so that a fleet can ramp up. */
  start(): Promise<void> {
    const { spec, token, brokerUrl } = this.settings;
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const client = mqtt.connect(brokerUrl, {
        clientId: spec.id,
        username: spec.id,
        password: token,
        protocolVersion: 4,
        // A persistent session: actions sent while the device was away wait for it at the broker.
        clean: false,
        keepalive: 60,
        connectTimeout: 30_000,
        // Reconnects are ours, with backoff and jitter (mqtt.js retries at a fixed period).
        reconnectPeriod: 0,
        resubscribe: false,
      });
      this.client = client;
      let first = true;
      const settle = () => {
        if (first) {
          first = false;
          resolve();
        }
      };
      client.on("connect", (connack) => {
        this.onConnect(connack);
        settle();
      });
      client.on("message", (topic, payload) => this.onMessage(topic, payload));
      client.on("error", (err: Error & { code?: number | string }) => {
        // While stopping, mqtt.js reports writes racing the close; they are the stop, not a fault.
        if (this.ending) return settle();
        if (typeof err.code === "number" && FINAL_REFUSALS.has(err.code)) {
          this.refused = err.message;
          this.settings.onProblem?.(spec, `refused by the broker, not trying again: ${err.message}`);
        } else {
          this.settings.onProblem?.(spec, `cannot connect to ${brokerUrl}: ${err.message}`);
        }
        this.count("errors");
        settle();
      });
      client.on("close", () => {
        if (this.connected) this.settings.stats.connected -= 1;
        this.connected = false;
        clearTimeout(this.tickTimer);
        this.tickTimer = undefined;
        settle();
        if (!this.stopped && !this.refused) this.scheduleReconnect();
      });
    });
  }

  /** Stops publishing, lets in-flight publishes finish (up to `graceMs`), and disconnects. Idempotent. */
  stop(graceMs = 5000): Promise<void> {
    this.stopping ??= this.shutdown(graceMs);
    return this.stopping;
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.tickTimer);
    clearTimeout(this.reconnectTimer);
    for (const t of this.later) clearTimeout(t);
    this.later.clear();
    const client = this.client;
    if (!client) return;
    const deadline = Date.now() + graceMs;
    // What was published is confirmed (or fails) before the connection closes.
    if (this.unconfirmed > 0 && this.connected) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.settled = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.ending = true;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => client.end(true, () => resolve()), Math.max(0, deadline - Date.now()));
      client.end(false, () => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  private onConnect(connack: IConnackPacket): void {
    this.connected = true;
    this.settings.stats.connected += 1;
    this.backoff.reset();
    // The broker kept our subscriptions if it kept the session; otherwise subscribe (again).
    if (!connack.sessionPresent) {
      this.client!.subscribe([this.topics.actions, this.topics.state], { qos: 1 }, (err, granted) => {
        if (err || granted?.some((g) => g.qos === 128)) {
          this.count("errors");
          this.settings.onProblem?.(this.spec, `subscription refused: ${err?.message ?? "SUBACK 0x80"}`);
        }
      });
    }
    this.scheduleTick(true);
  }

  private scheduleReconnect(): void {
    const delay = this.backoff.next();
    this.reconnectTimer = setTimeout(() => {
      if (this.stopped) return;
      this.count("reconnects");
      this.client!.reconnect();
    }, delay);
  }

  private scheduleTick(first = false): void {
    if (this.stopped || !this.connected || this.tickTimer) return;
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
    if (this.pending >= MAX_PENDING) return;
    this.publish(this.urgent.shift() ?? this.settings.behaviour.next());
  }

  private publish(item: Publish): void {
    // The device's clock: never the same millisecond twice, so every record is its own point.
    const ts = Math.max(Date.now(), this.lastTs + 1);
    this.lastTs = ts;
    const qos = item.channel === "telemetry" ? 0 : 1;
    const topic = `devices/${this.spec.id}/${item.channel}`;
    this.pending += qos;
    this.send(topic, JSON.stringify({ ts, ...item.record }), qos, (err) => {
      this.pending -= qos;
      this.count(err ? "errors" : "sent");
    });
  }

  private send(topic: string, payload: string, qos: 0 | 1, done: (err: Error | undefined) => void): void {
    // Once the connection is closing nothing can be written: an action arriving now goes unanswered,
    // as on a device switched off mid-message (the action log shows it delivered, never applied).
    if (this.ending) return;
    this.unconfirmed += 1;
    this.client!.publish(topic, payload, { qos }, (err) => {
      this.unconfirmed -= 1;
      if (err) this.settings.onProblem?.(this.spec, `publish to ${topic} failed: ${err.message}`);
      done(err);
      if (this.unconfirmed === 0) this.settled?.();
    });
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === this.topics.state) {
      try {
        const state = JSON.parse(payload.toString("utf8")) as { profile?: Record<string, unknown> };
        this.profile = { ...(state.profile ?? {}) };
        this.settings.behaviour.profileChanged?.(this.profile);
        this.count("states");
      } catch {
        this.count("errors");
      }
      return;
    }
    const action = parseAction(payload);
    if (!action) {
      this.count("errors");
      this.settings.onProblem?.(this.spec, `unreadable action: ${payload.toString("utf8").slice(0, 200)}`);
      return;
    }
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

  private ack(
    action: Action,
    status: "applied" | "accepted" | "declined" | "undone" | "failed",
    reason?: string,
  ): void {
    const body = JSON.stringify({ action: action.id, status, ...(reason ? { reason } : {}) });
    // Offline, mqtt.js keeps the QoS 1 ack and sends it at the next connection.
    this.send(`devices/${this.spec.id}/acks`, body, 1, (err) => this.count(err ? "errors" : status, action.rule));
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
