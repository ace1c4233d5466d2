import type { FastifyPluginAsync } from "fastify";
import { channels, SpoolFullError, type Channel, type Ingest } from "../../ingest/index.ts";
import type { Registry } from "../../registry/index.ts";
import { bearer } from "../auth.ts";

/**
 * Ingest over HTTP for devices and apps that cannot keep an MQTT connection:
 * the same payloads, the same parser, the same dead letters and consent. The
 * answer comes once the data is durable, like a QoS 1 PUBACK.
 */
export const ingestRoutes = (deps: { ingest: Ingest; registry: Registry }): FastifyPluginAsync =>
  async (app) => {
    // The body is the device's payload byte for byte; ingest parses it as it parses a publish.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => done(null, body));

    app.post<{ Params: { channel: string } }>("/api/ingest/:channel", async (request, reply) => {
      const token = bearer(request);
      if (!token) return reply.code(401).send({ error: "unauthorized", message: "missing 'Authorization: Bearer <device token>' header" });
      const auth = await deps.registry.authenticateBearer(token);
      if (!auth.ok) {
        const status = auth.reason === "revoked" ? 403 : 401;
        return reply.code(status).send({ error: "unauthorized", message: auth.reason === "revoked" ? "this device is revoked" : "unknown or invalid device token" });
      }
      const channel = request.params.channel;
      if (!(channels as readonly string[]).includes(channel)) {
        return reply.code(404).send({ error: "not_found", message: `no ingest channel '${channel}'; use ${channels.join(", ")}` });
      }
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      const result = deps.ingest.accept(auth.device.id, channel as Channel, body, "http");
      try {
        await result.durable;
      } catch (err) {
        if (!(err instanceof SpoolFullError)) throw err;
        return reply.code(503).header("retry-after", "5").send({ error: "unavailable", message: "InfluxDB is unavailable and the spool is full; nothing was stored, send it again later" });
      }
      const refused = result.refused.map((r) => ({ ...(r.index !== undefined ? { index: r.index } : {}), reason: r.reason, message: r.detail }));
      if (!result.ok) return reply.code(400).send({ error: result.reason, message: result.detail, refused });
      return { accepted: result.records, withheld: result.withheld, refused };
    });
  };
