import { Backoff } from "./backoff.ts";
import {
  contractChecker,
  type Action,
  type AckStatus,
  type DataChannel,
  type EventRecord,
  type FeedbackRecord,
  type RecordOf,
  type State,
  type TelemetryRecord,
} from "./contract.ts";
import { Emitter } from "./emitter.ts";
import { DeviceError } from "./errors.ts";
import type { ParsedOptions } from "./options.ts";
import { Outbox, type QueuedRecord } from "./outbox.ts";
import { SeenActions } from "./seen.ts";

export interface PublishOptions {
  /** 1 (default): the promise resolves at the PUBACK, once the platform has it durably. 0: once written. */
  qos?: 0 | 1;
}

export type ActionHandler = (action: Action) => void | Promise<void>;

export type DeviceEvents = {
  /** Connected (again); `sessionPresent`: the broker kept the persistent session. */
  connect: [{ sessionPresent: boolean }];
  disconnect: [];
  /** About to try again, after `delayMs` of backoff. */
  reconnect: [{ attempt: number; delayMs: number }];
  /** A refusal, a failed connect, an unreadable action or state, a failing store; `err.final`: no more retries. */
  error: [DeviceError];
  /** A record dropped from the full offline queue (oldest first). */
  dropped: [QueuedRecord, DeviceError];
  /** An action that was handled already arrived again (a lost PUBACK, a second connection): not handed over. */
  duplicate: [Action];
  /** The retained state changed (or arrived for the first time). */
  state: [State];
};

const noop = () => undefined;
/** Failures after which the same record can succeed later. */
const RETRIABLE = new Set(["UNREACHABLE", "SERVER_UNAVAILABLE", "CONNECTION_LOST"]);

/**
 * What every transport shares: the contract check, `ts` stamping, the offline queue, de-duplication of
 * actions by id and the retained state. Transports (mqtt.ts, http.ts) move bytes and say when they
 * are online.
 */
export abstract class BaseDevice extends Emitter<DeviceEvents> {
  readonly id: string;
  /** Why the platform refused this device for good, once it did; the device stops trying. */
  refused: DeviceError | undefined;
  protected readonly options: ParsedOptions;
  protected readonly backoff: Backoff;
  protected readonly seen: SeenActions;
  protected readonly outbox: Outbox | undefined;
  protected closing = false;
  private readonly check: ReturnType<typeof contractChecker>;
  private lastTs = 0;
  private current: State | undefined;
  private currentKey = "";
  private readonly handlers = new Set<ActionHandler>();
  /** Actions that arrived before any handler was registered; handed over to the first one. */
  private readonly early: Action[] = [];
  private loaded: Promise<void> | undefined;

  constructor(options: ParsedOptions) {
    super();
    this.options = options;
    this.id = options.id;
    this.check = contractChecker({ maxFields: options.maxFields });
    this.backoff = new Backoff(options.random ?? Math.random, options.backoff.baseMs, options.backoff.maxMs);
    this.seen = new SeenActions(options.seen.max, options.seen.store);
    this.outbox = options.queue
      ? new Outbox(options.queue.max, options.queue.store, (err, record) =>
          record ? this.emit("dropped", record, err) : this.emit("error", err),
        )
      : undefined;
  }

  /** Whether the transport is connected now. */
  abstract get connected(): boolean;
  /** Publishes waiting for their PUBACK (or HTTP answer). */
  abstract get pending(): number;
  /** Connects; resolves at the first connection, refusal or failure (later ones are events). */
  abstract start(): Promise<void>;
  abstract close(options?: { graceMs?: number }): Promise<void>;
  /** Puts one record on the wire; resolves once the platform has it (QoS 1) or it is written (QoS 0). */
  protected abstract send(record: QueuedRecord): Promise<void>;
  /** Resolves once the action's PUBACK was written (MQTT), so an ack cannot overtake it on the wire. */
  protected abstract deliveredFirst(actionId: string): Promise<void>;

  /** Records waiting in the offline queue. */
  get queued(): number {
    return this.outbox?.size ?? 0;
  }

  /** The retained personalization profile, once it arrived. */
  get state(): State | undefined {
    return this.current;
  }

  telemetry(record: TelemetryRecord, options?: PublishOptions): Promise<void> {
    return this.publish("telemetry", record, options);
  }

  event(record: EventRecord, options?: PublishOptions): Promise<void> {
    return this.publish("events", record, options);
  }

  feedback(record: FeedbackRecord, options?: PublishOptions): Promise<void> {
    return this.publish("feedback", record, options);
  }

  /** Any record of the contract, checked against it before it is sent. */
  publish<C extends DataChannel>(channel: C, record: RecordOf[C], options?: PublishOptions): Promise<void> {
    let payload: string;
    try {
      this.check(channel, record);
      payload = this.stamp(record);
      this.checkSize(channel, payload);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return this.enqueue({ channel, payload, qos: options?.qos ?? 1 });
  }

  /**
   * Handles each action once: a repeat of an id already handed over (after a lost PUBACK, a reconnect,
   * a restart with a `seen.store`, a second connection) is acknowledged to the broker and not passed on.
   */
  onAction(handler: ActionHandler): () => void {
    this.handlers.add(handler);
    for (const action of this.early.splice(0)) this.dispatch(action);
    return () => this.handlers.delete(handler);
  }

  /** Listens to state changes; called at once with the current state if there is one. */
  onState(listener: (state: State) => void): () => void {
    if (this.current) listener(this.current);
    return this.on("state", listener);
  }

  /**
   * Tells the platform what became of an action. Over MQTT it waits until the action's PUBACK went
   * out first: an ack that overtakes it can leave `delivered` out of the action's lifecycle.
   */
  async ack(actionId: string, status: AckStatus, reason?: string): Promise<void> {
    const record = { action: actionId, status, ...(reason !== undefined ? { reason } : {}) };
    this.check("acks", record);
    await this.deliveredFirst(actionId);
    return this.enqueue({ channel: "acks", payload: JSON.stringify(record), qos: 1 });
  }

  protected loadStores(): Promise<void> {
    this.loaded ??= Promise.all([this.seen.load(), this.outbox?.load()]).then(noop);
    return this.loaded;
  }

  /** A new action off the wire: true when it is a repeat. Resolves once a `seen.store` has its id. */
  protected async arrived(action: Action): Promise<boolean> {
    if (this.seen.has(action.id)) {
      this.emit("duplicate", action);
      return true;
    }
    await this.seen.add(action.id);
    return false;
  }

  /** Hands a first-time action to the handlers (after its PUBACK was queued). */
  protected dispatch(action: Action): void {
    if (this.handlers.size === 0) {
      this.early.push(action);
      return;
    }
    for (const handler of this.handlers) {
      try {
        const result = handler(action);
        if (result instanceof Promise)
          result.catch((err: unknown) =>
            queueMicrotask(() => {
              throw err;
            }),
          );
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  protected setState(state: State): void {
    const key = JSON.stringify([state.subject, state.profile]);
    if (this.current && key === this.currentKey) return;
    this.current = state;
    this.currentKey = key;
    this.emit("state", state);
  }

  /** Sends what the offline queue holds, in order, paced. */
  protected drainQueue(): void {
    const queue = this.options.queue;
    if (!this.outbox || !queue || this.outbox.size === 0) return;
    void this.outbox.drain({
      rate: queue.rate,
      window: queue.window,
      send: (record) => this.send(record),
      online: () => this.connected && !this.closing,
    });
  }

  private enqueue(record: QueuedRecord): Promise<void> {
    if (this.closing) return Promise.reject(new DeviceError("CLOSED", "the device is closed"));
    let sent: Promise<void>;
    if (this.outbox && (this.outbox.size > 0 || !this.connected)) {
      // Behind what is queued, so records reach the platform in the order they were made.
      sent = this.outbox.push(record);
      if (this.connected) this.drainQueue();
    } else if (!this.connected) {
      return Promise.reject(
        new DeviceError("NOT_CONNECTED", "not connected, and no offline queue (the `queue` option) to keep the record"),
      );
    } else {
      const outbox = this.outbox;
      sent = this.send(record);
      // A platform that could not take it now (unreachable, its spool full): keep it, if there is a queue.
      if (outbox)
        sent = sent.catch((err: unknown) => {
          if (err instanceof DeviceError && RETRIABLE.has(err.code) && !this.closing) {
            const queued = outbox.push(record);
            if (this.connected) this.drainQueue();
            return queued;
          }
          throw err;
        });
    }
    // A caller that does not await a dropped record must not crash the process; one that does still sees why.
    sent.catch(noop);
    return sent;
  }

  private checkSize(channel: string, payload: string): void {
    const max = this.options.maxPayloadBytes;
    // UTF-8 takes at most 3 bytes per UTF-16 unit: only a long payload needs counting.
    if (payload.length * 3 <= max) return;
    const bytes = new TextEncoder().encode(payload).length;
    if (bytes > max)
      throw new DeviceError("INVALID_RECORD", `${channel}: payload of ${bytes} bytes exceeds ${max}`, {
        reason: "too_large",
      });
  }

  /** The record's JSON, with the device clock's `ts` when it has none. */
  private stamp(record: object): string {
    if (!this.options.stampTs || (record as { ts?: unknown }).ts !== undefined) return JSON.stringify(record);
    const ts = Math.max(Date.now(), this.lastTs + 1);
    this.lastTs = ts;
    return JSON.stringify({ ts, ...record });
  }
}
