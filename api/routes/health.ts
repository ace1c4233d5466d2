import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { Authenticator } from "../../auth/index.ts";
import type { Store } from "../../store/index.ts";
import { defineRoute } from "../route.ts";

const status = z.object({
  status: z.enum(["ok", "degraded"]),
  influx: z.enum(["reachable", "unreachable"]),
  mqttClients: z.number().int(),
});

export const healthRoutes =
  (deps: { store: Store; auth: Authenticator; connectedClients(): number }): FastifyPluginAsync =>
  (app) => {
    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/healthz",
      tag: "health",
      summary: "Liveness and InfluxDB reachability",
      auth: "none",
      responses: {
        200: {
          description: "ok: InfluxDB answers",
          schema: status.meta({ example: { status: "ok", influx: "reachable", mqttClients: 3 } }),
        },
        503: {
          description: "degraded: InfluxDB does not answer (ingest spools to disk meanwhile)",
          schema: status.meta({ example: { status: "degraded", influx: "unreachable", mqttClients: 3 } }),
        },
      },
      async handler(_request, reply) {
        const influx = await deps.store.ping(1500);
        return reply.code(influx ? 200 : 503).send({
          status: influx ? "ok" : "degraded",
          influx: influx ? "reachable" : "unreachable",
          mqttClients: deps.connectedClients(),
        });
      },
    });
    return Promise.resolve();
  };
