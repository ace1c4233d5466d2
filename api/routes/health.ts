import type { FastifyPluginAsync } from "fastify";
import type { Store } from "../../store/index.ts";
import { doc } from "../openapi.ts";

export const healthRoutes =
  (deps: { store: Store; connectedClients(): number }): FastifyPluginAsync =>
  async (app) => {
    app.get(
      "/healthz",
      doc({
        tag: "health",
        summary: "Liveness and InfluxDB reachability",
        auth: "none",
        responses: {
          200: "ok: InfluxDB answers",
          503: "degraded: InfluxDB does not answer (ingest spools to disk meanwhile)",
        },
      }),
      async (_request, reply) => {
        const influx = await deps.store.ping(1500);
        return reply.code(influx ? 200 : 503).send({
          status: influx ? "ok" : "degraded",
          influx: influx ? "reachable" : "unreachable",
          mqttClients: deps.connectedClients(),
        });
      },
    );
  };
