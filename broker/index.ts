import type { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { Aedes, type Client } from "aedes";
import type { Logger } from "pino";
import { Counter, Gauge, Registry as MetricsRegistry } from "prom-client";
import type { MqttConfig } from "../config/schema.ts";
import type { Ingest } from "../ingest/index.ts";
import type { Registry } from "../registry/index.ts";
import type { Publisher } from "../actions/index.ts";
import type { Outbox } from "../actions/delivery.ts";
import { Admission, type BudgetReason } from "./admission.ts";
import { identityHooks } from "./auth.ts";
import { authorizeHooks } from "./authorize.ts";
import { PublishRateLimiter } from "./limits.ts";
import { startListeners } from "./listeners.ts";
import { clusterEngines } from "./cluster.ts";
import { cappedMemoryPersistence } from "./offline-queue.ts";
import { PacketGuard, type PacketLimitOptions, type PacketWatch, type Transport } from "./packet-limit.ts";
import type { Presence } from "./presence.ts";
import { redelivery } from "./redelivery.ts";
import { RefusalLog } from "./refusal-log.ts";
import { Sessions, type Session } from "./sessions.ts";

export type { Transport } from "./packet-limit.ts";

export interface Broker extends Publisher {
  /** Takes a client connection from another transport (the WebSocket route). */
  handle(stream: Duplex, transport?: Transport): void;
  readonly address: { host: string; port: number };
  /** The `mqtts` listener, when configured. */
  readonly tlsAddress: { host: string; port: number } | undefined;
  readonly connectedClients: number;
  /**
   * Follows what is published on a topic (for streams that are not MQTT
   * connections, such as SSE): through Aedes' own subscriptions, so it sees
   * what every MQTT subscriber sees, also from another node of a cluster.
   * Resolves with a function that stops following.
   */
  follow(topic: string, onMessage: (payload: Buffer) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface BrokerDeps {
  registry: Registry;
  ingest: Ingest;
  presence: Presence;
  /** Actions waiting for their devices. */
  outbox: Outbox;
  log: Logger;
  /** The platform's Prometheus registry; the broker registers its connection budget series there. */
  metrics?: MetricsRegistry;
  /** In cluster mode: the nodes share subscriptions, sessions, retained state and messages through Redis. */
  cluster?: { redisUrl: string; node: string };
}

/** Room for the fixed and variable header (topic, client id, credentials) on top of the payload limit. */
const HEADER_ROOM = 4096;

/**
 * The MQTT 3.1.1 front door: Aedes 1.x behind a packet-size guard, with
 * device identity, the topic ACL, limits, presence and reliable action
 * delivery wired into its hooks and events.
 */
export async function startBroker(config: MqttConfig, deps: BrokerDeps): Promise<Broker> {
  const log = deps.log.child({ part: "broker" });
  const { limits } = config;
  const maxPacketBytes = limits.maxPayloadBytes + HEADER_ROOM;
  const sessions = new Sessions();
  const rate = new PublishRateLimiter(limits.publishRate, limits.publishBurst);
  const sweep = setInterval(() => rate.sweep(Date.now()), 60_000);
  sweep.unref();
  const resend = redelivery(deps.outbox, log);

  const onDrop = (clientId: string, dropped: Array<{ topic: string }>) =>
    log.warn(
      {
        clientId,
        device: clientId.split(":")[0],
        reason: "offline_queue_full",
        dropped: dropped.length,
        topics: dropped.map((d) => d.topic),
        limit: limits.maxQueuedMessages,
      },
      "offline queue full: oldest messages dropped",
    );
  const cluster = deps.cluster
    ? clusterEngines({ ...deps.cluster, maxQueued: limits.maxQueuedMessages, onDrop, log })
    : undefined;
  const aedes = await Aedes.createBroker({
    // In a cluster the broker's id is the node's, so a takeover or a dead node's wills name it.
    ...(cluster ? { id: deps.cluster!.node, mq: cluster.mq, persistence: cluster.persistence } : {}),
    // No cap on messages in flight in Aedes' emitter (its default is 100). Past the cap, mqemitter
    // queues messages and drains the queue recursively as deliveries complete; under overload
    // (8,000 actions/s in the benchmark) the queue grew long enough to overflow the stack and end
    // the process (mqemitter#204, open). What is in flight stays bounded by Aedes' inbound limit per
    // client and by PUBACKs waiting for durability.
    concurrency: 0,
    heartbeatInterval: 60_000,
    // The packet guard times out a slow CONNECT from accept on; this is Aedes' own backstop.
    connectTimeout: limits.connectTimeoutMs,
    ...(cluster ? {} : { persistence: cappedMemoryPersistence(limits.maxQueuedMessages, onDrop) }),
  });
  // Aedes emits 'error' for persistence failures; unhandled it would end the process.
  (aedes as unknown as EventEmitter).on("error", (err: Error) => log.error({ err: err.message }, "broker error"));

  const identity = identityHooks({
    registry: deps.registry,
    sessions,
    log,
    maxKeepaliveSeconds: limits.maxKeepaliveSeconds,
  });
  // One watch for every connection; packets before authentication have no session and are ignored.
  const watch: PacketWatch = {
    disconnect(guard) {
      const session = sessions.ofGuard(guard);
      if (session) session.saidGoodbye = true;
    },
    puback(guard, messageId) {
      const session = sessions.ofGuard(guard);
      if (session) resend.acked(session, messageId);
    },
    sent(guard, messageId, topic, payload) {
      const session = sessions.ofGuard(guard);
      if (session) resend.sent(session, messageId, topic, payload);
    },
  };
  aedes.preConnect = identity.preConnect;
  aedes.authenticate = identity.authenticate;
  const hooks = authorizeHooks({
    sessions,
    registry: deps.registry,
    ingest: deps.ingest,
    presence: deps.presence,
    rate,
    limits,
    log,
    outbox: deps.outbox,
  });
  aedes.authorizePublish = hooks.authorizePublish;
  aedes.authorizeSubscribe = hooks.authorizeSubscribe;
  aedes.authorizeForward = hooks.authorizeForward;

  const ended = (session: Session) => {
    const takenOver = sessions.superseded(session);
    sessions.close(session);
    if (!session.online) return;
    session.online = false;
    const reason = session.reason ?? (takenOver ? "taken_over" : session.saidGoodbye ? "clean" : "connection_lost");
    deps.presence.disconnected(session.device, session.clientId, session.transport, reason);
  };

  aedes.on("clientReady", (client: Client) => {
    const session = sessions.of(client);
    if (!session) return;
    admission.authenticated(session.guard);
    session.online = true;
    deps.presence.connected(session.device, session.clientId, session.transport);
    // A persistent session comes back with its subscriptions restored.
    resend.resend(session);
  });
  aedes.on("subscribe", (subscriptions: Array<{ topic: string; qos: number }>, client: Client) => {
    const session = sessions.of(client);
    const actions = session && `devices/${session.device}/actions`;
    if (session && subscriptions.some((s) => s.topic === actions && s.qos !== 128)) resend.resend(session);
  });
  aedes.on("unsubscribe", (topics: string[], client: Client) => {
    const session = sessions.of(client);
    for (const topic of topics) session?.subscriptions.delete(topic);
  });
  aedes.on("keepaliveTimeout", (client: Client) => {
    const session = sessions.of(client);
    if (session) session.reason ??= "keepalive_timeout";
  });
  aedes.on("clientError", (client: Client, err: Error) =>
    log.debug({ device: sessions.of(client)?.device, err: err.message }, "client error"),
  );
  aedes.on("connectionError", (client: Client, err: Error) => {
    const guard = client.conn as PacketGuard;
    log.debug({ transport: guard.transport, remote: guard.remote, err: err.message }, "connection error");
  });

  // Revocation and rotation end the device's live sessions at once; a revoked device leaves nothing retained.
  const stopWatching = deps.registry.onChange((change) => {
    if (change.op === "provisioned") return;
    for (const session of sessions.ofDevice(change.device)) {
      session.reason = change.op === "revoked" ? "revoked" : "token_rotated";
      log.info({ device: change.device, clientId: session.clientId, reason: session.reason }, "closing session");
      session.client.close();
    }
    if (change.op === "revoked") {
      aedes.publish(
        {
          cmd: "publish",
          topic: `devices/${change.device}/state`,
          payload: Buffer.alloc(0),
          qos: 0,
          retain: true,
          dup: false,
        },
        () => undefined,
      );
    }
  });

  const refusals = new RefusalLog(log);
  const budgetMetrics = connectionMetrics(deps.metrics ?? new MetricsRegistry(), () => admission.preAuth);
  const limitOf = (reason: BudgetReason) =>
    reason === "max_connections"
      ? limits.maxConnections
      : reason === "pre_auth_max"
        ? config.preAuth.max
        : config.preAuth.perAddress;
  const admission = new Admission<PacketGuard>(
    {
      maxConnections: limits.maxConnections,
      preAuthMax: config.preAuth.max,
      preAuthPerAddress: config.preAuth.perAddress,
    },
    (guard, address, reason) => {
      budgetMetrics.gaveWay.inc({ reason });
      refusals.refused(
        reason,
        address,
        { transport: guard.transport, remote: guard.remote, limit: limitOf(reason) },
        "pre-auth connection closed for a newer one",
      );
      guard.destroy();
    },
  );
  // Shared by every connection, so that an idle connection costs no closures of its own.
  const guardOptions: PacketLimitOptions = {
    maxPacketBytes,
    connectTimeoutMs: limits.connectTimeoutMs,
    watch,
    onConnect: (connecting) => aedes.handle(connecting),
    onConnectRead: (guard) => admission.connectRead(guard),
    onRefused(refused, reason, announced) {
      const session = sessions.ofGuard(refused);
      if (session) session.reason = reason === "packet_too_large" ? "packet_too_large" : "protocol_error";
      log.warn(
        {
          device: session?.device,
          clientId: session?.clientId,
          transport: refused.transport,
          remote: refused.remote,
          reason,
          announced,
          limit: maxPacketBytes,
        },
        "connection closed: packet refused before buffering",
      );
    },
    onTimeout(slow) {
      log.warn(
        {
          transport: slow.transport,
          remote: slow.remote,
          reason: "connect_timeout",
          timeoutMs: limits.connectTimeoutMs,
        },
        "connection refused",
      );
    },
    onClose(guard) {
      admission.closed(guard);
      const session = sessions.ofGuard(guard);
      if (session) ended(session);
    },
  };
  const accept = (stream: Duplex, transport: Transport) => {
    const remote = (stream as Duplex & { remoteAddress?: string }).remoteAddress;
    const address = remote ?? "unknown";
    const refused = admission.makeRoom(address);
    if (refused) {
      budgetMetrics.refused.inc({ reason: refused });
      refusals.refused(refused, address, { transport, remote, limit: limitOf(refused) }, "connection refused");
      stream.destroy();
      return;
    }
    admission.add(new PacketGuard(stream, transport, guardOptions), address);
  };

  const listeners = await startListeners(config, accept, log);

  return {
    handle(stream, transport = "ws") {
      accept(stream, transport);
    },
    address: { host: config.host, port: listeners.tcp.port },
    tlsAddress: listeners.tls,
    get connectedClients() {
      return aedes.connectedClients;
    },
    async follow(topic, onMessage) {
      const deliver = (packet: { payload: Buffer | string }, done: () => void) => {
        try {
          onMessage(Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload));
        } finally {
          done();
        }
      };
      const subscriptions = aedes as unknown as {
        subscribe(topic: string, fn: typeof deliver, done: () => void): void;
        unsubscribe(topic: string, fn: typeof deliver, done: () => void): void;
      };
      await new Promise<void>((resolve) => subscriptions.subscribe(topic, deliver, resolve));
      return () => new Promise<void>((resolve) => subscriptions.unsubscribe(topic, deliver, resolve));
    },
    publish(topic, payload, options) {
      return new Promise((resolve, reject) =>
        aedes.publish(
          {
            cmd: "publish",
            topic,
            payload: Buffer.from(payload),
            qos: options.qos,
            retain: options.retain,
            dup: false,
          },
          (err) => (err ? reject(err) : resolve()),
        ),
      );
    },
    async close() {
      clearInterval(sweep);
      refusals.stop();
      stopWatching();
      for (const session of sessions.all()) session.reason ??= "server_shutdown";
      const stopped = listeners.close();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await cluster?.close();
      // Connections that never completed CONNECT are not Aedes clients yet.
      for (const guard of [...admission.connections()]) guard.destroy();
      await stopped;
    },
  };
}

/** What the connection budgets do, for /metrics: no label names an address or a device. */
function connectionMetrics(registry: MetricsRegistry, preAuth: () => number) {
  new Gauge({
    name: "refeed_mqtt_pre_auth_connections",
    help: "MQTT connections that have not finished CONNECT and authentication",
    registers: [registry],
    collect() {
      this.set(preAuth());
    },
  });
  return {
    refused: new Counter({
      name: "refeed_mqtt_connections_refused_total",
      help: "New MQTT connections refused, by budget (max_connections: every open connection is authenticated)",
      labelNames: ["reason"],
      registers: [registry],
    }),
    gaveWay: new Counter({
      name: "refeed_mqtt_pre_auth_closed_total",
      help: "Pre-auth MQTT connections closed to make room for a newer one, by budget",
      labelNames: ["reason"],
      registers: [registry],
    }),
  };
}
