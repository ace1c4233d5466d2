import { Counter, type Registry } from "prom-client";
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { ChangeFeed } from "../changes/index.ts";
import { createBatchWriter } from "../ingest/writer.ts";
import type { Point, Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import type { ActionBook, ActionRecord } from "./book.ts";
import {
  ACTION_LOG_TOPIC,
  PROFILE_TOPIC,
  type ActionLogEvent,
  type ProfileEvent,
  type ProposedEvent,
} from "./events.ts";
import type { ActionStatus } from "./status.ts";
import { ProfileBook, type Owner } from "./profiles.ts";
import { actionLogPoint, profilePoint } from "./rows.ts";

/** What a new action is before its `proposed` rows make it one. */
export type Draft = Pick<
  ActionRecord,
  "id" | "rule" | "kind" | "key" | "value" | "prompt" | "why" | "owner" | "device" | "subject" | "previous"
>;

export interface Recorder {
  newId: () => string;
  /**
   * Opens an action: its `proposed` rows, one per target device, are what
   * delivery and the lifecycle are rebuilt from. Answers the action and its rows.
   */
  open: (draft: Draft, devices: readonly string[], cause?: string) => { record: ActionRecord; points: Point[] };
  /** Records the action reaching `status` and answers the row to log. */
  transition: (
    record: ActionRecord,
    status: Exclude<ActionStatus, "proposed">,
    device: string,
    extra?: { by?: string; reason?: string; previous?: unknown },
  ) => Point;
  /** Sets or clears an owner's key; answers the row to log. */
  profileChange: (owner: Owner, key: string, op: "set" | "clear", value: unknown, action: string) => Point;
  /** A change recorded elsewhere (delivery.ts writes its `delivered` rows itself). */
  emitAction: (event: ActionLogEvent) => void;
  /** Logs rows; actions of the same few milliseconds share one InfluxDB write. */
  write: (points: Point[]) => Promise<void>;
  flush: () => Promise<void>;
  close: () => Promise<void>;
}

/**
 * Every change of an action or a profile made here becomes an event that is
 * applied to this process's views at once (so the call that made it sees it),
 * published on the feed for the other nodes' views, and logged as its row.
 * Events that arrive on the feed go through the same `apply`; one this process
 * made comes back as a no-op.
 */
export function createRecorder(deps: {
  store: Store;
  log: Logger;
  book: ActionBook;
  profiles: ProfileBook;
  feed: ChangeFeed;
  metrics: Registry;
}): Recorder {
  const { store, log, book, profiles, feed } = deps;
  // Counted where the row is made, so each action and each step of it counts once in a cluster.
  const counted = new Counter({
    name: "refeed_actions_total",
    help: "Actions proposed, and each step of their lifecycle (delivered, applied, accepted, declined, undone, expired, failed, ...), by kind and status",
    labelNames: ["kind", "status"],
    registers: [deps.metrics],
  });
  const stopBook = feed.subscribe(ACTION_LOG_TOPIC, (event) => book.apply(event));
  const stopProfiles = feed.subscribe(PROFILE_TOPIC, (event) => profiles.apply(event));
  const published = (topic: string) => (err: Error) =>
    log.error({ topic, err: err.message }, "change not published on the feed");
  const emitAction = (event: ActionLogEvent) => {
    book.apply(event);
    feed.publish(ACTION_LOG_TOPIC, event).catch(published(ACTION_LOG_TOPIC.name));
  };
  const emitProfile = (event: ProfileEvent) => {
    profiles.apply(event);
    feed.publish(PROFILE_TOPIC, event).catch(published(PROFILE_TOPIC.name));
  };

  // 72 random bits an id, drawn from a pool: one getrandom call per 1,000 actions rather than one each.
  let pool = Buffer.alloc(0);
  let used = 0;
  const newId = () => {
    if (used + 9 > pool.length) {
      pool = randomBytes(9 * 1000);
      used = 0;
    }
    used += 9;
    return `act_${pool.subarray(used - 9, used).toString("base64url")}`;
  };
  // Group commit: actions of the same few milliseconds share one InfluxDB write (and fsync).
  const actionLog = createBatchWriter({
    store,
    log,
    batchSize: 1000,
    flushMs: 5,
    onRejected: (point, message) =>
      log.error({ measurement: point.measurement, influx: message }, "InfluxDB refused an action log point"),
  });

  return {
    newId,
    open(draft, devices, cause) {
      const points = (devices.length > 0 ? devices : [""]).map((device) => {
        const event: ProposedEvent = {
          action: draft.id,
          status: "proposed",
          device,
          micros: nextMicros(),
          rule: draft.rule,
          kind: draft.kind,
          key: draft.key,
          owner: draft.owner,
          why: draft.why,
          ...(draft.value !== undefined ? { value: JSON.stringify(draft.value) } : {}),
          ...(draft.previous !== undefined ? { previous: JSON.stringify(draft.previous) } : {}),
          ...(draft.prompt !== undefined ? { prompt: draft.prompt } : {}),
          ...(draft.subject !== undefined ? { subject: draft.subject } : {}),
          ...(cause ? { cause } : {}),
          ...(draft.device !== device ? { origin: draft.device } : {}),
        };
        emitAction(event);
        return actionLogPoint(event);
      });
      counted.inc({ kind: draft.kind, status: "proposed" });
      return { record: book.actions.get(draft.id)!, points };
    },
    transition(record, status, device, extra = {}) {
      const event: ActionLogEvent = {
        action: record.id,
        status,
        device,
        micros: nextMicros(),
        ...(extra.by ? { by: extra.by } : {}),
        ...(extra.reason ? { reason: extra.reason } : {}),
        ...(extra.previous !== undefined ? { previous: JSON.stringify(extra.previous) } : {}),
      };
      emitAction(event);
      counted.inc({ kind: record.kind, status });
      return actionLogPoint(event);
    },
    profileChange(owner, key, op, value, action) {
      const event = ProfileBook.change(owner, key, op, value, action);
      emitProfile(event);
      return profilePoint(event);
    },
    emitAction,
    write: (points) => actionLog.write(points),
    flush: () => actionLog.flush(),
    async close() {
      stopBook();
      stopProfiles();
      await actionLog.close();
    },
  };
}
