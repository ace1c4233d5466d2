import type { Logger } from "pino";
import { createBatchWriter } from "../ingest/writer.ts";
import type { Point, Store } from "../store/index.ts";
import { microsOfRow, nextMicros } from "../store/clock.ts";
import type { ChangeFeed } from "../changes/index.ts";
import { localChangeFeed } from "../changes/local.ts";
import { presenceChanges, presenceEvent, presenceView } from "./presence-view.ts";
import type { Transport } from "./packet-limit.ts";
import { firstPresence, lastPresence, PRESENCE } from "./queries.ts";

/** Why a session ended; a tag in InfluxDB, so a fixed vocabulary. */
export type DisconnectReason =
  | "clean" // the client sent DISCONNECT
  | "connection_lost" // the transport closed without DISCONNECT
  | "keepalive_timeout"
  | "taken_over" // a new connection with the same client id
  | "revoked"
  | "token_rotated"
  | "server_shutdown"
  | "protocol_error"
  | "acl_denied"
  | "qos2_refused"
  | "payload_too_large"
  | "packet_too_large"
  | "rate_limited";

export interface PresenceView {
  online: boolean;
  /** Live sessions of the device (a device may hold `id` and `id:suffix` at once). */
  connections: number;
  /** The last connect, disconnect, last will or message of the device. */
  lastSeen: Date | undefined;
  /** This process's last presence event of the device: online time after it is not in InfluxDB yet. */
  changedAt: Date | undefined;
  /** The device's first presence event ever: when it went into service. */
  firstSeen: Date | undefined;
}

export interface Presence {
  connected(device: string, clientId: string, transport: Transport): void;
  disconnected(device: string, clientId: string, transport: Transport, reason: DisconnectReason): void;
  /** The broker published the session's last will. */
  lastWill(device: string, clientId: string, topic: string): void;
  /** Activity that moves last-seen without an event of its own (a publish). */
  seen(device: string): void;
  view(device: string): PresenceView;
  close(): Promise<void>;
}

const MEASUREMENT = PRESENCE;

/**
 * Device presence: events in InfluxDB (`presence`) and an in-memory view of
 * who is online now and when each device was last seen, rebuilt at start and
 * then fed by the change feed (./presence-view.ts).
 * Events go through a batching writer so a reconnect storm of thousands of
 * devices costs a few write requests, not thousands.
 */
export interface PresenceEvent {
  device: string;
  event: "connect" | "disconnect" | "will";
  reason: DisconnectReason | undefined;
  transport: Transport | undefined;
  ts: number;
}

export async function startPresence(deps: {
  store: Store;
  log: Logger;
  changes?: ChangeFeed;
  onEvent?(event: PresenceEvent): void;
}): Promise<Presence> {
  const log = deps.log.child({ part: "presence" });
  // Alone (a test, a tool) presence still takes its changes through a feed, a private one.
  const changes = deps.changes ?? localChangeFeed(deps.log);
  const state = presenceView();

  // Following first, then the rebuild: a change arriving meanwhile is not lost, and meeting it twice is harmless.
  const stop = changes.subscribe(presenceChanges, (event) => state.apply(event));
  const [lasts, firsts] = await Promise.all([
    deps.store.query<{ time: Date; device: string }>(lastPresence()),
    deps.store.query<{ time: Date; device: string }>(firstPresence()),
  ]);
  for (const row of [...lasts, ...firsts]) {
    const parsed = presenceEvent.safeParse({ op: "seen", device: row.device, micros: microsOfRow(row.time) });
    if (parsed.success) state.apply(parsed.data);
    else log.warn({ issue: parsed.error.issues[0]?.message }, "unreadable presence row skipped at rebuild");
  }
  log.info({ devices: state.size }, "presence rebuilt from InfluxDB");

  const writer = createBatchWriter({
    store: deps.store,
    log,
    batchSize: 1000,
    flushMs: 100,
    onRejected: (point, message) =>
      log.error({ device: point.tags?.device, influx: message }, "InfluxDB refused a presence event"),
  });

  /**
   * Each event carries the device's open connections after it and `online_ms`,
   * how long the device was connected (to this process) since its previous
   * event: summed over a window in InfluxDB, that is its online time. Time
   * this process did not see (a crash, another node's sessions) never counts.
   */
  const record = (
    device: string,
    event: "connect" | "disconnect" | "will",
    tags: Record<string, string>,
    fields: Record<string, string>,
    after: number,
  ) => {
    const now = Date.now();
    const { connections: before, changedAt: since } = state.get(device);
    const micros = nextMicros(now);
    const onlineMs = before > 0 && since !== undefined ? now - since : 0;
    const point: Point = {
      measurement: MEASUREMENT,
      tags: { device, event, ...tags },
      fields: { ...fields, connections: after, online_ms: onlineMs },
      timestamp: String(micros),
    };
    writer
      .write([point])
      .catch((err: Error) => log.error({ device, event, err: err.message }, "presence event not stored"));
    // The batch writer stores it soon; the view follows the feed now, so who is online is never behind the broker.
    changes
      .publish(presenceChanges, {
        op: event,
        device,
        micros,
        connections: after,
        ...(tags.reason ? { reason: tags.reason } : {}),
        ...(fields.transport ? { transport: fields.transport } : {}),
      })
      .catch((err: Error) => log.error({ device, event, err: err.message }, "presence change not published"));
    deps.onEvent?.({
      device,
      event,
      reason: tags.reason as DisconnectReason | undefined,
      transport: fields.transport as Transport | undefined,
      ts: now,
    });
  };

  return {
    connected(device, clientId, transport) {
      const before = state.get(device).connections;
      record(device, "connect", {}, { client: clientId, transport }, before + 1);
      log.info({ device, clientId, transport }, "device connected");
    },
    disconnected(device, clientId, transport, reason) {
      const before = state.get(device).connections;
      record(device, "disconnect", { reason }, { client: clientId, transport }, Math.max(0, before - 1));
      log.info({ device, clientId, transport, reason }, "device disconnected");
    },
    lastWill(device, clientId, topic) {
      record(device, "will", {}, { client: clientId, topic }, state.get(device).connections);
      log.info({ device, clientId, topic }, "last will published");
    },
    seen(device) {
      // The one write outside the feed: a publish is activity at message rate, not a change to share; this
      // node's last-seen follows the messages it takes, by the same apply the rebuild uses.
      state.apply({ op: "seen", device, micros: Date.now() * 1000 });
    },
    view(device) {
      const { connections, lastSeen, changedAt, firstSeen } = state.get(device);
      const date = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms));
      return {
        online: connections > 0,
        connections,
        lastSeen: date(lastSeen),
        changedAt: date(changedAt),
        firstSeen: date(firstSeen),
      };
    },
    async close() {
      stop();
      await writer.close();
    },
  };
}
