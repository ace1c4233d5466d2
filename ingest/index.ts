import path from "node:path";
import type { Logger } from "pino";
import { Registry } from "prom-client";
import type { ConsentView, Purpose } from "../consent/index.ts";
import type { IngestConfig } from "../config/schema.ts";
import type { Store } from "../store/index.ts";
import { createDeadLetters } from "./deadletter.ts";
import { loadSubjectKey, subjectHasher } from "./subject-hash.ts";
import type { Line } from "./lineprotocol.ts";
import type { AckMessage, Channel, DeviceMessage, RejectReason } from "./messages.ts";
import { ingestMetrics, type Transport } from "./metrics.ts";
import { createParser, type Parsed, type Refusal } from "./parse.ts";
import { toDeviceLine } from "./points.ts";
import { openCommitLog } from "./commit-log.ts";
import { openSpool, SpoolFullError } from "./spool.ts";
import { createDurableWriter } from "./durable-writer.ts";

export type { Channel, DeviceMessage, AckMessage, RejectReason } from "./messages.ts";
export type { Refusal } from "./parse.ts";
export type { ConsentView, Purpose } from "../consent/index.ts";
export type { Transport } from "./metrics.ts";
export { channels, rejectReasons } from "./messages.ts";
export { SpoolFullError } from "./spool.ts";

/** Which consent purpose a subject-linked message of each kind needs. */
export const purposeOf = {
  telemetry: "analytics",
  event: "personalization",
  feedback: "feedback",
} as const satisfies Record<DeviceMessage["kind"], Purpose>;

export interface IngestOptions extends IngestConfig {
  /** Where the disk spool lives (`<REFEED_DATA_DIR>/spool`). */
  spoolDir: string;
  /**
   * Where the commit log lives (`<REFEED_DATA_DIR>/commit-log`): with it, a
   * record is durable (PUBACK, rules) once it is fdatasync'd there, before
   * InfluxDB has it. Without it, once InfluxDB or the spool has it.
   */
  commitLogDir?: string;
  /**
   * The key dead letters hash subjects with (`<REFEED_DATA_DIR>/subject-hash.key`, created at first
   * start). Without it, a key for this process only.
   */
  subjectKeyFile?: string;
}

export interface IngestDeps {
  store: Store;
  log: Logger;
  consent: ConsentView;
  /** The platform's Prometheus registry; ingest registers its series there. */
  metrics?: Registry;
  /**
   * Called with each admitted message once it is in the commit log (it
   * survives a crash of Refeed; the fdatasync its acknowledgement waits for
   * may still be under way), or durable when there is no commit log.
   */
  onMessage(msg: DeviceMessage): void;
  onAck(ack: AckMessage): void;
  /**
   * Sets `subject` on the records of one publish that name none but are about a customer all the same (a
   * linked device's, a shared device's session's: subjects/ decides); consent then applies to them as to any.
   */
  attribute?(messages: readonly DeviceMessage[]): void;
  /**
   * Called with each record withheld for want of consent (never stored or used): a session marker of a
   * customer without consent must still open and close their session, or their taps would pass as the device's.
   */
  onWithheld?(msg: DeviceMessage): void;
}

export interface AcceptResult {
  /** False when nothing in the publish fit the contract (all of it is dead-lettered). */
  ok: boolean;
  /** Records admitted and stored. */
  records: number;
  /** Records about a subject without consent for the purpose: not stored, not an error. */
  withheld: number;
  /** Refused records (or the whole publish), each dead-lettered. */
  refused: Refusal[];
  /** For `ok: false`: the first refusal's reason and detail. */
  reason: RejectReason | undefined;
  detail: string | undefined;
  /**
   * Resolves once everything this publish leaves (records and dead letters) is
   * on disk (commit log or spool) or in InfluxDB: what a QoS 1 PUBACK waits for. Rejects with
   * SpoolFullError when neither can take it; then the publish must not be acknowledged.
   */
  durable: Promise<void>;
}

export interface Ingest {
  /** Takes one publish (MQTT) or body (HTTP) from an authenticated device. */
  accept(device: string, channel: Channel, payload: Buffer | string, transport?: Transport): AcceptResult;
  /** Writes what is batched now and waits until it is durable. */
  flush(): Promise<void>;
  /** `spooling` while InfluxDB is unavailable or the spool is being replayed. */
  readonly mode: "direct" | "spooling";
  readonly spoolDepth: { batches: number; points: number; bytes: number };
  /** The keyed hash dead letters name a subject by when they may not keep the id (erasure looks them up by it). */
  subjectHash(subject: string): string;
  close(): Promise<void>;
}

/**
 * The commit log holds only what is on its way to InfluxDB (a few batches), and
 * each segment is written with zeros before use: small segments keep that cheap.
 */
const COMMIT_LOG_SEGMENT_BYTES = 4 * 1024 * 1024;

/** The event's name if the refused payload still shows one (a session marker is attributed as such). */
function eventNameIn(payload: string): string {
  return /"name"\s*:\s*"(session_start|session_end)"/.exec(payload)?.[1] ?? "";
}

const kindOf = { telemetry: "telemetry", event: "event", feedback: "feedback" } as const;

export async function startIngest(options: IngestOptions, deps: IngestDeps): Promise<Ingest> {
  const log = deps.log.child({ part: "ingest" });
  const parse = createParser(options);
  const spool = await openSpool({
    dir: path.resolve(options.spoolDir),
    maxBytes: options.spoolMaxBytes,
    segmentBytes: options.spoolSegmentBytes,
    log: deps.log,
  });
  const opened =
    options.commitLogDir === undefined
      ? undefined
      : await openCommitLog({
          dir: path.resolve(options.commitLogDir),
          segmentBytes: COMMIT_LOG_SEGMENT_BYTES,
          log: deps.log,
        });
  if (opened && opened.recovered.length > 0) {
    // What a crash left on its way to InfluxDB joins the spool's replay; twice after a second crash is harmless.
    for (const batch of opened.recovered) await spool.append(batch);
    await opened.forgetRecovered();
  }
  const commitLog = opened?.log;

  const metrics = ingestMetrics(deps.metrics ?? new Registry(), {
    spool: () => spool.depth,
    pending: () => writer.pending,
    spooling: () => writer.mode === "spooling",
  });
  const hashSubject = subjectHasher(await loadSubjectKey(options.subjectKeyFile));
  const deadLetters = createDeadLetters({
    log: deps.log,
    metrics,
    consent: deps.consent,
    hashSubject,
    write: (lines) => writer.write(lines),
  });
  const writer = createDurableWriter({
    store: deps.store,
    spool,
    commitLog,
    log: deps.log,
    batchSize: options.batchSize,
    flushMs: options.flushMs,
    maxInFlight: options.maxInFlight,
    maxQueuedBatches: options.maxQueuedBatches,
    writeTimeoutMs: options.writeTimeoutMs,
    onRejected: (line, message) => deadLetters.rejectedByInflux(line, message),
    events: metrics.writer,
  });
  let lastFullWarning = 0;
  // A refused record cannot be parsed into a message; whom it is about is asked with a stand-in of its kind.
  const aboutRefused = (device: string, channel: Channel, refusal: Refusal): string | undefined => {
    const kind =
      channel === "telemetry"
        ? "telemetry"
        : channel === "events"
          ? "event"
          : channel === "feedback"
            ? "feedback"
            : undefined;
    if (!kind || !deps.attribute) return undefined;
    const envelope = { device, subject: undefined, ts: Date.now(), tsFromDevice: false };
    const standIn: DeviceMessage =
      kind === "telemetry"
        ? { ...envelope, kind, metrics: {} }
        : kind === "event"
          ? { ...envelope, kind, name: eventNameIn(refusal.payload), props: {} }
          : { ...envelope, kind, rating: undefined, text: undefined };
    deps.attribute([standIn]);
    return standIn.subject;
  };

  return {
    accept(device, channel, payload, transport = "mqtt") {
      let parsed: Parsed;
      try {
        parsed = parse(channel, payload, { device, now: Date.now() });
      } catch (err) {
        // A bug of ours must not take the broker down with the device's message: refuse it, loudly.
        log.error({ device, channel, err: (err as Error).message }, "message could not be processed");
        const text = typeof payload === "string" ? payload : payload.subarray(0, 2048).toString("utf8");
        parsed = {
          messages: [],
          acks: [],
          refused: [
            {
              index: undefined,
              reason: "invalid_shape",
              detail: `could not be processed: ${(err as Error).message}`,
              payload: text,
            },
          ],
        };
      }
      const topic = transport === "mqtt" ? `devices/${device}/${channel}` : `POST /api/ingest/${channel}`;
      const lines: Line[] = deadLetters.record(device, channel, topic, parsed.refused, (r) =>
        aboutRefused(device, channel, r),
      );

      if (parsed.acks.length > 0) {
        metrics.accepted("ack", transport, parsed.acks.length);
        for (const ack of parsed.acks) deps.onAck(ack);
      }
      deps.attribute?.(parsed.messages);
      const admitted: DeviceMessage[] = [];
      let withheld = 0;
      for (const msg of parsed.messages) {
        // Opt-in only: a record about a customer is about them as a whole, so without
        // consent for its purpose none of it is stored or used, not even unlinked.
        if (msg.subject !== undefined && !deps.consent.allows(msg.subject, purposeOf[msg.kind])) {
          withheld += 1;
          deps.onWithheld?.(msg);
          continue;
        }
        lines.push(toDeviceLine(msg));
        admitted.push(msg);
      }
      // The records of one publish are all of its channel's kind: one count per publish, not per record.
      const kind = parsed.messages[0] && kindOf[parsed.messages[0].kind];
      if (kind && admitted.length > 0) metrics.accepted(kind, transport, admitted.length);
      if (kind && withheld > 0) {
        metrics.noConsent(kind, withheld);
        log.debug({ device, channel, withheld }, "records withheld: no consent for their purpose");
      }

      // Rules see a record once it is in the commit log, without waiting for the fdatasync that its PUBACK waits for.
      const seen = () => {
        for (const msg of admitted) deps.onMessage(msg);
      };
      const durable =
        lines.length > 0 ? writer.write(lines, admitted.length > 0 ? seen : undefined) : Promise.resolve();
      durable.then(
        () => undefined,
        (err: Error) => {
          if (!(err instanceof SpoolFullError) || Date.now() - lastFullWarning > 5000) {
            lastFullWarning = Date.now();
            log.warn({ device, channel, err: err.message }, "publish not acknowledged: it could not be made durable");
          }
        },
      );
      const records = admitted.length + parsed.acks.length;
      const ok = records > 0 || withheld > 0;
      const first = ok ? undefined : parsed.refused[0];
      return { ok, records, withheld, refused: parsed.refused, reason: first?.reason, detail: first?.detail, durable };
    },
    flush: () => writer.flush(),
    subjectHash: hashSubject,
    get mode() {
      return writer.mode;
    },
    get spoolDepth() {
      return { ...spool.depth };
    },
    async close() {
      await writer.close();
      await commitLog?.close();
      await spool.close();
      log.info({ spooled: spool.depth }, "ingest flushed and closed");
    },
  };
}
