import { BaseDevice } from "./base.ts";
import { parseAction, parseState } from "./contract.ts";
import { DeviceError } from "./errors.ts";
import type { ParsedOptions } from "./options.ts";
import type { QueuedRecord } from "./outbox.ts";

/** The typed error of an HTTP answer that is not a success. */
function httpError(status: number, body: string, what: string): DeviceError {
  let detail = body.slice(0, 300);
  try {
    const parsed = JSON.parse(body) as { error?: string; message?: string };
    detail = [parsed.error, parsed.message].filter(Boolean).join(": ") || detail;
  } catch {
    // not JSON: keep the text
  }
  if (status === 401)
    return new DeviceError(
      "BAD_USER_NAME_OR_PASSWORD",
      `${what}: 401 ${detail} (unknown device, or a wrong or rotated token)`,
      {
        status,
      },
    );
  if (status === 403) return new DeviceError("NOT_AUTHORISED", `${what}: 403 ${detail}`, { status });
  if (status === 400 || status === 413)
    return new DeviceError("INVALID_RECORD", `${what}: ${status} ${detail}`, {
      status,
      reason: detail.split(":")[0],
    });
  return new DeviceError("SERVER_UNAVAILABLE", `${what}: ${status} ${detail}`, { status });
}

/**
 * A device for an app that cannot speak MQTT: state and actions come over server-sent events from
 * `GET /api/devices/{id}/stream` (read with fetch, since EventSource cannot send the token), records
 * and acks go as `POST /api/ingest/...`. SSE has no PUBACK: an action stays pending until it is acked,
 * and comes again on every new stream until then; de-duplication by id makes that harmless.
 */
export class HttpDevice extends BaseDevice {
  private readonly base: string;
  private streaming = false;
  private inFlight = 0;
  private abort: AbortController | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private running: Promise<void> | undefined;

  constructor(options: ParsedOptions) {
    super(options);
    this.base = options.url.replace(/\/+$/, "");
  }

  get connected(): boolean {
    return this.streaming;
  }

  get pending(): number {
    return this.inFlight;
  }

  async start(): Promise<void> {
    if (this.running || this.closing) return;
    await this.loadStores();
    await new Promise<void>((resolve) => {
      this.running = this.stream(resolve);
    });
  }

  async close(options: { graceMs?: number } = {}): Promise<void> {
    if (this.closing) return;
    const deadline = Date.now() + (options.graceMs ?? 5000);
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    this.abort?.abort();
    await this.outbox?.close();
    await this.running?.catch(() => undefined);
  }

  protected async send(record: QueuedRecord): Promise<void> {
    this.inFlight += 1;
    try {
      let res: Response;
      try {
        res = await fetch(`${this.base}/api/ingest/${record.channel}`, {
          method: "POST",
          headers: { authorization: `Bearer ${this.options.token}`, "content-type": "application/json" },
          body: record.payload,
        });
      } catch (err) {
        throw new DeviceError("UNREACHABLE", `cannot reach ${this.base}: ${(err as Error).message}`, { cause: err });
      }
      const body = await res.text();
      if (!res.ok) throw httpError(res.status, body, `POST /api/ingest/${record.channel}`);
      const answer = JSON.parse(body) as { refused?: Array<{ reason: string; message: string }> };
      const refused = answer.refused?.[0];
      if (refused)
        throw new DeviceError("INVALID_RECORD", `${record.channel}: ${refused.message}`, { reason: refused.reason });
    } finally {
      this.inFlight -= 1;
    }
  }

  protected deliveredFirst(): Promise<void> {
    // No PUBACK over SSE: the ack itself is the delivery.
    return Promise.resolve();
  }

  /** One stream after another, with backoff between them, until closed or refused for good. */
  private async stream(firstOutcome: () => void): Promise<void> {
    const url = `${this.base}/api/devices/${encodeURIComponent(this.id)}/stream`;
    while (!this.closing && !this.refused) {
      this.abort = new AbortController();
      let error: DeviceError | undefined;
      try {
        const res = await fetch(url, {
          headers: { authorization: `Bearer ${this.options.token}`, accept: "text/event-stream" },
          signal: this.abort.signal,
        });
        if (!res.ok || !res.body) {
          error = httpError(res.status, await res.text(), `GET ${url}`);
        } else {
          this.streaming = true;
          this.attempt = 0;
          this.backoff.reset();
          this.emit("connect", { sessionPresent: false });
          firstOutcome();
          this.drainQueue();
          error = await this.read(res.body);
        }
      } catch (err) {
        if (!this.closing)
          error = new DeviceError("UNREACHABLE", `cannot reach ${url}: ${(err as Error).message}`, { cause: err });
      }
      if (this.streaming) {
        this.streaming = false;
        this.emit("disconnect");
      }
      if (this.closing) break;
      if (error) {
        if (error.final) this.refused = error;
        this.emit("error", error);
      }
      firstOutcome();
      if (this.refused) break;
      const delayMs = this.backoff.next();
      this.attempt += 1;
      const attempt = this.attempt;
      await new Promise<void>((resolve) => (this.reconnectTimer = setTimeout(resolve, delayMs)));
      if (!this.closing) this.emit("reconnect", { attempt, delayMs });
    }
    firstOutcome();
  }

  /** Reads events until the stream ends; a `bye` that means the token no longer works is returned as its error. */
  private async read(body: ReadableStream<Uint8Array>): Promise<DeviceError | undefined> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return undefined;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data: string[] = [];
        for (const line of frame.split("\n")) {
          if (line.startsWith(":")) continue;
          const at = line.indexOf(":");
          const field = at < 0 ? line : line.slice(0, at);
          const text = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
          if (field === "event") event = text;
          else if (field === "data") data.push(text);
        }
        if (data.length === 0) continue;
        const payload = data.join("\n");
        if (event === "bye") {
          const reason = (JSON.parse(payload) as { reason?: string }).reason;
          if (reason === "revoked") return new DeviceError("NOT_AUTHORISED", "the device was revoked");
          if (reason === "token_rotated")
            return new DeviceError("BAD_USER_NAME_OR_PASSWORD", "the device's token was rotated");
          return undefined;
        }
        this.onEvent(event, payload);
      }
    }
  }

  private onEvent(event: string, payload: string): void {
    try {
      if (event === "state") {
        const state = parseState(payload);
        if (state) this.setState(state);
      } else if (event === "action") {
        const action = parseAction(payload);
        this.arrived(action).then(
          (repeat) => {
            if (!repeat) this.dispatch(action);
          },
          (err: DeviceError) => this.emit("error", err),
        );
      }
    } catch (err) {
      this.emit("error", err as DeviceError);
    }
  }
}
