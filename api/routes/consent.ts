import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { Authenticator } from "../../auth/index.ts";
import { consentChangesSchema, type Consent } from "../../consent/index.ts";
import { errorBody } from "../errors.ts";
import { defineRoute } from "../route.ts";
import { idParams, isoTime } from "../schemas.ts";
import { subjectInPath } from "../subject-in-path.ts";

const state = z.record(z.string(), z.boolean());
const EXAMPLE = { analytics: false, personalization: true, feedback: true };
const now = z
  .object({ subject: z.string(), consent: state })
  .meta({ example: { subject: "cust-1", consent: EXAMPLE } });
const withHistory = z
  .object({
    subject: z.string(),
    consent: state,
    history: z.array(z.object({ purpose: z.string(), granted: z.boolean(), by: z.string(), at: isoTime })),
  })
  .meta({
    example: {
      subject: "cust-1",
      consent: EXAMPLE,
      history: [{ purpose: "personalization", granted: true, by: "customer", at: "2026-05-04T10:00:00.000Z" }],
    },
  });

/** Opt-in and opt-out per purpose, with the history: an admin for anyone, a subject token for its own subject only. */
export const consentRoutes =
  (deps: { consent: Consent; auth: Authenticator }): FastifyPluginAsync =>
  (app) => {
    defineRoute(app, deps.auth, {
      method: "PUT",
      url: "/api/subjects/:id/consent",
      tag: "consent",
      summary: "Opt in or out per purpose",
      description:
        "Purposes: analytics (telemetry about the customer), personalization (events, rules), feedback. No record means no; an opt-out applies to the next message.",
      auth: ["subject"],
      params: idParams,
      body: consentChangesSchema,
      responses: {
        200: { description: "the customer's consent now", schema: now },
        503: { description: "InfluxDB is unavailable; opt-outs already apply, send it again", schema: errorBody },
      },
      async handler(request) {
        const id = subjectInPath(request);
        const consent = await deps.consent.record(
          id,
          request.body,
          request.principal?.role === "subject" ? "customer" : "admin",
        );
        return { subject: id, consent };
      },
    });

    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/api/subjects/:id/consent",
      tag: "consent",
      summary: "Consent now and its history",
      auth: ["subject"],
      params: idParams,
      responses: { 200: { description: "consent and its history", schema: withHistory } },
      handler(request) {
        const id = subjectInPath(request);
        return {
          subject: id,
          consent: deps.consent.current(id),
          history: deps.consent
            .history(id)
            .map((c) => ({ purpose: c.purpose, granted: c.granted, by: c.by, at: c.at.toISOString() })),
        };
      },
    });
    return Promise.resolve();
  };
