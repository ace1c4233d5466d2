import type { FastifyPluginAsync } from "fastify";
import { Gauge, type Registry } from "prom-client";
import { doc } from "../openapi.ts";

/** Prometheus text format, no auth (like /healthz): no label names a device or a customer. */
export const metricsRoutes =
  (deps: { metrics: Registry; connectedClients(): number }): FastifyPluginAsync =>
  async (app) => {
    new Gauge({
      name: "refeed_mqtt_connected_clients",
      help: "MQTT clients connected (TCP and WebSocket)",
      registers: [deps.metrics],
      collect() {
        this.set(deps.connectedClients());
      },
    });
    app.get(
      "/metrics",
      doc({
        tag: "metrics",
        summary: "Prometheus metrics",
        description: "Prometheus text format. No label names a device or a customer.",
        auth: "none",
      }),
      async (_request, reply) => reply.type(deps.metrics.contentType).send(await deps.metrics.metrics()),
    );
  };
