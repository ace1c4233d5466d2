import type { FastifyPluginAsync } from "fastify";
import { KeyError, keyInputSchema, type ApiKey, type Keys } from "../../keys/index.ts";
import { requireRole, type Authenticator } from "../../auth/index.ts";
import { zodMessage } from "../errors.ts";
import { doc } from "../openapi.ts";

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
export const keyRoutes =
  (deps: { keys: Keys; auth: Authenticator }): FastifyPluginAsync =>
  async (app) => {
    app.addHook("onRequest", requireRole(deps.auth, "admin"));
    const by = (name: string | undefined) => name ?? "unknown";

    app.post(
      "/api/keys",
      doc({
        tag: "keys",
        summary: "Create a staff API key",
        description:
          "Roles: admin, product (rules), support (read-only views). The token (rfk.) is answered once; only its scrypt hash is kept.",
        auth: ["admin"],
        body: keyInputSchema,
        responses: { 201: "the key with its token", 400: "invalid body, naming the field" },
      }),
      async (request, reply) => {
        const parsed = keyInputSchema.safeParse(request.body ?? {});
        if (!parsed.success) return reply.code(400).send({ error: "invalid_body", message: zodMessage(parsed.error) });
        const { key, token } = await deps.keys.create(parsed.data, by(request.principal?.name));
        return reply.code(201).send({ ...describeKey(key), token });
      },
    );

    app.get(
      "/api/keys",
      doc({ tag: "keys", summary: "List staff API keys (never the tokens)", auth: ["admin"] }),
      async () => deps.keys.list().map((key) => describeKey(key)),
    );

    app.get<{ Params: { id: string } }>(
      "/api/keys/:id",
      doc({ tag: "keys", summary: "One staff API key", auth: ["admin"], responses: { 200: "OK", 404: "no such key" } }),
      async (request, reply) => {
        const key = deps.keys.get(request.params.id);
        if (!key) return reply.code(404).send({ error: "key_not_found", message: `no API key '${request.params.id}'` });
        return describeKey(key);
      },
    );

    app.delete<{ Params: { id: string } }>(
      "/api/keys/:id",
      doc({
        tag: "keys",
        summary: "Revoke a staff API key at once",
        description: "Live streams opened with it end too.",
        auth: ["admin"],
        responses: { 200: "the revoked key", 404: "no such key" },
      }),
      async (request, reply) => {
        try {
          return describeKey(await deps.keys.revoke(request.params.id, by(request.principal?.name)));
        } catch (err) {
          if (err instanceof KeyError) return reply.code(404).send({ error: "key_not_found", message: err.message });
          throw err;
        }
      },
    );
  };
