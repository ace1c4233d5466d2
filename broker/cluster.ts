import { Redis } from "ioredis";
import type { Logger } from "pino";
import redisPersistence from "aedes-persistence-redis";
import MQEmitterRedis from "mqemitter-redis";
import { capOfflineQueues } from "./offline-queue.ts";

export interface ClusterEngines {
  /** Aedes' emitter on Redis pub/sub: a message published on any node reaches subscribers on every node. */
  mq: object;
  /** Aedes' persistence on Redis: subscriptions, sessions, offline queues (with Refeed's cap), retained state, wills. */
  persistence: object;
  close(): Promise<void>;
}

/**
 * The broker cluster is Aedes' own: `mqemitter-redis` carries messages
 * between nodes and `aedes-persistence-redis` keeps what outlives a
 * connection, so a session, its queue and the retained state are the same on
 * every node, and a client id connecting to another node takes the session over.
 */
export function clusterEngines(options: {
  redisUrl: string;
  node: string;
  maxQueued: number;
  onDrop: (clientId: string, dropped: Array<{ topic: string }>) => void;
  log: Logger;
}): ClusterEngines {
  const log = options.log.child({ dependency: "redis" });
  const mq = MQEmitterRedis({ connectionString: options.redisUrl, connectionName: `refeed:${options.node}:mq` });
  (mq as unknown as { on(event: "error", fn: (err: Error) => void): void }).on?.("error", (err) =>
    log.warn({ err: err.message }, "broker messages between nodes: redis unreachable"),
  );
  // Our own connection, so closing does not depend on the emitter Aedes has already closed.
  const conn = new Redis(options.redisUrl, { connectionName: `refeed:${options.node}:sessions` });
  conn.on("error", (err: Error) => log.warn({ err: err.message }, "broker sessions: redis unreachable"));
  const persistence = capOfflineQueues(
    redisPersistence({
      conn,
      // A session's offline queue is capped by Refeed (capOfflineQueues); deliver all of it on connect.
      maxSessionDelivery: Math.max(1000, options.maxQueued),
    }) as object,
    options.maxQueued,
    options.onDrop,
  );
  return {
    mq,
    persistence,
    close() {
      // Aedes closed its emitter; the persistence's subscription to it went with it.
      conn.disconnect();
      return Promise.resolve();
    },
  };
}
