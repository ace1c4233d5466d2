import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { Authenticator } from "../../auth/index.ts";
import type { Store } from "../../store/index.ts";
import { defineRoute } from "../route.ts";

const status = z.object({
  status: z.enum(["ok", "degraded"]),
  influx: z.enum(["reachable", "unreachable"]),
  /** Only in cluster mode. */
  redis: z.enum(["reachable", "unreachable"]).optional(),
  mqttClients: z.number().int(),
});

export const healthRoutes =
  (deps: {
    store: Store;
    auth: Authenticator;
    connectedClients(): number;
    redis?: () => "connected" | "disconnected";
  }): FastifyPluginAsync =>
  (app) => {
    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/healthz",
      tag: "health",
      summary: "Liveness, and whether InfluxDB (and in cluster mode Redis) answers",
      auth: "none",
      responses: {
        200: {
          description: "ok: InfluxDB answers",
          schema: status.meta({ example: { status: "ok", influx: "reachable", mqttClients: 3 } }),
        },
        503: {
          description:
            "degraded: InfluxDB does not answer (ingest spools to disk meanwhile), or a cluster node does not reach Redis (it holds its changes and serves the devices it can authenticate)",
          schema: status.meta({ example: { status: "degraded", influx: "unreachable", mqttClients: 3 } }),
        },
      },
      async handler(_request, reply) {
        const influx = await deps.store.ping(1500);
        const redis = deps.redis?.();
        const ok = influx && redis !== "disconnected";
        return reply.code(ok ? 200 : 503).send({
          status: ok ? "ok" : "degraded",
          influx: influx ? "reachable" : "unreachable",
          ...(redis ? { redis: redis === "connected" ? ("reachable" as const) : ("unreachable" as const) } : {}),
          mqttClients: deps.connectedClients(),
        });
      },
    });
    return Promise.resolve();
  };
