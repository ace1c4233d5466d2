import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import { deviceOf, type Authenticator } from "../../auth/index.ts";
import { channels, type Channel, type Ingest } from "../../ingest/index.ts";
import { recordSchemas } from "../../ingest/messages.ts";
import type { Registry } from "../../registry/index.ts";
import { errorBody, RequestError } from "../errors.ts";
import { defineRoute } from "../route.ts";

/**
 * Ingest over HTTP for devices and apps that cannot keep an MQTT connection:
 * the same payloads, the same parser, the same dead letters and consent. The
 * answer comes once the data is durable, like a QoS 1 PUBACK.
 */
const records = recordSchemas({ maxFields: 64 });
const anyRecord = z.union([records.telemetry, records.events, records.feedback, records.acks]);
const refusal = z.object({ index: z.number().int().optional(), reason: z.string(), message: z.string() });
const accepted = z
  .object({ accepted: z.number().int(), withheld: z.number().int(), refused: z.array(refusal) })
  .meta({ example: { accepted: 2, withheld: 0, refused: [{ index: 2, reason: "invalid_metrics", message: "..." }] } });
const refused = errorBody
  .extend({ refused: z.array(refusal).optional() })
  .meta({ example: { error: "invalid_json", message: "the payload is not JSON", refused: [] } });

export const ingestRoutes =
  (deps: { ingest: Ingest; registry: Registry; auth: Authenticator }): FastifyPluginAsync =>
  (app) => {
    // The body is the device's payload byte for byte; ingest parses it as it parses a publish.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => done(null, body));

    defineRoute(app, deps.auth, {
      method: "POST",
      url: "/api/ingest/:channel",
      tag: "ingest",
      summary: "A device's message over HTTP (telemetry, events, feedback or acks)",
      description:
        "`:channel` is telemetry, events, feedback or acks; the body is the same payload as on MQTT (one record, or an array of them), checked the same way. The answer comes once the data is durable. Refused records are listed with their reason and kept as dead letters.",
      auth: "device",
      params: z.object({ channel: z.string() }),
      body: z.union([anyRecord, z.array(anyRecord)]),
      bodyParsedByPart: true,
      responses: {
        200: { description: "`{accepted, withheld, refused}`", schema: accepted },
        400: { description: "nothing in the body fits the contract: `{error: reason}`", schema: refused },
        404: { description: "no such channel", schema: errorBody },
        503: { description: "InfluxDB is down and the spool is full; send it again", schema: errorBody },
      },
      async handler(request, reply) {
        const device = await deviceOf(request, (token) => deps.registry.authenticateBearer(token));
        const channel = request.params.channel;
        if (!(channels as readonly string[]).includes(channel))
          throw new RequestError("UNKNOWN_CHANNEL", `no ingest channel '${channel}'; use ${channels.join(", ")}`);
        const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
        const result = deps.ingest.accept(device, channel as Channel, body, "http");
        // A full spool rejects with SpoolFullError: the catalogue answers 503 and the device retries.
        await result.durable;
        const refusedRecords = result.refused.map((r) => ({
          ...(r.index !== undefined ? { index: r.index } : {}),
          reason: r.reason,
          message: r.detail,
        }));
        if (!result.ok)
          return reply.code(400).send({ error: result.reason, message: result.detail, refused: refusedRecords });
        return { accepted: result.records, withheld: result.withheld, refused: refusedRecords };
      },
    });
    return Promise.resolve();
  };
