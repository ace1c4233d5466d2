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
  const mq = MQEmitterRedis({
    pubConn: quietQuit(new Redis(options.redisUrl, { connectionName: `refeed:${options.node}:mq-pub` })),
    subConn: quietQuit(new Redis(options.redisUrl, { connectionName: `refeed:${options.node}:mq-sub` })),
  });
  // mqemitter-redis reports its connections' errors on `state` (an emitter nobody listens to would throw).
  (mq as unknown as { state: { on(event: "error", fn: (err: Error) => void): void } }).state.on("error", (err) =>
    log.warn({ err: err.message }, "broker messages between nodes: redis unreachable"),
  );
  keepIngestLocal(mq);
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
    async close() {
      // Aedes closed its emitter; the persistence's subscription to it went with it. QUIT lets the writes
      // of the sessions just closed finish (a cut connection fails them); a Redis that is away is not waited for.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        conn.quit().catch(() => undefined),
        new Promise((resolve) => (timer = setTimeout(resolve, 2000))),
      ]);
      clearTimeout(timer);
      conn.disconnect();
    },
  };
}

/**
 * mqemitter-redis' close() calls quit() and drops its promise, so a quit on a
 * connection that is already closing rejects with nobody to hear it; the
 * connections it is given answer that rejection themselves.
 */
function quietQuit(conn: Redis): Redis {
  const quit = conn.quit.bind(conn);
  conn.quit = (...args: Parameters<Redis["quit"]>) => {
    const done = quit(...args);
    done.catch(() => undefined);
    return done;
  };
  return conn;
}

interface Emitter {
  emit(packet: { topic: string }, cb?: (err?: Error) => void): unknown;
}

const INGEST_TOPIC = /^devices\/[^/]+\/(telemetry|events|feedback|acks)$/;

/**
 * What a device publishes for ingest is taken by Refeed's authorizePublish
 * (stored, acknowledged once durable) and nobody subscribes to it (the ACL
 * lets a device follow only its own actions and state), so it does not cross
 * to the other nodes: a Redis round trip per record would be waste, and while
 * Redis is away Aedes would fail the publish and close the device.
 */
function keepIngestLocal(mq: Emitter): void {
  const emit = mq.emit.bind(mq);
  mq.emit = (packet, cb) => {
    if (!INGEST_TOPIC.test(packet.topic)) return emit(packet, cb);
    cb?.();
    return mq;
  };
}
