import type { FastifyPluginAsync } from "fastify";
import { provisionSchema, RegistryError, type Registry } from "../../registry/index.ts";
import { requireRole, type Authenticator } from "../auth.ts";
import { zodMessage } from "../errors.ts";

export const deviceRoutes = (deps: { registry: Registry; auth: Authenticator; stateOf(device: string): Record<string, unknown> }): FastifyPluginAsync =>
  async (app) => {
    app.addHook("onRequest", requireRole(deps.auth, "admin"));

    app.post("/api/devices", async (request, reply) => {
      const parsed = provisionSchema.safeParse(request.body ?? {});
      if (!parsed.success) return reply.code(400).send({ error: "invalid_body", message: zodMessage(parsed.error) });
      try {
        const { device, token } = await deps.registry.provision(parsed.data);
        return reply.code(201).send({ id: device.id, token, ...(device.subject ? { subject: device.subject } : {}), ...(device.kind ? { kind: device.kind } : {}) });
      } catch (err) {
        if (err instanceof RegistryError) return reply.code(409).send({ error: "device_exists", message: err.message });
        throw err;
      }
    });

    app.get("/api/devices", async () =>
      deps.registry.list().map((d) => ({ id: d.id, kind: d.kind ?? null, subject: d.subject ?? null, createdAt: d.createdAt.toISOString(), revoked: d.revoked })),
    );

    app.get<{ Params: { id: string } }>("/api/devices/:id", async (request, reply) => {
      const device = deps.registry.get(request.params.id);
      if (!device) return reply.code(404).send({ error: "not_found", message: `no device '${request.params.id}'` });
      return {
        id: device.id,
        kind: device.kind ?? null,
        subject: device.subject ?? null,
        createdAt: device.createdAt.toISOString(),
        revoked: device.revoked,
        profile: deps.stateOf(device.id),
      };
    });
  };
