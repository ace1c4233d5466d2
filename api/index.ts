import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifySchema } from "fastify";
import websocket from "@fastify/websocket";
import type { Tickets } from "./tickets.ts";
import { createWebSocketStream } from "ws";
import type { Logger } from "pino";
import type { HttpConfig } from "../config/schema.ts";
import type { Registry } from "../registry/index.ts";
import type { Registry as MetricsRegistry } from "prom-client";
import type { Consent } from "../consent/index.ts";
import type { Ingest } from "../ingest/index.ts";
import type { Store } from "../store/index.ts";
import type { PresenceView } from "../broker/presence.ts";
import type { Authenticator } from "../auth/index.ts";
import { deviceRoutes } from "./routes/devices.ts";
import { ruleRoutes } from "./routes/rules.ts";
import { actionRoutes } from "./routes/actions.ts";
import type { Rules } from "../rules/index.ts";
import type { Actions } from "../actions/index.ts";
import { healthRoutes } from "./routes/health.ts";
import { consentRoutes } from "./routes/consent.ts";
import { ingestRoutes } from "./routes/ingest.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { registerDocs } from "./openapi.ts";
import { defineRoute } from "./route.ts";
import { errorHandler } from "./errors.ts";
import { subjectRoutes } from "./routes/subjects.ts";
import { streamRoutes } from "./routes/stream.ts";
import type { SubjectTokens, Touchpoints } from "../subjects/index.ts";
import type { Privacy } from "../privacy/index.ts";
import type { Keys } from "../keys/index.ts";
import type { Health } from "../health/index.ts";
import { keyRoutes } from "./routes/keys.ts";
import { fleetRoutes } from "./routes/fleet.ts";
import { liveRoutes } from "./routes/live.ts";
import { dashboardRoutes, redirectToDashboard } from "../dashboard/index.ts";

export interface ApiDeps {
  log: Logger;
  store: Store;
  registry: Registry;
  auth: Authenticator;
  mqtt: {
    handle(stream: import("node:stream").Duplex): void;
    readonly connectedClients: number;
    follow(topic: string, onMessage: (payload: Buffer) => void): Promise<() => Promise<void>>;
  };
  rules: Rules;
  actions: Actions;
  presence: { view(device: string): PresenceView };
  delivery: { pending(device: string): number };
  ingest: Ingest;
  consent: Consent;
  metrics: MetricsRegistry;
  touchpoints: Touchpoints;
  tokens: SubjectTokens;
  privacy: Privacy;
  keys: Keys;
  health: Health;
  /** In cluster mode: whether this node reaches Redis now. */
  redis?: () => "connected" | "disconnected";
  /** Only after a start from the views' snapshot: "snapshot" until the views caught up from InfluxDB. */
  views?: () => "snapshot" | "rebuilt";
  /** Live-stream tickets shared by the nodes (cluster mode); in memory by default. */
  tickets?: Tickets;
}

export interface Api {
  readonly address: { host: string; port: number };
  readonly app: FastifyInstance;
  close(): Promise<void>;
}

export async function startApi(config: HttpConfig, deps: ApiDeps): Promise<Api> {
  const answerErrors = errorHandler({ bodyLimitBytes: config.bodyLimitBytes });
  const app: FastifyInstance = Fastify({
    // pino's Logger would make the instance generic over it; every plugin here takes the base logger.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: deps.log.child({ part: "api" }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // Slow clients are cut like MQTT's slow CONNECT; the check interval follows the timeout, or a short
    // headers timeout would only be enforced at Node's default 30 s sweep.
    bodyLimit: config.bodyLimitBytes,
    // Behind a balancer (HAProxy's `option forwardfor`), request.ip is the client's address it names.
    ...(config.trustedProxies.length > 0 ? { trustProxy: config.trustedProxies } : {}),
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    http: {
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(config.headersTimeoutMs / 4))),
    },
    // Errors found while routing (a path segment over maxParamLength: 414) get the same catalogue.
    frameworkErrors: (err, request, reply) => void answerErrors(err, request, reply),
  });

  app.setErrorHandler(answerErrors);
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: "not_found", message: `no route ${request.method} ${request.url}` }),
  );

  await registerDocs(app);
  await app.register(websocket, { options: { maxPayload: config.bodyLimitBytes } });
  // MQTT over WebSocket for apps: same broker, same identity and ACL.
  const mqttDoc: FastifySchema & Record<string, unknown> = {
    tags: ["devices"],
    summary: "MQTT 3.1.1 over WebSocket",
    description:
      "Upgrade to a WebSocket (subprotocol `mqtt`) and speak MQTT: username = device id, password = device token, the same topics, ACL and limits as the TCP listener.\n\nNo authentication (MQTT's CONNECT carries the device token).",
    security: [],
    response: { 101: { description: "switching to the WebSocket protocol", content: {} } },
  };
  app.get("/mqtt", { websocket: true, schema: mqttDoc }, (socket, request) => {
    // The broker's per-address budgets and logs need the client's address, which a WebSocket stream does not carry.
    // request.ip is the socket's address, or the client a trusted balancer names.
    const { remotePort } = request.socket;
    deps.mqtt.handle(Object.assign(createWebSocketStream(socket), { remoteAddress: request.ip, remotePort }));
  });
  await app.register(
    healthRoutes({
      store: deps.store,
      auth: deps.auth,
      connectedClients: () => deps.mqtt.connectedClients,
      redis: deps.redis,
      views: deps.views,
    }),
  );
  await app.register(
    deviceRoutes({
      registry: deps.registry,
      touchpoints: deps.touchpoints,
      auth: deps.auth,
      stateOf: (device) => deps.actions.stateOf(device),
      presence: deps.presence,
      delivery: deps.delivery,
    }),
  );
  await app.register(
    streamRoutes({
      registry: deps.registry,
      auth: deps.auth,
      follow: (topic, onMessage) => deps.mqtt.follow(topic, onMessage),
      stateOf: (device) => deps.actions.stateMessage(device),
      pendingFor: (device) => deps.actions.delivery.pendingFor(device),
    }),
  );
  await app.register(
    subjectRoutes({
      auth: deps.auth,
      registry: deps.registry,
      touchpoints: deps.touchpoints,
      tokens: deps.tokens,
      actions: deps.actions,
      consent: deps.consent,
      privacy: deps.privacy,
    }),
  );
  await app.register(ruleRoutes({ rules: deps.rules, auth: deps.auth }));
  await app.register(actionRoutes({ actions: deps.actions, auth: deps.auth }));
  await app.register(consentRoutes({ consent: deps.consent, auth: deps.auth }));
  await app.register(ingestRoutes({ ingest: deps.ingest, registry: deps.registry, auth: deps.auth }));
  await app.register(
    metricsRoutes({
      metrics: deps.metrics,
      auth: deps.auth,
      connectedClients: () => deps.mqtt.connectedClients,
      ...(config.metricsToken ? { token: config.metricsToken } : {}),
    }),
  );
  await app.register(keyRoutes({ keys: deps.keys, auth: deps.auth }));
  await app.register(fleetRoutes({ health: deps.health, auth: deps.auth }));
  await app.register(
    liveRoutes(
      { intervalMs: deps.health.config.liveIntervalMs, ...(deps.tickets ? { tickets: deps.tickets } : {}) },
      { health: deps.health, auth: deps.auth, log: deps.log, keys: deps.keys },
    ),
  );
  defineRoute(app, deps.auth, {
    method: "GET",
    url: "/dashboard",
    tag: "dashboard",
    summary: "The support dashboard",
    description: "A web page: sign in with a support key. Redirects to /dashboard/.",
    auth: "none",
    responses: { 301: { description: "to /dashboard/" } },
    handler: redirectToDashboard,
  });
  await app.register(dashboardRoutes());

  // The platform logs all listening addresses on one line; fastify's own "listening" lines (one per
  // interface) would repeat it, so its logger is quiet for the duration of listen().
  const level = app.log.level;
  app.log.level = "warn";
  try {
    await app.listen({ port: config.port, host: config.host });
  } finally {
    app.log.level = level;
  }
  const bound = app.server.address();
  const port = typeof bound === "object" && bound ? bound.port : config.port;

  return {
    address: { host: config.host, port },
    app,
    async close() {
      // A connection that does not finish (a client that never reads its answer) must not hold the shutdown up.
      const closing = app.close();
      const late = setTimeout(() => {
        app.server.getConnections((_err, count) =>
          deps.log.warn({ part: "api", connections: count }, "connections still open after 5 s of shutdown are closed"),
        );
        app.server.closeAllConnections();
      }, 5000);
      await closing;
      clearTimeout(late);
    },
  };
}
