import type { FastifyPluginAsync } from "fastify";
import { Gauge, type Registry } from "prom-client";
import { z } from "zod";
import type { Authenticator } from "../../auth/index.ts";
import { defineRoute } from "../route.ts";

/** Prometheus text format, no auth (like /healthz): no label names a device or a customer. */
export const metricsRoutes =
  (deps: { metrics: Registry; auth: Authenticator; connectedClients(): number }): FastifyPluginAsync =>
  (app) => {
    new Gauge({
      name: "refeed_mqtt_connected_clients",
      help: "MQTT clients connected (TCP and WebSocket)",
      registers: [deps.metrics],
      collect() {
        this.set(deps.connectedClients());
      },
    });
    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/metrics",
      tag: "metrics",
      summary: "Prometheus metrics",
      description: "Prometheus text format. No label names a device or a customer.",
      auth: "none",
      responses: {
        200: {
          description: "the metrics",
          types: {
            "text/plain": z.string().meta({
              example:
                "# HELP refeed_mqtt_connected_clients MQTT clients connected (TCP and WebSocket)\n# TYPE refeed_mqtt_connected_clients gauge\nrefeed_mqtt_connected_clients 3\n",
            }),
          },
        },
      },
      handler: async (_request, reply) => reply.type(deps.metrics.contentType).send(await deps.metrics.metrics()),
    });
    return Promise.resolve();
  };
