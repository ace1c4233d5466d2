import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient, type Packet } from "mqtt";
import { BaseDevice } from "./base.ts";
import { parseAction, parseState } from "./contract.ts";
import { connackError, DeviceError } from "./errors.ts";
import type { ParsedOptions } from "./options.ts";
import type { QueuedRecord } from "./outbox.ts";

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}
const deferred = (): Deferred => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

/**
 * A device over MQTT 3.1.1: TCP, TLS or WebSocket, as mqtt.js speaks them in Node and in browsers.
 * Reconnects are the SDK's (exponential backoff with full jitter), not mqtt.js' fixed period, so a
 * fleet that lost the platform together does not come back in one wave.
 */
export class MqttDevice extends BaseDevice {
  private client: MqttClient | undefined;
  private online = false;
  private inFlight = 0;
  /** Publishes of any QoS whose callback has not come yet; close() waits for them. */
  private unconfirmed = 0;
  private settled: (() => void) | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private readonly topics: { actions: string; state: string };
  /** Incoming QoS 1 publish (packet id) -> the action it carries, until its PUBACK is written. */
  private readonly pubackFor = new Map<number, string>();
  /** Actions whose PUBACK has not been written yet; an ack for one of them waits. */
  private readonly undelivered = new Map<string, Deferred>();

  constructor(options: ParsedOptions) {
    super(options);
    this.topics = { actions: `devices/${options.id}/actions`, state: `devices/${options.id}/state` };
  }

  get connected(): boolean {
    return this.online;
  }

  get pending(): number {
    return this.inFlight;
  }

  async start(): Promise<void> {
    if (this.client || this.closing) return;
    await this.loadStores();
    const o = this.options;
    const settings: IClientOptions = {
      clientId: o.clientId ?? o.id,
      username: o.id,
      password: o.token,
      protocolVersion: 4,
      clean: o.clean,
      keepalive: o.keepaliveS,
      connectTimeout: o.connectTimeoutMs,
      reconnectPeriod: 0,
      resubscribe: false,
      ...((o.tls ?? {}) as Pick<IClientOptions, "ca" | "cert" | "key" | "rejectUnauthorized" | "servername">),
    };
    const client = mqtt.connect(o.url, settings);
    this.client = client;
    // mqtt.js writes the PUBACK of an incoming QoS 1 publish once this calls back; the SDK takes the
    // message here (not from the 'message' event, which comes before) so that the de-duplication id is
    // stored before the PUBACK, and the handler runs after it is queued.
    client.handleMessage = (packet, callback) => {
      this.onPublish(packet, callback);
    };
    client.on("packetsend", (packet: Packet) => this.onPacketSent(packet));
    this.noDelay();
    await new Promise<void>((resolve) => {
      let first = true;
      const settle = () => {
        if (!first) return;
        first = false;
        resolve();
      };
      client.on("connect", (connack) => {
        this.onConnect(connack.sessionPresent);
        settle();
      });
      client.on("error", (err: Error & { code?: number | string }) => {
        settle();
        if (this.closing) return;
        const error =
          typeof err.code === "number"
            ? connackError(err.code)
            : new DeviceError("UNREACHABLE", `cannot connect to ${o.url}: ${err.message}`, { cause: err });
        if (error.final) this.refused = error;
        this.emit("error", error);
      });
      client.on("close", () => {
        settle();
        const was = this.online;
        this.online = false;
        if (was) this.emit("disconnect");
        if (!this.closing && !this.refused) this.scheduleReconnect();
      });
    });
  }

  async close(options: { graceMs?: number } = {}): Promise<void> {
    if (this.closing) return;
    const graceMs = options.graceMs ?? 5000;
    const deadline = Date.now() + graceMs;
    // What was handed to the connection is confirmed (or fails) before it closes.
    if (this.unconfirmed > 0 && this.online) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.settled = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    await this.outbox?.close();
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => client.end(true, () => resolve()), Math.max(0, deadline - Date.now()));
      client.end(false, () => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  protected send(record: QueuedRecord): Promise<void> {
    const client = this.client;
    if (!client || this.closing) return Promise.reject(new DeviceError("CLOSED", "the device is closed"));
    const qos = record.qos;
    this.inFlight += qos;
    this.unconfirmed += 1;
    return new Promise<void>((resolve, reject) => {
      client.publish(`devices/${this.id}/${record.channel}`, record.payload, { qos }, (err) => {
        this.inFlight -= qos;
        this.unconfirmed -= 1;
        if (this.unconfirmed === 0) this.settled?.();
        if (err)
          reject(
            new DeviceError("CONNECTION_LOST", `publish to ${record.channel} not acknowledged: ${err.message}`, {
              cause: err,
            }),
          );
        else resolve();
      });
    });
  }

  protected deliveredFirst(actionId: string): Promise<void> {
    return this.undelivered.get(actionId)?.promise ?? Promise.resolve();
  }

  private onConnect(sessionPresent: boolean): void {
    this.online = true;
    this.attempt = 0;
    this.backoff.reset();
    // The broker kept the subscriptions if it kept the session; otherwise subscribe (again), which
    // also makes the platform send every action still pending for the device.
    if (this.options.subscribe && !sessionPresent) {
      this.client!.subscribe([this.topics.actions, this.topics.state], { qos: 1 }, (err, granted) => {
        if (err || granted?.some((g) => g.qos === 128))
          this.emit(
            "error",
            new DeviceError("SUBSCRIPTION_REFUSED", `subscription refused: ${err?.message ?? "SUBACK 0x80"}`, {
              cause: err,
            }),
          );
      });
    }
    this.emit("connect", { sessionPresent });
    this.drainQueue();
  }

  private scheduleReconnect(): void {
    clearTimeout(this.reconnectTimer);
    const delayMs = this.backoff.next();
    this.attempt += 1;
    const attempt = this.attempt;
    this.reconnectTimer = setTimeout(() => {
      if (this.closing) return;
      this.emit("reconnect", { attempt, delayMs });
      this.client!.reconnect();
      this.noDelay();
    }, delayMs);
  }

  /** TCP_NODELAY on the socket mqtt.js just made (TCP and TLS; `ws` sets it itself, browsers too). */
  private noDelay(): void {
    if (!this.options.noDelay) return;
    (this.client?.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
  }

  private onPublish(packet: IPublishPacket, callback: (err?: Error) => void): void {
    const payload = typeof packet.payload === "string" ? packet.payload : new TextDecoder().decode(packet.payload);
    if (packet.topic === this.topics.state) {
      try {
        const state = parseState(payload);
        if (state) this.setState(state);
      } catch (err) {
        this.emit("error", err as DeviceError);
      }
      return callback();
    }
    if (packet.topic !== this.topics.actions) return callback();
    let action;
    try {
      action = parseAction(payload);
    } catch (err) {
      // Acknowledged all the same: it would come back at every connection and could never be read.
      this.emit("error", err as DeviceError);
      return callback();
    }
    const id = action.id;
    const qos1 = packet.qos > 0 && packet.messageId !== undefined;
    if (qos1) {
      this.pubackFor.set(packet.messageId!, id);
      if (!this.undelivered.has(id)) this.undelivered.set(id, deferred());
    }
    this.arrived(action).then(
      (repeat) => {
        callback();
        if (!qos1) this.wasDelivered(id);
        if (!repeat) this.dispatch(action);
      },
      (err: DeviceError) => {
        // Not stored, so not acknowledged: the platform sends it again and the handler gets it then.
        this.emit("error", err);
        this.pubackFor.delete(packet.messageId!);
        (this.client?.stream as { destroy?: () => void } | undefined)?.destroy?.();
      },
    );
  }

  private onPacketSent(packet: Packet): void {
    if (packet.cmd !== "puback" || packet.messageId === undefined) return;
    const id = this.pubackFor.get(packet.messageId);
    if (id === undefined) return;
    this.pubackFor.delete(packet.messageId);
    this.wasDelivered(id);
  }

  private wasDelivered(actionId: string): void {
    this.undelivered.get(actionId)?.resolve();
    this.undelivered.delete(actionId);
  }
}
