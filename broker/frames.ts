/**
 * Splits an MQTT byte stream into packets by reading only their fixed headers
 * (type, flags, remaining length), so a packet's size is known before any of
 * its body is buffered. Bodies pass through uncopied unless a caller asks to
 * see the first bytes of one.
 */
export interface FrameHandlers {
  /**
   * A fixed header is complete. Return how many body bytes to capture
   * (0: none), or false to stop reading: the stream is then refused.
   */
  header(type: number, flags: number, length: number): number | false;
  /** The captured start of a body, once that many bytes (or the whole body) arrived. */
  body?(type: number, flags: number, bytes: Buffer): void;
  /** A packet was read to its end. */
  end?(type: number): void;
}

export type FrameError = "malformed_length";

/** MQTT's remaining length is 1-4 bytes of 7 bits each: at most 268,435,455. */
const MAX_LENGTH_BYTES = 4;

export class FrameReader {
  private stopped: FrameError | "refused" | undefined;
  // Fixed header under construction.
  private first = -1;
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  // Body being skipped or captured.
  private remaining = -1;
  private type = 0;
  private flags = 0;
  private capture: Buffer[] = [];
  private want = 0;
  private got = 0;

  constructor(private readonly handlers: FrameHandlers) {}

  /** Why reading stopped, if it did. */
  get error(): FrameError | "refused" | undefined {
    return this.stopped;
  }

  /** Feeds bytes; returns false once the stream is refused or malformed. */
  push(chunk: Buffer): boolean {
    let i = 0;
    while (i < chunk.length && !this.stopped) {
      if (this.remaining < 0) {
        i = this.readHeader(chunk, i);
        continue;
      }
      const take = Math.min(this.remaining, chunk.length - i);
      if (this.want > this.got) {
        const slice = chunk.subarray(i, i + Math.min(take, this.want - this.got));
        this.capture.push(slice);
        this.got += slice.length;
      }
      this.remaining -= take;
      i += take;
      if (this.want > 0 && (this.got >= this.want || this.remaining === 0)) this.emitBody();
      if (this.remaining === 0) this.finish();
    }
    return !this.stopped;
  }

  private readHeader(chunk: Buffer, start: number): number {
    let i = start;
    if (this.first < 0) {
      this.first = chunk[i++]!;
      this.length = 0;
      this.multiplier = 1;
      this.lengthBytes = 0;
    }
    while (i < chunk.length) {
      const byte = chunk[i++]!;
      this.length += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes += 1;
      if ((byte & 0x80) === 0) {
        this.startBody();
        return i;
      }
      if (this.lengthBytes === MAX_LENGTH_BYTES) {
        this.stopped = "malformed_length";
        return chunk.length;
      }
    }
    return i;
  }

  private startBody(): void {
    this.type = this.first >> 4;
    this.flags = this.first & 0x0f;
    this.first = -1;
    const want = this.handlers.header(this.type, this.flags, this.length);
    if (want === false) {
      this.stopped = "refused";
      return;
    }
    this.want = Math.min(want, this.length);
    this.got = 0;
    this.capture = [];
    this.remaining = this.length;
    if (this.want === 0 && want > 0) this.emitBody(); // asked for a body that is empty
    if (this.remaining === 0) this.finish();
  }

  private finish(): void {
    this.remaining = -1;
    this.handlers.end?.(this.type);
  }

  private emitBody(): void {
    const bytes = this.capture.length === 1 ? this.capture[0]! : Buffer.concat(this.capture);
    this.want = 0;
    this.capture = [];
    this.handlers.body?.(this.type, this.flags, bytes);
  }
}

/** MQTT control packet types this broker looks at. */
export const PacketType = { CONNECT: 1, PUBLISH: 3, PUBACK: 4, DISCONNECT: 14 } as const;

/** Topic, packet identifier and payload of a QoS 1/2 PUBLISH body (MQTT 3.1.1: no properties). */
export function decodePublish(
  flags: number,
  body: Buffer,
): { topic: string; messageId: number | undefined; payload: Buffer } | undefined {
  if (body.length < 2) return undefined;
  const topicLength = body.readUInt16BE(0);
  let offset = 2 + topicLength;
  if (body.length < offset) return undefined;
  const topic = body.toString("utf8", 2, offset);
  let messageId: number | undefined;
  if ((flags & 0x06) !== 0) {
    if (body.length < offset + 2) return undefined;
    messageId = body.readUInt16BE(offset);
    offset += 2;
  }
  return { topic, messageId, payload: body.subarray(offset) };
}
