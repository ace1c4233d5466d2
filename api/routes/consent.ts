import type { FastifyPluginAsync } from "fastify";
import { consentChangesSchema, type Consent } from "../../consent/index.ts";
import { StoreWriteError } from "../../store/index.ts";
import { requireRole, type Authenticator } from "../../auth/index.ts";
import { subjectInPath } from "../subject-in-path.ts";
import { zodMessage } from "../errors.ts";
import { doc } from "../openapi.ts";

/** Opt-in and opt-out per purpose, with the history: an admin for anyone, a subject token for its own subject only. */
export const consentRoutes =
  (deps: { consent: Consent; auth: Authenticator }): FastifyPluginAsync =>
  async (app) => {
    app.addHook("onRequest", requireRole(deps.auth, "subject"));

    app.put<{ Params: { id: string } }>(
      "/api/subjects/:id/consent",
      doc({
        tag: "consent",
        summary: "Opt in or out per purpose",
        description:
          "Purposes: analytics (telemetry about the customer), personalization (events, rules), feedback. No record means no; an opt-out applies to the next message.",
        auth: ["subject"],
        body: consentChangesSchema,
        responses: {
          200: "the customer's consent now",
          400: "invalid subject or body",
          503: "InfluxDB is unavailable; send it again",
        },
      }),
      async (request, reply) => {
        if (!subjectInPath(request, reply)) return reply;
        const parsed = consentChangesSchema.safeParse(request.body ?? {});
        if (!parsed.success) return reply.code(400).send({ error: "invalid_body", message: zodMessage(parsed.error) });
        try {
          const consent = await deps.consent.record(
            request.params.id,
            parsed.data,
            request.principal?.role === "subject" ? "customer" : "admin",
          );
          return { subject: request.params.id, consent };
        } catch (err) {
          if (!(err instanceof StoreWriteError)) throw err;
          request.log.warn({ subject: request.params.id, err: err.message }, "consent not recorded");
          return reply.code(503).header("retry-after", "5").send({
            error: "unavailable",
            message:
              "consent could not be recorded because InfluxDB is unavailable; opt-outs already apply, send the request again",
          });
        }
      },
    );

    app.get<{ Params: { id: string } }>(
      "/api/subjects/:id/consent",
      doc({
        tag: "consent",
        summary: "Consent now and its history",
        auth: ["subject"],
        responses: { 200: "OK", 400: "invalid subject id" },
      }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        return {
          subject: id,
          consent: deps.consent.current(id),
          history: deps.consent
            .history(id)
            .map((c) => ({ purpose: c.purpose, granted: c.granted, by: c.by, at: c.at.toISOString() })),
        };
      },
    );
  };
