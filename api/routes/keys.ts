import type { FastifyPluginAsync } from "fastify";
import { KeyError, keyInputSchema, type ApiKey, type Keys } from "../../keys/index.ts";
import { requireRole, type Authenticator } from "../auth.ts";
import { zodMessage } from "../errors.ts";

const iso = (date: Date | undefined) => (date ? date.toISOString() : null);

/** What the API shows of a key: never its token or hash. */
export function describeKey(key: ApiKey, now = Date.now()) {
  const state = key.revokedAt ? "revoked" : key.expiresAt && key.expiresAt.getTime() <= now ? "expired" : "active";
  return {
    id: key.id,
    name: key.name,
    role: key.role,
    state,
    createdAt: key.createdAt.toISOString(),
    createdBy: key.createdBy,
    expiresAt: iso(key.expiresAt),
    revokedAt: iso(key.revokedAt),
    revokedBy: key.revokedBy ?? null,
  };
}

/** Staff API keys, the admin's to create, list and revoke. */
export const keyRoutes = (deps: { keys: Keys; auth: Authenticator }): FastifyPluginAsync =>
  async (app) => {
    app.addHook("onRequest", requireRole(deps.auth, "admin"));
    const by = (name: string | undefined) => name ?? "unknown";

    app.post("/api/keys", async (request, reply) => {
      const parsed = keyInputSchema.safeParse(request.body ?? {});
      if (!parsed.success) return reply.code(400).send({ error: "invalid_body", message: zodMessage(parsed.error) });
      const { key, token } = await deps.keys.create(parsed.data, by(request.principal?.name));
      return reply.code(201).send({ ...describeKey(key), token });
    });

    app.get("/api/keys", async () => deps.keys.list().map((key) => describeKey(key)));

    app.get<{ Params: { id: string } }>("/api/keys/:id", async (request, reply) => {
      const key = deps.keys.get(request.params.id);
      if (!key) return reply.code(404).send({ error: "key_not_found", message: `no API key '${request.params.id}'` });
      return describeKey(key);
    });

    app.delete<{ Params: { id: string } }>("/api/keys/:id", async (request, reply) => {
      try {
        return describeKey(await deps.keys.revoke(request.params.id, by(request.principal?.name)));
      } catch (err) {
        if (err instanceof KeyError) return reply.code(404).send({ error: "key_not_found", message: err.message });
        throw err;
      }
    });
  };
