import aedesPersistence from "aedes-persistence";

/** The part of an Aedes persistence (promise API, as Aedes 1.x calls it) that holds each session's outgoing queue. */
export interface OutgoingQueues {
  outgoingEnqueue(sub: { clientId: string }, packet: object): Promise<unknown>;
  outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: object): Promise<unknown>;
  outgoingStream(client: { id: string }): AsyncIterable<QueuedPacket>;
  outgoingUpdate(client: { id: string }, packet: object): Promise<unknown>;
  outgoingClearMessageId(client: { id: string }, packet: { messageId?: number }): Promise<unknown>;
}

interface QueuedPacket {
  topic: string;
  brokerId?: string;
  brokerCounter?: number;
  messageId?: number;
}

/**
 * Wraps an Aedes persistence so that no session's outgoing queue (the QoS 1
 * messages kept for a persistent session while it is offline, and those in
 * flight) holds more than `max` packets: the oldest are dropped and reported.
 * Aedes 1.x has no such bound. It also mends how Aedes drops a refused packet
 * from such a queue (see outgoingClearMessageId below). Only the persistence's own API is used, so the
 * cap holds for any persistence (memory here, Redis in a cluster).
 */
export function capOfflineQueues<P extends object>(
  persistence: P,
  max: number,
  onDrop: (clientId: string, dropped: Array<{ topic: string }>) => void,
): P {
  const store = persistence as unknown as OutgoingQueues;
  // One change to a session's queue at a time (trims, drops of unsent packets), in order.
  const running = new Map<string, Promise<void>>();

  const serial = (clientId: string, work: () => Promise<void>): Promise<void> => {
    const previous = running.get(clientId) ?? Promise.resolve();
    // A failed change does not hold up the next one of the session.
    const next = previous.catch(() => {}).then(work);
    running.set(clientId, next);
    return next.finally(() => {
      if (running.get(clientId) === next) running.delete(clientId);
    });
  };
  const trim = (clientId: string) => serial(clientId, () => trimNow(clientId));

  /**
   * The persistence removes packets by packet identifier, and one never sent has none yet: give it
   * one first. 0 is never a client's identifier (MQTT uses 1-65535 for QoS 1), so it cannot name a
   * packet in flight; the serial queue keeps two such removals of one session apart.
   */
  const dropUnsent = async (client: { id: string }, packet: QueuedPacket): Promise<void> => {
    try {
      await store.outgoingUpdate(client, { ...packet, messageId: 0 });
    } catch {
      return; // no longer queued (acknowledged or dropped meanwhile): nothing to remove
    }
    await store.outgoingClearMessageId(client, { messageId: 0 });
  };

  const trimNow = async (clientId: string): Promise<void> => {
    const client = { id: clientId };
    const queued: QueuedPacket[] = [];
    for await (const packet of store.outgoingStream(client)) queued.push(packet);
    const excess = queued.length - max;
    if (excess <= 0) return;
    const dropped = queued.slice(0, excess);
    for (const packet of dropped) {
      if (packet.messageId === undefined) await dropUnsent(client, packet);
      else await store.outgoingClearMessageId(client, { messageId: packet.messageId });
    }
    onDrop(
      clientId,
      dropped.map((p) => ({ topic: p.topic })),
    );
  };

  return new Proxy(persistence, {
    get(target, property) {
      if (property === "outgoingEnqueue") {
        return async (sub: { clientId: string }, packet: object) => {
          await store.outgoingEnqueue(sub, packet);
          await trim(sub.clientId);
        };
      }
      if (property === "outgoingClearMessageId") {
        // Aedes 1.x removes a packet that authorizeForward refused by its packet identifier, which a
        // queued packet does not have yet; the persistence would then remove the first unsent packet
        // of the session, whichever it is, and that packet's delivery fails with "no such packet",
        // closing the connection. Such a packet is found by its broker counter instead.
        return (client: { id: string }, packet: QueuedPacket) =>
          packet.messageId === undefined && packet.brokerCounter !== undefined
            ? serial(client.id, () => dropUnsent(client, packet))
            : store.outgoingClearMessageId(client, packet);
      }
      if (property === "outgoingEnqueueCombi") {
        return async (subs: Array<{ clientId: string }>, packet: object) => {
          await store.outgoingEnqueueCombi(subs, packet);
          await Promise.all(subs.map((sub) => trim(sub.clientId)));
        };
      }
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
    set(target, property, value) {
      return Reflect.set(target, property, value, target);
    },
  });
}

/**
 * Aedes' in-memory persistence with capped queues. The package is CommonJS
 * with an ESM-style default export in its types; at run time the default
 * import is the factory.
 */
export function cappedMemoryPersistence(
  max: number,
  onDrop: (clientId: string, dropped: Array<{ topic: string }>) => void,
): object {
  const memory = aedesPersistence as unknown as () => object;
  return capOfflineQueues(memory(), max, onDrop);
}
