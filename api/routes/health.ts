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
  /** Only after a start from the views' snapshot (InfluxDB was down): `snapshot` until the views caught up from InfluxDB. */
  views: z.enum(["snapshot", "rebuilt"]).optional(),
  mqttClients: z.number().int(),
});

export const healthRoutes =
  (deps: {
    store: Store;
    auth: Authenticator;
    connectedClients(): number;
    redis?: () => "connected" | "disconnected";
    views?: () => "snapshot" | "rebuilt";
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
            "degraded: InfluxDB does not answer (ingest spools to disk meanwhile), or a cluster node does not reach Redis (it holds its changes and serves the devices it can authenticate), or the views still come from the snapshot a start without InfluxDB took them from",
          schema: status.meta({ example: { status: "degraded", influx: "unreachable", mqttClients: 3 } }),
        },
      },
      async handler(_request, reply) {
        const influx = await deps.store.ping(1500);
        const redis = deps.redis?.();
        const views = deps.views?.();
        const ok = influx && redis !== "disconnected" && views !== "snapshot";
        return reply.code(ok ? 200 : 503).send({
          status: ok ? "ok" : "degraded",
          influx: influx ? "reachable" : "unreachable",
          ...(redis ? { redis: redis === "connected" ? ("reachable" as const) : ("unreachable" as const) } : {}),
          ...(views ? { views } : {}),
          mqttClients: deps.connectedClients(),
        });
      },
    });
    return Promise.resolve();
  };
