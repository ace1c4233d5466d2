import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyPluginAsync } from "fastify";
import { Gauge, type Registry } from "prom-client";
import { z } from "zod";
import { AuthError, bearer, type Authenticator } from "../../auth/index.ts";
import { errorBody } from "../errors.ts";
import { defineRoute, type Answer } from "../route.ts";

const digest = (text: string) => createHash("sha256").update(text).digest();

/**
 * Prometheus text format: no label names a device or a customer, so it is open by default (like /healthz);
 * with `token` set (REFEED_METRICS_TOKEN) it wants that bearer token and no other, so a deployment that
 * exposes the HTTP port can close it without handing its scraper a token that changes anything.
 */
export const metricsRoutes =
  (deps: { metrics: Registry; auth: Authenticator; connectedClients(): number; token?: string }): FastifyPluginAsync =>
  (app) => {
    // Digests of equal length, so the comparison takes the same time whatever the caller sent.
    const expected = deps.token === undefined ? undefined : digest(deps.token);
    const check = (token: string | undefined) => {
      if (!expected) return;
      if (token === undefined)
        throw new AuthError("UNAUTHORIZED", "missing 'Authorization: Bearer <token>' header (the metrics token)");
      if (!timingSafeEqual(digest(token), expected)) throw new AuthError("UNAUTHORIZED", "not the metrics token");
    };
    const refusal: Record<number, Answer> = {
      401: { description: "missing token, or not the metrics token", schema: errorBody },
    };
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
      description: expected
        ? "Prometheus text format. No label names a device or a customer.\n\nBearer token of: the metrics token (REFEED_METRICS_TOKEN), no other."
        : "Prometheus text format. No label names a device or a customer.",
      auth: "none",
      responses: {
        ...(expected ? refusal : {}),
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
      handler: async (request, reply) => {
        check(request.headers.authorization === undefined ? undefined : (bearer(request) ?? ""));
        return reply.type(deps.metrics.contentType).send(await deps.metrics.metrics());
      },
    });
    return Promise.resolve();
  };
