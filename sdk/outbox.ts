import { DeviceError } from "./errors.ts";

/** One record waiting to be sent, as it goes on the wire. */
export interface QueuedRecord {
  channel: "telemetry" | "events" | "feedback" | "acks";
  /** The JSON payload, `ts` already stamped: a record sent twice is stored once. */
  payload: string;
  qos: 0 | 1;
}

/** Where the offline queue is kept between runs (a file, localStorage, the device's flash). */
export interface QueueStore {
  load(): Promise<readonly QueuedRecord[]> | readonly QueuedRecord[];
  save(records: readonly QueuedRecord[]): Promise<void> | void;
}

interface Entry {
  record: QueuedRecord;
  /** Handed to the connection, waiting for its PUBACK: it stays in the store until then. */
  sending: boolean;
  resolve?: () => void;
  reject?: (err: DeviceError) => void;
}

export interface DrainOptions {
  /** Records per second at most, under the broker's per-device publish rate. */
  rate: number;
  /** Records waiting for their PUBACK at once at most. */
  window: number;
  /** Sends one record; resolves at its PUBACK (QoS 1) or once written (QoS 0). */
  send(record: QueuedRecord): Promise<void>;
  /** Whether sending makes sense now; the drain stops when this turns false and starts again at the next connect. */
  online(): boolean;
}

/**
 * The bounded offline queue. Records published while the device is offline (and, so that the order
 * holds, while older ones are still queued) wait here and are sent oldest first when it is back,
 * paced under the broker's rate limit. When it is full the **oldest** record not yet handed to the
 * connection is dropped for the new one: a device that was offline for long keeps its latest
 * readings, which are what a rule and a support agent need. A record leaves the store only at its
 * PUBACK, so a crash in between sends it again (once stored: it carries its `ts`).
 */
export class Outbox {
  private readonly entries: Entry[] = [];
  private saving: Promise<void> = Promise.resolve();
  private dirty = false;
  private draining = false;
  private closed = false;

  constructor(
    private readonly max: number,
    private readonly store: QueueStore | undefined,
    /** A dropped record (QUEUE_OVERFLOW, with the record) or a store that failed (STORE_FAILED). */
    private readonly report: (err: DeviceError, record?: QueuedRecord) => void,
  ) {}

  get size(): number {
    return this.entries.length;
  }

  /** Loads what an earlier run left; those records have no caller waiting. */
  async load(): Promise<void> {
    if (!this.store) return;
    let records: readonly QueuedRecord[];
    try {
      records = await this.store.load();
    } catch (err) {
      throw new DeviceError("STORE_FAILED", `the offline queue could not be read: ${(err as Error).message}`, {
        cause: err,
      });
    }
    for (const record of records.slice(-this.max)) this.entries.push({ record, sending: false });
  }

  push(record: QueuedRecord): Promise<void> {
    if (this.closed) return Promise.reject(new DeviceError("CLOSED", "the device is closed"));
    if (this.entries.length >= this.max) {
      const oldest = this.entries.findIndex((e) => !e.sending);
      if (oldest >= 0) {
        const [dropped] = this.entries.splice(oldest, 1);
        const err = new DeviceError(
          "QUEUE_OVERFLOW",
          `the offline queue is full (${this.max} records): the oldest record was dropped for a newer one`,
        );
        dropped!.reject?.(err);
        this.report(err, dropped!.record);
      }
    }
    const promise = new Promise<void>((resolve, reject) =>
      this.entries.push({ record, sending: false, resolve, reject }),
    );
    this.persist();
    return promise;
  }

  /** Sends the queue oldest first while `online()`; returns when it is empty or the connection went. */
  async drain(options: DrainOptions): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    const interval = 1000 / options.rate;
    let last = 0;
    let inFlight = 0;
    let wake: (() => void) | undefined;
    try {
      for (;;) {
        if (this.closed || !options.online()) return;
        const entry = this.entries.find((e) => !e.sending);
        if (!entry) {
          if (inFlight === 0) return;
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        if (inFlight >= options.window) {
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        const wait = last + interval - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (this.closed || !options.online()) return;
        last = Date.now();
        entry.sending = true;
        inFlight += 1;
        options.send(entry.record).then(
          () => {
            inFlight -= 1;
            const at = this.entries.indexOf(entry);
            if (at >= 0) this.entries.splice(at, 1);
            this.persist();
            entry.resolve?.();
            wake?.();
          },
          (err: unknown) => {
            inFlight -= 1;
            // Not taken (the connection went before it was written): it stays first in line.
            entry.sending = false;
            if (err instanceof DeviceError && err.code === "INVALID_RECORD") {
              this.entries.splice(this.entries.indexOf(entry), 1);
              this.persist();
              entry.reject?.(err);
            }
            wake?.();
          },
        );
      }
    } finally {
      this.draining = false;
    }
  }

  /** Resolves once the store holds the queue as it is now. */
  flushed(): Promise<void> {
    return this.saving;
  }

  /** Rejects every waiting caller; the store keeps the records for the next run. */
  async close(): Promise<void> {
    this.closed = true;
    for (const e of this.entries)
      e.reject?.(new DeviceError("CLOSED", "the device was closed with this record queued"));
    await this.saving;
  }

  private persist(): void {
    const store = this.store;
    if (!store) return;
    if (this.dirty) return;
    this.dirty = true;
    // Coalesced: one save at a time, each of the queue as it is when that save starts.
    this.saving = this.saving.then(async () => {
      this.dirty = false;
      try {
        await store.save(this.entries.map((e) => e.record));
      } catch (err) {
        this.report(
          new DeviceError("STORE_FAILED", `the offline queue could not be written: ${(err as Error).message}`, {
            cause: err,
          }),
        );
      }
    });
  }
}
