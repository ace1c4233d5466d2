import { Readable } from "node:stream";
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { z } from "zod";
import type { Authenticator, Principal } from "../../auth/index.ts";
import type { Actions, ActionRecord } from "../../actions/index.ts";
import type { Consent } from "../../consent/index.ts";
import { ErasureError, type Privacy } from "../../privacy/index.ts";
import { DEVICE_ID, RegistryError, type Registry } from "../../registry/index.ts";
import type { SubjectTokens, Touchpoints } from "../../subjects/index.ts";
import { errorBody, RequestError } from "../errors.ts";
import { defineRoute, type Answer, type RouteDef } from "../route.ts";
import { action, idParams, isoTime, participation, profile } from "../schemas.ts";
import { subjectInPath } from "../subject-in-path.ts";

export interface SubjectRouteDeps {
  auth: Authenticator;
  registry: Registry;
  touchpoints: Touchpoints;
  tokens: SubjectTokens;
  actions: Actions;
  consent: Consent;
  privacy: Privacy;
}

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
const exportQuery = z.object({ format: z.string().optional() });
const deviceParams = z.object({ id: z.string(), device: z.string() });
const tokenParams = z.object({ id: z.string(), token: z.string() });

const since = z.object({ device: z.string(), since: isoTime });
const EXAMPLE_SINCE = { device: "tv-livingroom", since: "2026-05-04T10:00:00.000Z" };
const subjectView = z
  .object({
    subject: z.string(),
    consent: z.record(z.string(), z.boolean()),
    profile,
    devices: z.array(since),
    sessions: z.array(since),
    participation,
  })
  .meta({
    example: {
      subject: "cust-1",
      consent: { analytics: false, personalization: true, feedback: true },
      profile: { "ui.font_size": "large" },
      devices: [EXAMPLE_SINCE],
      sessions: [],
      participation: { asks: 1, answers: 1, accepted: 1, declined: 0, rate: 1 },
    },
  });
const issued = z
  .object({ subject: z.string(), id: z.string(), token: z.string(), label: z.string().nullable(), createdAt: isoTime })
  .meta({
    example: {
      subject: "cust-1",
      id: "t_01",
      token: "rfs.Y3VzdC0x.c2VjcmV0",
      label: "phone app",
      createdAt: "2026-05-04T10:00:00.000Z",
    },
  });
const tokenInfo = z
  .object({
    id: z.string(),
    label: z.string().nullable(),
    createdAt: isoTime,
    createdBy: z.string(),
    revokedAt: isoTime.nullable(),
  })
  .meta({
    example: {
      id: "t_01",
      label: "phone app",
      createdAt: "2026-05-04T10:00:00.000Z",
      createdBy: "admin",
      revokedAt: null,
    },
  });
const revoked = z
  .object({ id: z.string(), revokedAt: isoTime.nullable() })
  .meta({ example: { id: "t_01", revokedAt: "2026-05-04T10:00:00.000Z" } });
const profileView = z
  .object({ subject: z.string(), profile })
  .meta({ example: { subject: "cust-1", profile: { "ui.font_size": "large" } } });
const profileSet = z
  .object({ subject: z.string(), profile, actions: z.array(z.string()) })
  .meta({ example: { subject: "cust-1", profile: { "ui.font_size": "large" }, actions: ["act_01"] } });
const devicesView = z
  .object({ subject: z.string(), linked: z.array(since.extend({ by: z.string() })), sessions: z.array(since) })
  .meta({ example: { subject: "cust-1", linked: [{ ...EXAMPLE_SINCE, by: "admin" }], sessions: [EXAMPLE_SINCE] } });
const linked = z
  .object({ subject: z.string(), device: z.string(), linked: z.boolean() })
  .meta({ example: { subject: "cust-1", device: "tv-livingroom", linked: true } });
const erasure = z
  .object({
    subject: z.string(),
    erasure: z.string(),
    at: isoTime,
    deleted: z.record(z.string(), z.number()),
    redacted: z.record(z.string(), z.number()),
    remaining: z.record(z.string(), z.number()),
  })
  .meta({
    example: {
      subject: "cust-1",
      erasure: "er_01",
      at: "2026-05-04T10:00:00.000Z",
      deleted: { telemetry: 120 },
      redacted: {},
      remaining: {},
    },
  });
const unavailable: Answer = { description: "InfluxDB is unavailable; send it again", schema: errorBody };

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
  (app) => {
    const by = (request: FastifyRequest) => request.principal?.name ?? "unknown";
    const route = <P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(
      def: Omit<RouteDef<P, Q, B>, "tag">,
    ) => defineRoute(app, deps.auth, { tag: "subjects", ...def });

    route({
      method: "GET",
      url: "/api/subjects/:id",
      summary: "A customer: consent, profile, touchpoints, sessions, participation",
      auth: ["support", "subject"],
      params: idParams,
      responses: { 200: { description: "the customer", schema: subjectView } },
      handler(request) {
        const id = subjectInPath(request);
        return {
          subject: id,
          consent: deps.consent.current(id),
          profile: deps.actions.profileOf(`subject:${id}`),
          devices: deps.touchpoints.linksOf(id).map((l) => ({ device: l.device, since: l.since.toISOString() })),
          sessions: deps.touchpoints.sessionsOf(id).map((s) => ({ device: s.device, since: s.since.toISOString() })),
          participation: deps.actions.participation(`subject:${id}`),
        };
      },
    });

    // Tokens: an admin (an app's backend, at the customer's login) issues them; the customer can list and revoke their own.
    route({
      method: "POST",
      url: "/api/subjects/:id/tokens",
      summary: "Issue a subject token",
      description:
        "For an app's backend at the customer's login: the token (rfs.) is answered once and lets the customer act on their own data only. The body is required; `{}` issues a token without a label.",
      auth: ["admin"],
      params: idParams,
      body: tokenBody,
      responses: {
        201: { description: "`{subject, id, token, label, createdAt}`", schema: issued },
        503: unavailable,
      },
      async handler(request, reply) {
        const id = subjectInPath(request);
        const { token, info } = await deps.tokens.issue(id, request.body.label, by(request));
        return reply.code(201).send({
          subject: id,
          id: info.id,
          token,
          label: info.label ?? null,
          createdAt: info.createdAt.toISOString(),
        });
      },
    });
    route({
      method: "GET",
      url: "/api/subjects/:id/tokens",
      summary: "A customer's tokens (never the secrets)",
      auth: ["subject"],
      params: idParams,
      responses: { 200: { description: "the tokens", schema: z.array(tokenInfo) } },
      handler(request) {
        const id = subjectInPath(request);
        return deps.tokens.list(id).map((t) => ({
          id: t.id,
          label: t.label ?? null,
          createdAt: t.createdAt.toISOString(),
          createdBy: t.createdBy,
          revokedAt: t.revokedAt?.toISOString() ?? null,
        }));
      },
    });
    route({
      method: "DELETE",
      url: "/api/subjects/:id/tokens/:token",
      summary: "Revoke a subject token",
      auth: ["subject"],
      params: tokenParams,
      responses: {
        200: { description: "`{id, revokedAt}`", schema: revoked },
        404: { description: "no such token", schema: errorBody },
        503: unavailable,
      },
      async handler(request) {
        const id = subjectInPath(request);
        const t = await deps.tokens.revoke(id, request.params.token, by(request));
        return { id: t.id, revokedAt: t.revokedAt?.toISOString() ?? null };
      },
    });

    route({
      method: "GET",
      url: "/api/subjects/:id/profile",
      summary: "A customer's personalization profile",
      auth: ["support", "subject"],
      params: idParams,
      responses: { 200: { description: "the profile", schema: profileView } },
      handler(request) {
        const id = subjectInPath(request);
        return { subject: id, profile: deps.actions.profileOf(`subject:${id}`) };
      },
    });
    route({
      method: "PUT",
      url: "/api/subjects/:id/profile",
      summary: "The customer sets profile keys",
      description:
        "Each key set (or cleared with null) is an undoable action that reaches every touchpoint of the customer.",
      auth: ["subject"],
      params: idParams,
      body: profileBody,
      responses: { 200: { description: "`{subject, profile, actions}`", schema: profileSet }, 503: unavailable },
      async handler(request) {
        const id = subjectInPath(request);
        const records = await deps.actions.setProfile(id, request.body, by(request));
        return { subject: id, profile: deps.actions.profileOf(`subject:${id}`), actions: records.map((r) => r.id) };
      },
    });

    route({
      method: "GET",
      url: "/api/subjects/:id/devices",
      summary: "A customer's linked devices and open sessions",
      auth: ["support", "subject"],
      params: idParams,
      responses: { 200: { description: "linked devices and sessions", schema: devicesView } },
      handler(request) {
        const id = subjectInPath(request);
        return {
          subject: id,
          linked: deps.touchpoints
            .linksOf(id)
            .map((l) => ({ device: l.device, since: l.since.toISOString(), by: l.by })),
          sessions: deps.touchpoints.sessionsOf(id).map((s) => ({ device: s.device, since: s.since.toISOString() })),
        };
      },
    });
    // Linking gives a device the customer's profile, so only an admin links; the customer may unlink their own.
    route({
      method: "PUT",
      url: "/api/subjects/:id/devices/:device",
      summary: "Link a device to a customer",
      description: "The device then carries the customer's profile on its state topic.",
      auth: ["admin"],
      params: deviceParams,
      responses: {
        200: { description: "linked", schema: linked },
        404: { description: "no such device", schema: errorBody },
        409: { description: "the device is revoked", schema: errorBody },
        503: unavailable,
      },
      async handler(request) {
        const id = subjectInPath(request);
        const device = deps.registry.get(request.params.device);
        if (!DEVICE_ID.test(request.params.device) || !device)
          throw new RegistryError("NOT_FOUND", `no device '${request.params.device}'`);
        if (device.revoked) throw new RegistryError("REVOKED", `device '${device.id}' is revoked`);
        await deps.touchpoints.link(device.id, id, by(request));
        return { subject: id, device: device.id, linked: true };
      },
    });
    route({
      method: "DELETE",
      url: "/api/subjects/:id/devices/:device",
      summary: "Unlink a device from a customer",
      auth: ["subject"],
      params: deviceParams,
      responses: {
        200: { description: "unlinked", schema: linked },
        404: { description: "the device is not linked to this customer", schema: errorBody },
        503: unavailable,
      },
      async handler(request) {
        const id = subjectInPath(request);
        if (deps.touchpoints.linkedSubject(request.params.device) !== id)
          throw new RequestError("NOT_LINKED", `device '${request.params.device}' is not linked to this subject`);
        await deps.touchpoints.unlink(request.params.device, by(request));
        return { subject: id, device: request.params.device, linked: false };
      },
    });

    route({
      method: "GET",
      url: "/api/subjects/:id/actions",
      summary: "Every action about a customer, with its lifecycle and why",
      auth: ["product", "support", "subject"],
      params: idParams,
      responses: { 200: { description: "the actions", schema: z.array(action) } },
      handler(request) {
        const id = subjectInPath(request);
        return deps.actions.actionsOf(id).map((record) => publicAction(record, request.principal));
      },
    });

    // ?format=csv (or Accept: application/zip) answers CSV files in a zip; JSON otherwise. Both are streamed.
    route({
      method: "GET",
      url: "/api/subjects/:id/export",
      summary: "Everything held about a customer (streamed)",
      description:
        "JSON, or `?format=csv` (or `Accept: application/zip`) for CSV files in a zip: consent history, profile and its history, every stored point linked to them, every action with its lifecycle and why, derived scores.",
      auth: ["subject"],
      params: idParams,
      query: exportQuery,
      responses: {
        200: {
          description: "the export, as an attachment",
          types: {
            "application/json": z.record(z.string(), z.unknown()).meta({ example: { subject: "cust-1", consent: [] } }),
            "application/zip": z.string().meta({ format: "binary" }),
          },
        },
        503: unavailable,
      },
      handler(request, reply) {
        const id = subjectInPath(request);
        const format = request.query.format ?? (/application\/zip/.test(request.headers.accept ?? "") ? "csv" : "json");
        if (format !== "json" && format !== "csv")
          throw new RequestError("INVALID_FORMAT", "format is json or csv (CSV files in a zip)");
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
    });

    route({
      method: "DELETE",
      url: "/api/subjects/:id",
      summary: "Erase a customer",
      description:
        "From every measurement in InfluxDB and every in-memory view, recorded as an erasure event that holds no erased data.",
      auth: ["subject"],
      params: idParams,
      responses: {
        200: { description: "the erasure report", schema: erasure },
        503: {
          description:
            "InfluxDB failed or is catching up, or (in a cluster) a live node did not confirm it wrote what it received about the customer; send it again to finish",
          schema: errorBody,
        },
      },
      async handler(request) {
        const id = subjectInPath(request);
        try {
          return await deps.privacy.erase(id, request.principal?.role === "subject" ? "customer" : by(request));
        } catch (err) {
          if (err instanceof ErasureError) throw err;
          request.log.error({ err: (err as Error).message }, "erasure failed");
          throw new RequestError(
            "ERASURE_INCOMPLETE",
            "the erasure could not be completed (InfluxDB failed); nothing of the customer is used meanwhile, send the request again to finish it",
          );
        }
      },
    });
    return Promise.resolve();
  };
