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
 * Aedes 1.x has no such bound. Only the persistence's own API is used, so the
 * cap holds for any persistence (memory here, Redis in a cluster).
 */
export function capOfflineQueues<P extends object>(persistence: P, max: number, onDrop: (clientId: string, dropped: Array<{ topic: string }>) => void): P {
  const store = persistence as unknown as OutgoingQueues;
  // One trim per session at a time; enqueues for a session that is being trimmed run it again after.
  const running = new Map<string, Promise<void>>();

  const trim = (clientId: string): Promise<void> => {
    const previous = running.get(clientId) ?? Promise.resolve();
    const next = previous.then(() => trimNow(clientId));
    running.set(clientId, next);
    return next.finally(() => {
      if (running.get(clientId) === next) running.delete(clientId);
    });
  };

  const trimNow = async (clientId: string): Promise<void> => {
    const client = { id: clientId };
    const queued: QueuedPacket[] = [];
    for await (const packet of store.outgoingStream(client)) queued.push(packet);
    const excess = queued.length - max;
    if (excess <= 0) return;
    const dropped = queued.slice(0, excess);
    const used = new Set(queued.map((p) => p.messageId).filter((id) => id !== undefined));
    let spare = 1;
    for (const packet of dropped) {
      // The persistence removes packets by packet identifier; one never sent has none yet, so give it a free one first.
      if (packet.messageId === undefined) {
        while (used.has(spare)) spare += 1;
        used.add(spare);
        await store.outgoingUpdate(client, { ...packet, messageId: spare });
        await store.outgoingClearMessageId(client, { messageId: spare });
      } else {
        await store.outgoingClearMessageId(client, { messageId: packet.messageId });
      }
    }
    onDrop(clientId, dropped.map((p) => ({ topic: p.topic })));
  };

  return new Proxy(persistence, {
    get(target, property) {
      if (property === "outgoingEnqueue") {
        return async (sub: { clientId: string }, packet: object) => {
          await store.outgoingEnqueue(sub, packet);
          await trim(sub.clientId);
        };
      }
      if (property === "outgoingEnqueueCombi") {
        return async (subs: Array<{ clientId: string }>, packet: object) => {
          await store.outgoingEnqueueCombi(subs, packet);
          await Promise.all(subs.map((sub) => trim(sub.clientId)));
        };
      }
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === "function" ? value.bind(target) : value;
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
export function cappedMemoryPersistence(max: number, onDrop: (clientId: string, dropped: Array<{ topic: string }>) => void): object {
  const memory = aedesPersistence as unknown as () => object;
  return capOfflineQueues(memory(), max, onDrop);
}
