import type { FastifyPluginAsync, FastifyReply } from "fastify";
import type { PresenceView } from "../../broker/presence.ts";
import { provisionSchema, RegistryError, type Device, type Registry } from "../../registry/index.ts";
import type { Touchpoints } from "../../subjects/index.ts";
import { requireRole, type Authenticator } from "../../auth/index.ts";
import { zodMessage } from "../errors.ts";
import { doc } from "../openapi.ts";

export interface DeviceRouteDeps {
  registry: Registry;
  touchpoints: Pick<Touchpoints, "linkedSubject" | "link">;
  auth: Authenticator;
  stateOf(device: string): Record<string, unknown>;
  presence: { view(device: string): PresenceView };
  delivery: { pending(device: string): number };
}

const iso = (date: Date | undefined) => (date ? date.toISOString() : null);

/** Device lifecycle: provision, list with presence, rotate a token, revoke. */
export const deviceRoutes =
  (deps: DeviceRouteDeps): FastifyPluginAsync =>
  async (app) => {
    app.addHook("onRequest", requireRole(deps.auth, "admin"));

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

    const failed = (reply: FastifyReply, err: unknown) => {
      if (!(err instanceof RegistryError)) throw err;
      if (err.code === "NOT_FOUND") return reply.code(404).send({ error: "not_found", message: err.message });
      if (err.code === "REVOKED") return reply.code(409).send({ error: "device_revoked", message: err.message });
      return reply.code(409).send({ error: "device_exists", message: err.message });
    };

    app.post(
      "/api/devices",
      doc({
        tag: "devices",
        summary: "Provision a device",
        description:
          "Answers the device token once; only its scrypt hash is kept. `subject` links the device to a customer (a personal phone app).",
        auth: ["admin"],
        body: provisionSchema,
        responses: {
          201: "provisioned: `{id, token}`",
          400: "invalid body, naming the field",
          409: "the id exists or was revoked",
        },
      }),
      async (request, reply) => {
        const parsed = provisionSchema.safeParse(request.body ?? {});
        if (!parsed.success) return reply.code(400).send({ error: "invalid_body", message: zodMessage(parsed.error) });
        try {
          const { subject, ...input } = parsed.data;
          const { device, token } = await deps.registry.provision(input);
          if (subject) await deps.touchpoints.link(device.id, subject, request.principal?.name ?? "admin");
          return reply.code(201).send({
            id: device.id,
            token,
            ...(subject ? { subject } : {}),
            ...(device.kind ? { kind: device.kind } : {}),
          });
        } catch (err) {
          return failed(reply, err);
        }
      },
    );

    app.get("/api/devices", doc({ tag: "devices", summary: "List devices with presence", auth: ["admin"] }), async () =>
      deps.registry.list().map(describe),
    );

    app.get<{ Params: { id: string } }>(
      "/api/devices/:id",
      doc({
        tag: "devices",
        summary: "One device, with its profile and pending actions",
        auth: ["admin"],
        responses: { 200: "OK", 404: "no such device" },
      }),
      async (request, reply) => {
        const device = deps.registry.get(request.params.id);
        if (!device) return reply.code(404).send({ error: "not_found", message: `no device '${request.params.id}'` });
        return {
          ...describe(device),
          pendingActions: deps.delivery.pending(device.id),
          profile: deps.stateOf(device.id),
        };
      },
    );

    // The new token is in this answer only; the old one stops working before it is sent.
    app.post<{ Params: { id: string } }>(
      "/api/devices/:id/rotate",
      doc({
        tag: "devices",
        summary: "Rotate a device token",
        description: "The old token and its live sessions stop before the answer, which holds the new token once.",
        auth: ["admin"],
        responses: { 200: "`{id, token, rotatedAt}`", 404: "no such device", 409: "the device is revoked" },
      }),
      async (request, reply) => {
        try {
          const { device, token } = await deps.registry.rotate(request.params.id);
          return { id: device.id, token, rotatedAt: iso(device.rotatedAt) };
        } catch (err) {
          return failed(reply, err);
        }
      },
    );

    const revoke = async (id: string, reply: FastifyReply) => {
      try {
        return describe(await deps.registry.revoke(id));
      } catch (err) {
        return failed(reply, err);
      }
    };
    app.post<{ Params: { id: string } }>(
      "/api/devices/:id/revoke",
      doc({
        tag: "devices",
        summary: "Revoke a device for good",
        description: "Its token stops working and live sessions are closed at once; its data stays.",
        auth: ["admin"],
        responses: { 200: "the revoked device", 404: "no such device" },
      }),
      (request, reply) => revoke(request.params.id, reply),
    );
    // DELETE revokes: the device's history stays in InfluxDB and its id is never given to another device.
    app.delete<{ Params: { id: string } }>(
      "/api/devices/:id",
      doc({
        tag: "devices",
        summary: "Revoke a device (same as POST .../revoke)",
        auth: ["admin"],
        responses: { 200: "the revoked device", 404: "no such device" },
      }),
      (request, reply) => revoke(request.params.id, reply),
    );
  };
