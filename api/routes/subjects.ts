import { Readable } from "node:stream";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import type { Actions, ActionRecord } from "../../actions/index.ts";
import type { Consent } from "../../consent/index.ts";
import { ErasureError, type Privacy } from "../../privacy/index.ts";
import { DEVICE_ID, type Registry } from "../../registry/index.ts";
import { TokenError, type SubjectTokens, type Touchpoints } from "../../subjects/index.ts";
import { StoreWriteError } from "../../store/index.ts";
import { requireRole, type Authenticator, type Principal, type Role } from "../../auth/index.ts";
import { subjectInPath } from "../subject-in-path.ts";
import { zodMessage } from "../errors.ts";
import { doc, type RouteDoc } from "../openapi.ts";

export interface SubjectRouteDeps {
  auth: Authenticator;
  registry: Registry;
  touchpoints: Touchpoints;
  tokens: SubjectTokens;
  actions: Actions;
  consent: Consent;
  privacy: Privacy;
}

type Params = { Params: { id: string } };

const PROFILE_KEY = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/;
const profileBody = z.record(z.string(), z.unknown()).superRefine((body, ctx) => {
  const keys = Object.keys(body);
  if (keys.length === 0)
    ctx.addIssue({
      code: "custom",
      message: 'name at least one key, e.g. {"ui.font_size": "large"}; null clears a key',
    });
  if (keys.length > 64) ctx.addIssue({ code: "custom", message: "at most 64 keys at once" });
  for (const key of keys) {
    if (!PROFILE_KEY.test(key))
      ctx.addIssue({
        code: "custom",
        path: [key],
        message: "a dotted key such as ui.theme (lowercase letters, digits, '_')",
      });
    else if (JSON.stringify(body[key]).length > 4096)
      ctx.addIssue({ code: "custom", path: [key], message: "a value is at most 4,096 characters of JSON" });
  }
});
const tokenBody = z.strictObject({ label: z.string().min(1).max(64).optional() });
const exportQuery = z.object({ format: z.enum(["json", "csv"]).optional() });

/** An action as the API shows it. A notification's key is its webhook URL, which often carries a secret: only admin and product see it. */
export function publicAction(record: ActionRecord, principal: Principal | undefined) {
  const hidden = record.kind === "notify" && principal?.role !== "admin" && principal?.role !== "product";
  return { ...record, ...(hidden ? { key: null } : {}), createdAt: new Date(record.createdAt).toISOString() };
}

/** Whether a principal may see an action: staff, or the subject it is about. */
export const isAbout = (record: ActionRecord, subject: string) =>
  record.owner === `subject:${subject}` || record.subject === subject;

/**
 * A customer's own data. Staff roles reach every subject; a subject token
 * reaches its own subject only, and is told 403 for any other id.
 */
export const subjectRoutes =
  (deps: SubjectRouteDeps): FastifyPluginAsync =>
  async (app) => {
    const by = (request: FastifyRequest) => request.principal?.name ?? "unknown";
    /** Who may call a route (admin always may) and what /docs says of it, in one place. */
    const route = (d: Omit<RouteDoc, "tag" | "auth"> & { auth: Role[] }) => ({
      onRequest: requireRole(deps.auth, ...d.auth),
      ...doc({ tag: "subjects", ...d }),
    });
    const unavailable = (reply: FastifyReply, err: unknown, what: string) => {
      if (!(err instanceof StoreWriteError)) throw err;
      return reply
        .code(503)
        .header("retry-after", "5")
        .send({
          error: "unavailable",
          message: `${what} could not be recorded because InfluxDB is unavailable; send the request again`,
        });
    };

    app.get<Params>(
      "/api/subjects/:id",
      route({
        summary: "A customer: consent, profile, touchpoints, sessions, participation",
        auth: ["support", "subject"],
        responses: { 200: "OK", 400: "invalid subject id" },
      }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        return {
          subject: id,
          consent: deps.consent.current(id),
          profile: deps.actions.profileOf(`subject:${id}`),
          devices: deps.touchpoints.linksOf(id).map((l) => ({ device: l.device, since: l.since.toISOString() })),
          sessions: deps.touchpoints.sessionsOf(id).map((s) => ({ device: s.device, since: s.since.toISOString() })),
          participation: deps.actions.participation(`subject:${id}`),
        };
      },
    );

    // Tokens: an admin (an app's backend, at the customer's login) issues them; the customer can list and revoke their own.
    app.post<Params>(
      "/api/subjects/:id/tokens",
      route({
        summary: "Issue a subject token",
        description:
          "For an app's backend at the customer's login: the token (rfs.) is answered once and lets the customer act on their own data only.",
        auth: ["admin"],
        body: tokenBody,
        responses: {
          201: "`{subject, id, token, label, createdAt}`",
          400: "invalid subject or body",
          503: "InfluxDB is unavailable",
        },
      }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        const parsed = tokenBody.safeParse(request.body ?? {});
        if (!parsed.success) return reply.code(400).send({ error: "invalid_body", message: zodMessage(parsed.error) });
        try {
          const { token, info } = await deps.tokens.issue(id, parsed.data.label, by(request));
          return reply.code(201).send({
            subject: id,
            id: info.id,
            token,
            label: info.label ?? null,
            createdAt: info.createdAt.toISOString(),
          });
        } catch (err) {
          return unavailable(reply, err, "the token");
        }
      },
    );
    app.get<Params>(
      "/api/subjects/:id/tokens",
      route({ summary: "A customer's tokens (never the secrets)", auth: ["subject"] }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        return deps.tokens.list(id).map((t) => ({
          id: t.id,
          label: t.label ?? null,
          createdAt: t.createdAt.toISOString(),
          createdBy: t.createdBy,
          revokedAt: t.revokedAt?.toISOString() ?? null,
        }));
      },
    );
    app.delete<{ Params: { id: string; token: string } }>(
      "/api/subjects/:id/tokens/:token",
      route({
        summary: "Revoke a subject token",
        auth: ["subject"],
        responses: { 200: "`{id, revokedAt}`", 404: "no such token" },
      }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        try {
          const t = await deps.tokens.revoke(id, request.params.token, by(request));
          return { id: t.id, revokedAt: t.revokedAt?.toISOString() ?? null };
        } catch (err) {
          if (err instanceof TokenError)
            return reply.code(404).send({ error: "token_not_found", message: err.message });
          return unavailable(reply, err, "the revocation");
        }
      },
    );

    app.get<Params>(
      "/api/subjects/:id/profile",
      route({ summary: "A customer's personalization profile", auth: ["support", "subject"] }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        return { subject: id, profile: deps.actions.profileOf(`subject:${id}`) };
      },
    );
    app.put<Params>(
      "/api/subjects/:id/profile",
      route({
        summary: "The customer sets profile keys",
        description:
          "Each key set (or cleared with null) is an undoable action that reaches every touchpoint of the customer.",
        auth: ["subject"],
        body: profileBody,
        responses: {
          200: "`{subject, profile, actions}`",
          400: "invalid keys or values",
          503: "InfluxDB is unavailable",
        },
      }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        const parsed = profileBody.safeParse(request.body ?? {});
        if (!parsed.success) return reply.code(400).send({ error: "invalid_body", message: zodMessage(parsed.error) });
        try {
          const records = await deps.actions.setProfile(id, parsed.data, by(request));
          return { subject: id, profile: deps.actions.profileOf(`subject:${id}`), actions: records.map((r) => r.id) };
        } catch (err) {
          return unavailable(reply, err, "the profile change");
        }
      },
    );

    app.get<Params>(
      "/api/subjects/:id/devices",
      route({ summary: "A customer's linked devices and open sessions", auth: ["support", "subject"] }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        return {
          subject: id,
          linked: deps.touchpoints
            .linksOf(id)
            .map((l) => ({ device: l.device, since: l.since.toISOString(), by: l.by })),
          sessions: deps.touchpoints.sessionsOf(id).map((s) => ({ device: s.device, since: s.since.toISOString() })),
        };
      },
    );
    // Linking gives a device the customer's profile, so only an admin links; the customer may unlink their own.
    app.put<{ Params: { id: string; device: string } }>(
      "/api/subjects/:id/devices/:device",
      route({
        summary: "Link a device to a customer",
        description: "The device then carries the customer's profile on its state topic.",
        auth: ["admin"],
        responses: { 200: "linked", 404: "no such device", 409: "the device is revoked" },
      }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        const device = deps.registry.get(request.params.device);
        if (!DEVICE_ID.test(request.params.device) || !device)
          return reply.code(404).send({ error: "not_found", message: `no device '${request.params.device}'` });
        if (device.revoked)
          return reply.code(409).send({ error: "device_revoked", message: `device '${device.id}' is revoked` });
        try {
          await deps.touchpoints.link(device.id, id, by(request));
        } catch (err) {
          return unavailable(reply, err, "the link");
        }
        return { subject: id, device: device.id, linked: true };
      },
    );
    app.delete<{ Params: { id: string; device: string } }>(
      "/api/subjects/:id/devices/:device",
      route({
        summary: "Unlink a device from a customer",
        auth: ["subject"],
        responses: { 200: "unlinked", 404: "the device is not linked to this customer" },
      }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        if (deps.touchpoints.linkedSubject(request.params.device) !== id) {
          return reply
            .code(404)
            .send({ error: "not_linked", message: `device '${request.params.device}' is not linked to this subject` });
        }
        try {
          await deps.touchpoints.unlink(request.params.device, by(request));
        } catch (err) {
          return unavailable(reply, err, "the unlink");
        }
        return { subject: id, device: request.params.device, linked: false };
      },
    );

    app.get<Params>(
      "/api/subjects/:id/actions",
      route({
        summary: "Every action about a customer, with its lifecycle and why",
        auth: ["product", "support", "subject"],
      }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        return deps.actions.actionsOf(id).map((record) => publicAction(record, request.principal));
      },
    );

    // ?format=csv (or Accept: application/zip) answers CSV files in a zip; JSON otherwise. Both are streamed.
    app.get<Params & { Querystring: { format?: string } }>(
      "/api/subjects/:id/export",
      route({
        summary: "Everything held about a customer (streamed)",
        description:
          "JSON, or `?format=csv` (or `Accept: application/zip`) for CSV files in a zip: consent history, profile and its history, every stored point linked to them, every action with its lifecycle and why, derived scores.",
        auth: ["subject"],
        query: exportQuery,
        responses: { 200: "the export, as an attachment", 400: "invalid format" },
      }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        const format = request.query.format ?? (/application\/zip/.test(request.headers.accept ?? "") ? "csv" : "json");
        if (format !== "json" && format !== "csv")
          return reply
            .code(400)
            .send({ error: "invalid_format", message: "format is json or csv (CSV files in a zip)" });
        const name = `refeed-export-${id.replaceAll(":", "_")}`;
        const stream = format === "csv" ? deps.privacy.exportZip(id) : Readable.from(deps.privacy.exportJson(id));
        // The answer has started when an error happens; a cut stream (no final chunk) is how the client learns it.
        stream.once("error", (err) => request.log.error({ err: err.message }, "export failed while streaming"));
        return reply
          .header("content-type", format === "csv" ? "application/zip" : "application/json; charset=utf-8")
          .header("content-disposition", `attachment; filename="${name}.${format === "csv" ? "zip" : "json"}"`)
          .header("cache-control", "no-store")
          .send(stream);
      },
    );

    app.delete<Params>(
      "/api/subjects/:id",
      route({
        summary: "Erase a customer",
        description:
          "From every measurement in InfluxDB and every in-memory view, recorded as an erasure event that holds no erased data.",
        auth: ["subject"],
        responses: { 200: "the erasure report", 503: "InfluxDB failed or is catching up; send it again to finish" },
      }),
      async (request, reply) => {
        const id = subjectInPath(request, reply);
        if (!id) return reply;
        try {
          return await deps.privacy.erase(id, request.principal?.role === "subject" ? "customer" : by(request));
        } catch (err) {
          if (err instanceof ErasureError)
            return reply
              .code(503)
              .header("retry-after", "30")
              .send({ error: err.code.toLowerCase(), message: err.message });
          request.log.error({ err: (err as Error).message }, "erasure failed");
          return reply.code(503).header("retry-after", "10").send({
            error: "erasure_incomplete",
            message:
              "the erasure could not be completed (InfluxDB failed); nothing of the customer is used meanwhile, send the request again to finish it",
          });
        }
      },
    );
  };
