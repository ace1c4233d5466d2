import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { Authenticator } from "../../auth/index.ts";
import type { PresenceView } from "../../broker/presence.ts";
import { provisionSchema, RegistryError, type Device, type Registry } from "../../registry/index.ts";
import type { Touchpoints } from "../../subjects/index.ts";
import { errorBody } from "../errors.ts";
import { defineRoute } from "../route.ts";
import { deviceRow, idParams, isoTime, profile } from "../schemas.ts";

export interface DeviceRouteDeps {
  registry: Registry;
  touchpoints: Pick<Touchpoints, "linkedSubject" | "link">;
  auth: Authenticator;
  stateOf(device: string): Record<string, unknown>;
  presence: { view(device: string): PresenceView };
  delivery: { pending(device: string): number };
}

const iso = (date: Date | undefined) => (date ? date.toISOString() : null);

const provisioned = z
  .object({ id: z.string(), token: z.string(), subject: z.string().optional(), kind: z.string().optional() })
  .meta({ example: { id: "tv-livingroom", token: "rfd.dHYtbGl2aW5ncm9vbQ.c2VjcmV0", kind: "tv" } });
const rotated = z.object({ id: z.string(), token: z.string(), rotatedAt: isoTime.nullable() }).meta({
  example: { id: "tv-livingroom", token: "rfd.dHYtbGl2aW5ncm9vbQ.bmV3", rotatedAt: "2026-05-04T10:00:00.000Z" },
});
const oneDevice = deviceRow.extend({ pendingActions: z.number().int(), profile }).meta({
  example: {
    ...(deviceRow.meta()?.example as object),
    pendingActions: 0,
    profile: { "ui.theme": "cool" },
  },
});
const noDevice = { description: "no such device", schema: errorBody };
// InfluxDB down, or a start from the views' snapshot not caught up yet: the change is not made, not half made.
const unavailable = { description: "InfluxDB is unavailable; nothing was recorded, send it again", schema: errorBody };

/** Device lifecycle: provision, list with presence, rotate a token, revoke. */
export const deviceRoutes =
  (deps: DeviceRouteDeps): FastifyPluginAsync =>
  (app) => {
    const describe = (d: Device) => {
      const presence = deps.presence.view(d.id);
      return {
        id: d.id,
        kind: d.kind ?? null,
        subject: deps.touchpoints.linkedSubject(d.id) ?? null,
        createdAt: d.createdAt.toISOString(),
        revoked: d.revoked,
        revokedAt: iso(d.revokedAt),
        rotatedAt: iso(d.rotatedAt),
        online: presence.online,
        connections: presence.connections,
        lastSeen: iso(presence.lastSeen),
      };
    };
    /** Every device route needs the admin token. */
    const auth = ["admin"] as const;

    defineRoute(app, deps.auth, {
      method: "POST",
      url: "/api/devices",
      tag: "devices",
      summary: "Provision a device",
      description:
        "Answers the device token once; only its scrypt hash is kept. `subject` links the device to a customer (a personal phone app). Every field is optional, but the body is not: send `{}` for a generated id.",
      auth,
      body: provisionSchema,
      responses: {
        201: { description: "provisioned: `{id, token}`", schema: provisioned },
        409: { description: "the id exists or was revoked", schema: errorBody },
        503: unavailable,
      },
      async handler(request, reply) {
        const { subject, ...input } = request.body;
        const { device, token } = await deps.registry.provision(input);
        if (subject) await deps.touchpoints.link(device.id, subject, request.principal?.name ?? "admin");
        return reply.code(201).send({
          id: device.id,
          token,
          ...(subject ? { subject } : {}),
          ...(device.kind ? { kind: device.kind } : {}),
        });
      },
    });

    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/api/devices",
      tag: "devices",
      summary: "List devices with presence",
      auth,
      responses: { 200: { description: "every device", schema: z.array(deviceRow) } },
      handler: () => deps.registry.list().map(describe),
    });

    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/api/devices/:id",
      tag: "devices",
      summary: "One device, with its profile and pending actions",
      auth,
      params: idParams,
      responses: { 200: { description: "the device", schema: oneDevice }, 404: noDevice },
      handler(request) {
        const device = deps.registry.get(request.params.id);
        if (!device) throw new RegistryError("NOT_FOUND", `no device '${request.params.id}'`);
        return {
          ...describe(device),
          pendingActions: deps.delivery.pending(device.id),
          profile: deps.stateOf(device.id),
        };
      },
    });

    // The new token is in this answer only; the old one stops working before it is sent.
    defineRoute(app, deps.auth, {
      method: "POST",
      url: "/api/devices/:id/rotate",
      tag: "devices",
      summary: "Rotate a device token",
      description: "The old token and its live sessions stop before the answer, which holds the new token once.",
      auth,
      params: idParams,
      responses: {
        200: { description: "`{id, token, rotatedAt}`", schema: rotated },
        404: noDevice,
        409: { description: "the device is revoked", schema: errorBody },
        503: unavailable,
      },
      async handler(request) {
        const { device, token } = await deps.registry.rotate(request.params.id);
        return { id: device.id, token, rotatedAt: iso(device.rotatedAt) };
      },
    });

    // DELETE revokes too: the device's history stays in InfluxDB and its id is never given to another device.
    for (const [method, url, summary] of [
      ["POST", "/api/devices/:id/revoke", "Revoke a device for good"],
      ["DELETE", "/api/devices/:id", "Revoke a device (same as POST .../revoke)"],
    ] as const)
      defineRoute(app, deps.auth, {
        method,
        url,
        tag: "devices",
        summary,
        description: "Its token stops working and live sessions are closed at once; its data stays.",
        auth,
        params: idParams,
        responses: { 200: { description: "the revoked device", schema: deviceRow }, 404: noDevice, 503: unavailable },
        handler: async (request) => describe(await deps.registry.revoke(request.params.id)),
      });
    return Promise.resolve();
  };
