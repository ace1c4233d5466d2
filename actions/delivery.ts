import type { Logger } from "pino";
import type { ChangeFeed } from "../changes/index.ts";
import { ACTION_LOG_TOPIC } from "./events.ts";
import { createBatchWriter } from "../ingest/writer.ts";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import type { Publisher } from "./ports.ts";
import { ACTION_LOG, actionStatuses } from "./queries.ts";

/** What the broker needs to deliver actions reliably. */
export interface Outbox {
  /** Actions for the device it has not acknowledged with a PUBACK yet, oldest first. */
  pendingFor(device: string): Array<{ id: string; payload: string }>;
  /** The device's PUBACK for this action arrived (any of its sessions; repeats are ignored). */
  delivered(device: string, actionId: string): void;
  /** Whether the device is still owed the action. */
  isPending(device: string, actionId: string): boolean;
}

export interface Delivery extends Outbox {
  /** Keeps the action for the device until it is delivered, and sends it now to every session subscribed to its actions. */
  send(device: string, actionId: string, payload: string): Promise<void>;
  /** The device acked the action on its acks topic, which proves it has it (a QoS 0 subscriber sends no PUBACK). */
  received(device: string, actionId: string): void;
  /** Drops what is pending for a device (it was revoked). */
  forget(device: string): void;
  /** How many actions wait for the device. */
  pending(device: string): number;
  /** Waits until every delivery record written so far is stored. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Statuses a device's own PUBACK or ack wrote: each proves the device had the action. */
const RECEIVED = new Set(["delivered", "applied", "accepted", "declined", "failed", "undone", "expired", "withdrawn"]);

/**
 * Reliable action delivery. What each device still has to receive is derived
 * from the action log (a `proposed` row for the device without a later
 * `delivered` or ack row from it), so it survives a restart and does not live
 * only in broker memory. The broker resends pending actions whenever a
 * session of the device subscribes to its actions topic; the device's PUBACK
 * records `delivered`. Devices de-duplicate by action id, so a resend after a
 * lost PUBACK is harmless.
 */
export async function startDelivery(deps: {
  store: Store;
  publisher: Publisher;
  log: Logger;
  /** The wire payload of an action known to the action log. */
  render(actionId: string): string | undefined;
  /** Tells the action lifecycle that a device confirmed receipt, at the time of the `delivered` row. */
  onDelivered?(device: string, actionId: string, micros: number): void;
  /** The action log's changes, from this node and the others: what is pending follows them. */
  feed?: ChangeFeed;
}): Promise<Delivery> {
  const log = deps.log.child({ part: "delivery" });
  /** device -> action id -> payload (undefined until first needed after a rebuild). */
  const pending = new Map<string, Map<string, string | undefined>>();
  // Actions a device no longer needs, by "device|action" (bounded: oldest first out). An action neither
  // pending nor settled here is one just proposed on another node whose log entry is still on its way.
  const settled = new Set<string>();
  const settle = (device: string, actionId: string) => {
    settled.add(`${device}|${actionId}`);
    if (settled.size > 200_000) settled.delete(settled.values().next().value!);
  };

  // One path for a stored row at start and a change from the feed later (this node's own included).
  const applyStatus = (device: string, action: string, status: string) => {
    // A change logged while its customer had no device has no target to deliver to.
    if (!device) return;
    if (status === "proposed") {
      if (settled.has(`${device}|${action}`)) return;
      const list = queueFor(device);
      if (!list.has(action)) list.set(action, undefined);
    } else if (RECEIVED.has(status)) {
      drop(device, action);
      settle(device, action);
    }
  };
  const rebuild = async () => {
    const rows = await deps.store.query<{ time: Date; device: string; action: string; status: string }>(
      actionStatuses(),
    );
    for (const row of rows) applyStatus(row.device, row.action, row.status);
  };
  await rebuild();
  const stopResync = deps.feed?.onResync?.(rebuild);
  let total = 0;
  for (const list of pending.values()) total += list.size;
  log.info({ devices: pending.size, actions: total }, "pending action deliveries rebuilt from the action log");

  const writer = createBatchWriter({
    store: deps.store,
    log,
    batchSize: 1000,
    flushMs: 50,
    onRejected: (point, message) =>
      log.error({ device: point.tags?.device, influx: message }, "InfluxDB refused a delivery record"),
  });

  function queueFor(device: string): Map<string, string | undefined> {
    let list = pending.get(device);
    if (!list) pending.set(device, (list = new Map<string, string | undefined>()));
    return list;
  }

  const stopFollowing = deps.feed?.subscribe(ACTION_LOG_TOPIC, (e) => applyStatus(e.device, e.action, e.status));

  function drop(device: string, actionId: string): boolean {
    const list = pending.get(device);
    if (!list?.delete(actionId)) return false;
    if (list.size === 0) pending.delete(device);
    return true;
  }

  return {
    async send(device, actionId, payload) {
      queueFor(device).set(actionId, payload);
      await deps.publisher.publish(`devices/${device}/actions`, payload, { qos: 1, retain: false });
    },

    pendingFor(device) {
      const list = pending.get(device);
      if (!list) return [];
      const out: Array<{ id: string; payload: string }> = [];
      for (const [id, cached] of list) {
        const payload = cached ?? deps.render(id);
        if (payload === undefined) {
          log.warn({ device, action: id }, "pending action missing from the action log; dropped");
          drop(device, id);
          continue;
        }
        list.set(id, payload);
        out.push({ id, payload });
      }
      return out;
    },

    delivered(device, actionId) {
      if (!drop(device, actionId)) return;
      // The action log records it; at info this would be a line per delivery, the busiest event there is.
      log.debug({ device, action: actionId }, "action delivered");
      const micros = nextMicros();
      deps.onDelivered?.(device, actionId, micros);
      writer
        .write([
          {
            measurement: ACTION_LOG,
            tags: { device },
            fields: { action: actionId, status: "delivered" },
            timestamp: String(micros),
          },
        ])
        .catch((err: Error) => log.error({ device, action: actionId, err: err.message }, "delivery not recorded"));
    },

    isPending: (device, actionId) =>
      pending.get(device)?.has(actionId) === true || !settled.has(`${device}|${actionId}`),

    received(device, actionId) {
      drop(device, actionId);
    },

    forget(device) {
      const list = pending.get(device);
      if (!list) return;
      pending.delete(device);
      log.info({ device, actions: list.size }, "pending actions of a revoked device dropped");
    },

    pending(device) {
      return pending.get(device)?.size ?? 0;
    },

    flush: () => writer.flush(),

    async close() {
      stopFollowing?.();
      stopResync?.();
      await writer.close();
    },
  };
}
