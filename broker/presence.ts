import type { Logger } from "pino";
import { createBatchWriter } from "../ingest/writer.ts";
import type { Point, Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
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
 * who is online now and when each device was last seen, rebuilt at start.
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
  onEvent?(event: PresenceEvent): void;
}): Promise<Presence> {
  const log = deps.log.child({ part: "presence" });
  const lastSeen = new Map<string, number>();
  const connections = new Map<string, number>();
  const changedAt = new Map<string, number>();

  const firstSeen = new Map<string, number>();
  const [lasts, firsts] = await Promise.all([
    deps.store.query<{ time: Date; device: string }>(lastPresence()),
    deps.store.query<{ time: Date; device: string }>(firstPresence()),
  ]);
  for (const row of lasts) lastSeen.set(row.device, row.time.getTime());
  for (const row of firsts) firstSeen.set(row.device, row.time.getTime());
  log.info({ devices: lastSeen.size }, "presence rebuilt from InfluxDB");

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
    before: number,
  ) => {
    const now = Date.now();
    lastSeen.set(device, now);
    if (!firstSeen.has(device)) firstSeen.set(device, now);
    const since = changedAt.get(device);
    changedAt.set(device, now);
    const onlineMs = before > 0 && since !== undefined ? now - since : 0;
    const point: Point = {
      measurement: MEASUREMENT,
      tags: { device, event, ...tags },
      fields: { ...fields, connections: connections.get(device) ?? 0, online_ms: onlineMs },
      timestamp: String(nextMicros(now)),
    };
    writer
      .write([point])
      .catch((err: Error) => log.error({ device, event, err: err.message }, "presence event not stored"));
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
      const before = connections.get(device) ?? 0;
      connections.set(device, before + 1);
      record(device, "connect", {}, { client: clientId, transport }, before);
      log.info({ device, clientId, transport }, "device connected");
    },
    disconnected(device, clientId, transport, reason) {
      const before = connections.get(device) ?? 0;
      const left = Math.max(0, before - 1);
      if (left > 0) connections.set(device, left);
      else connections.delete(device);
      record(device, "disconnect", { reason }, { client: clientId, transport }, before);
      log.info({ device, clientId, transport, reason }, "device disconnected");
    },
    lastWill(device, clientId, topic) {
      record(device, "will", {}, { client: clientId, topic }, connections.get(device) ?? 0);
      log.info({ device, clientId, topic }, "last will published");
    },
    seen(device) {
      lastSeen.set(device, Date.now());
    },
    view(device) {
      const seen = lastSeen.get(device);
      const open = connections.get(device) ?? 0;
      const date = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms));
      return {
        online: open > 0,
        connections: open,
        lastSeen: date(seen),
        changedAt: date(changedAt.get(device)),
        firstSeen: date(firstSeen.get(device)),
      };
    },
    async close() {
      await writer.close();
    },
  };
}
