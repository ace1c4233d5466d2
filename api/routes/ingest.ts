import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import { channels, SpoolFullError, type Channel, type Ingest } from "../../ingest/index.ts";
import { recordSchemas } from "../../ingest/messages.ts";
import type { Registry } from "../../registry/index.ts";
import { bearer } from "../../auth/index.ts";
import { doc } from "../openapi.ts";

/**
 * Ingest over HTTP for devices and apps that cannot keep an MQTT connection:
 * the same payloads, the same parser, the same dead letters and consent. The
 * answer comes once the data is durable, like a QoS 1 PUBACK.
 */
const records = recordSchemas({ maxFields: 64 });
const anyRecord = z.union([records.telemetry, records.events, records.feedback, records.acks]);
const ingestDoc = doc({
  tag: "ingest",
  summary: "A device's message over HTTP (telemetry, events, feedback or acks)",
  description:
    "`:channel` is telemetry, events, feedback or acks; the body is the same payload as on MQTT (one record, or an array of them), checked the same way. The answer comes once the data is durable. Refused records are listed with their reason and kept as dead letters.",
  auth: ["device"],
  body: z.union([anyRecord, z.array(anyRecord)]),
  responses: {
    200: "`{accepted, withheld, refused}`",
    400: "nothing in the body fits the contract: `{error: reason}`",
    404: "no such channel",
    503: "InfluxDB is down and the spool is full; send it again",
  },
});

export const ingestRoutes =
  (deps: { ingest: Ingest; registry: Registry }): FastifyPluginAsync =>
  async (app) => {
    // The body is the device's payload byte for byte; ingest parses it as it parses a publish.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => done(null, body));

    app.post<{ Params: { channel: string } }>("/api/ingest/:channel", ingestDoc, async (request, reply) => {
      const token = bearer(request);
      if (!token)
        return reply
          .code(401)
          .send({ error: "unauthorized", message: "missing 'Authorization: Bearer <device token>' header" });
      const auth = await deps.registry.authenticateBearer(token);
      if (!auth.ok) {
        const status = auth.reason === "revoked" ? 403 : 401;
        return reply.code(status).send({
          error: "unauthorized",
          message: auth.reason === "revoked" ? "this device is revoked" : "unknown or invalid device token",
        });
      }
      const channel = request.params.channel;
      if (!(channels as readonly string[]).includes(channel)) {
        return reply
          .code(404)
          .send({ error: "not_found", message: `no ingest channel '${channel}'; use ${channels.join(", ")}` });
      }
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      const result = deps.ingest.accept(auth.device.id, channel as Channel, body, "http");
      try {
        await result.durable;
      } catch (err) {
        if (!(err instanceof SpoolFullError)) throw err;
        return reply.code(503).header("retry-after", "5").send({
          error: "unavailable",
          message: "InfluxDB is unavailable and the spool is full; nothing was stored, send it again later",
        });
      }
      const refused = result.refused.map((r) => ({
        ...(r.index !== undefined ? { index: r.index } : {}),
        reason: r.reason,
        message: r.detail,
      }));
      if (!result.ok) return reply.code(400).send({ error: result.reason, message: result.detail, refused });
      return { accepted: result.records, withheld: result.withheld, refused };
    });
  };
