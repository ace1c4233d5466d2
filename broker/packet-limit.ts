import { Duplex } from "node:stream";
import { FrameReader, PacketType, decodePublish, type FrameHandlers } from "./frames.ts";

export type Transport = "tcp" | "tls" | "ws";

/**
 * What the broker wants to know about the packets that cross a connection.
 * One watch serves every connection (each call names its guard), so a
 * connection costs no closures of its own.
 */
export interface PacketWatch {
  /** The client acknowledged a QoS 1 packet it received. */
  puback?(guard: PacketGuard, messageId: number): void;
  /** The client sent DISCONNECT: a clean goodbye. */
  disconnect?(guard: PacketGuard): void;
  /** A QoS 1 PUBLISH was written to the client with this packet identifier. */
  sent?(guard: PacketGuard, messageId: number, topic: string, payload: Buffer): void;
}

export type Refusal = "packet_too_large" | "malformed_length" | "not_connect";

export interface PacketLimitOptions {
  /** Largest remaining length accepted for any packet the client sends. */
  maxPacketBytes: number;
  /** Time from accept to a complete CONNECT packet. */
  connectTimeoutMs: number;
  /** The first packet is a CONNECT within the limit: hand the connection to the broker now. */
  onConnect(guard: PacketGuard): void;
  /** Called once when the client announced a packet over the limit, a malformed length, or began with something else than CONNECT; the connection is then destroyed. */
  onRefused(guard: PacketGuard, reason: Refusal, announced: number | undefined): void;
  /** Called once when CONNECT did not arrive in time; the connection is then destroyed. */
  onTimeout(guard: PacketGuard): void;
  /** Called once when the connection has closed, whatever closed it. */
  onClose?(guard: PacketGuard): void;
  /** Called once when the CONNECT packet has been read in full (its credentials are checked next). */
  onConnectRead?(guard: PacketGuard): void;
  watch?: PacketWatch;
}

/** What the client sends: cut oversized or malformed packets at their header; see PUBACKs and DISCONNECT. */
class Inbound implements FrameHandlers {
  constructor(private readonly guard: PacketGuard) {}

  header(type: number, _flags: number, length: number): number | false {
    return this.guard.inboundHeader(type, length);
  }

  body(type: number, _flags: number, bytes: Buffer): void {
    if (type === PacketType.PUBACK && bytes.length === 2)
      this.guard.options.watch?.puback?.(this.guard, bytes.readUInt16BE(0));
  }

  end(type: number): void {
    this.guard.inboundEnd(type);
  }
}

/** What the broker writes: only QoS 1/2 publishes carry an identifier; they are the platform's own, small messages. */
class Outbound implements FrameHandlers {
  constructor(private readonly guard: PacketGuard) {}

  header(type: number, flags: number, length: number): number {
    return type === PacketType.PUBLISH && (flags & 0x06) !== 0 ? length : 0;
  }

  body(_type: number, flags: number, bytes: Buffer): void {
    const publish = decodePublish(flags, bytes);
    if (publish?.messageId !== undefined)
      this.guard.options.watch?.sent?.(this.guard, publish.messageId, publish.topic, publish.payload);
  }
}

// The transport's events reach its guard through these shared listeners (no closures per connection).
const GUARD = Symbol("refeed.packetGuard");
type Guarded = Duplex & { [GUARD]: PacketGuard };
function onData(this: Guarded, chunk: Buffer) {
  this[GUARD].receive(chunk);
}
function onEnd(this: Guarded) {
  this[GUARD].push(null);
}
function onError(this: Guarded, err: Error) {
  this[GUARD].transportFailed(err);
}
function onInnerClose(this: Guarded) {
  this[GUARD].destroy();
}
function onConnectTimeout(guard: PacketGuard) {
  guard.options.onTimeout(guard);
  guard.destroy();
}
function onGuardClose(this: PacketGuard) {
  this.options.onClose?.(this);
}

/**
 * Sits between a client's transport and Aedes (`aedes.handle(guard)`), which
 * has no maximum packet size and would buffer whatever remaining length a
 * client announces. The guard reads each fixed header as it arrives and cuts
 * the connection as soon as a packet announces more than the limit, before
 * any of its body is buffered. A connection reaches Aedes only once its first
 * packet is a CONNECT within the limit, so a flood of junk connections costs a
 * socket each and no broker client, and the guard times out a CONNECT that
 * does not complete (slow-loris). It also lets the broker see PUBACKs,
 * DISCONNECT and the packet identifiers of what it sends, which Aedes does
 * not expose.
 */
const uncorkGuard = (guard: PacketGuard) => guard.flushCorked();

export class PacketGuard extends Duplex {
  readonly remote: string | undefined;
  private readonly inbound: FrameReader;
  private readonly outbound: FrameReader;
  private announced: number | undefined;
  private refusal: Refusal | undefined;
  /** 0: waiting for the first header; 1: CONNECT announced, handed over; 2: CONNECT read in full. */
  private phase = 0;
  private connectTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly inner: Duplex,
    readonly transport: Transport,
    /** Shared by all the connections of a listener. */
    readonly options: PacketLimitOptions,
  ) {
    super({ allowHalfOpen: false });
    const socket = inner as Duplex & { remoteAddress?: string; remotePort?: number };
    this.remote = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : undefined;
    this.inbound = new FrameReader(new Inbound(this));
    this.outbound = new FrameReader(new Outbound(this));
    this.connectTimer = setTimeout(onConnectTimeout, options.connectTimeoutMs, this);
    (inner as Guarded)[GUARD] = this;
    inner.on("data", onData);
    inner.once("end", onEnd);
    inner.on("error", onError);
    inner.once("close", onInnerClose);
    this.once("close", onGuardClose);
  }

  /**
   * @internal The transport failed (a reset, a broken pipe). Until the CONNECT is handed to Aedes nobody
   * listens for the guard's errors, and an 'error' without a listener ends the process: a load balancer's
   * probe or a device losing its link before CONNECT would take the node down. Then it only closes.
   */
  transportFailed(err: Error): void {
    this.destroy(this.phase === 0 ? undefined : err);
  }

  /** @internal The inbound reader's header handler. */
  inboundHeader(type: number, length: number): number | false {
    if (length > this.options.maxPacketBytes) {
      this.announced = length;
      this.refusal = "packet_too_large";
      return false;
    }
    if (this.phase === 0) {
      if (type !== PacketType.CONNECT) {
        this.refusal = "not_connect"; // [MQTT-3.1.0-1]
        return false;
      }
      this.phase = 1;
    }
    if (type === PacketType.PUBACK) return 2;
    if (type === PacketType.DISCONNECT) this.options.watch?.disconnect?.(this);
    return 0;
  }

  /** @internal The inbound reader's end-of-packet handler. */
  inboundEnd(type: number): void {
    if (type === PacketType.CONNECT && this.phase === 1) {
      this.phase = 2;
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
      this.options.onConnectRead?.(this);
    }
  }

  /** @internal Bytes from the transport. */
  receive(chunk: Buffer): void {
    if (this.destroyed) return;
    const handed = this.phase > 0;
    if (!this.inbound.push(chunk)) {
      this.options.onRefused(
        this,
        this.inbound.error === "malformed_length" ? "malformed_length" : (this.refusal ?? "packet_too_large"),
        this.announced,
      );
      this.destroy();
      return;
    }
    if (!this.push(chunk)) this.inner.pause();
    // Aedes reads what is buffered as soon as it takes the stream.
    if (!handed && this.phase > 0) this.options.onConnect(this);
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.outbound.push(chunk);
    this.corkUntilTicked();
    if (this.inner.write(chunk)) callback();
    else this.inner.once("drain", () => callback());
  }

  /**
   * Aedes writes a packet in pieces (mqtt-packet corks the stream around them);
   * they leave as one write, so a no-delay socket sends one segment per packet
   * or burst of packets, not one per piece.
   */
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    for (const { chunk } of chunks) this.outbound.push(chunk);
    this.corkUntilTicked();
    let flowing = true;
    for (const { chunk } of chunks) flowing = this.inner.write(chunk);
    if (flowing) callback();
    else this.inner.once("drain", () => callback());
  }

  private corked = false;
  /**
   * What is written to one device in one turn of the event loop (a PUBACK, the
   * action it caused, the state that changed with it) leaves in one system
   * call: the socket is corked until the turn's callbacks and promises are done.
   */
  private corkUntilTicked(): void {
    if (this.corked) return;
    this.corked = true;
    this.inner.cork();
    process.nextTick(uncorkGuard, this);
  }

  /** @internal */
  flushCorked(): void {
    this.corked = false;
    this.inner.uncork();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.inner.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.connectTimer);
    this.inner.destroy();
    callback(error);
  }
}
