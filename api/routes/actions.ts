import type { FastifyPluginAsync } from "fastify";
import { ActionError, type Actions } from "../../actions/index.ts";
import { requireRole, type Authenticator } from "../auth.ts";

/** Actions with their lifecycle, undo, and how much customers take part. */
export const actionRoutes = (deps: { actions: Actions; auth: Authenticator }): FastifyPluginAsync =>
  async (app) => {
    app.register(async (read) => {
      read.addHook("onRequest", requireRole(deps.auth, "product", "support"));
      read.get<{ Params: { id: string } }>("/api/actions/:id", async (request, reply) => {
        const record = deps.actions.get(request.params.id);
        if (!record) return reply.code(404).send({ error: "action_not_found", message: `no action '${request.params.id}'` });
        // A notification's key is its webhook URL, which often carries a secret: not for the support role.
        const hidden = record.kind === "notify" && request.principal?.role === "support";
        return { ...record, ...(hidden ? { key: null } : {}), createdAt: new Date(record.createdAt).toISOString() };
      });
      read.get<{ Params: { id: string } }>("/api/subjects/:id/participation", async (request) => deps.actions.participation(`subject:${request.params.id}`));
      read.get<{ Params: { id: string } }>("/api/devices/:id/participation", async (request) => deps.actions.participation(`device:${request.params.id}`));
    });

    app.register(async (write) => {
      write.addHook("onRequest", requireRole(deps.auth, "admin"));
      write.post<{ Params: { id: string } }>("/api/actions/:id/undo", async (request, reply) => {
        try {
          const record = await deps.actions.undo(request.params.id, request.principal?.name ?? "unknown");
          return { id: record.id, status: record.status };
        } catch (err) {
          if (err instanceof ActionError) return reply.code(err.code === "ACTION_NOT_FOUND" ? 404 : 409).send({ error: err.code.toLowerCase(), message: err.message });
          throw err;
        }
      });
    });
  };
