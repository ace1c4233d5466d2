import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { Authenticator } from "../../auth/index.ts";
import { KeyError, keyInputSchema, type ApiKey, type Keys } from "../../keys/index.ts";
import { errorBody } from "../errors.ts";
import { defineRoute } from "../route.ts";
import { idParams, isoTime } from "../schemas.ts";

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

const EXAMPLE = {
  id: "k_01",
  name: "support desk",
  role: "support",
  state: "active",
  createdAt: "2026-05-04T10:00:00.000Z",
  createdBy: "admin",
  expiresAt: null,
  revokedAt: null,
  revokedBy: null,
};
const keyView = z
  .object({
    id: z.string(),
    name: z.string(),
    role: z.enum(["admin", "product", "support"]),
    state: z.enum(["active", "expired", "revoked"]),
    createdAt: isoTime,
    createdBy: z.string(),
    expiresAt: isoTime.nullable(),
    revokedAt: isoTime.nullable(),
    revokedBy: z.string().nullable(),
  })
  .meta({ example: EXAMPLE });
const created = keyView.extend({ token: z.string() }).meta({ example: { ...EXAMPLE, token: "rfk.azAx.c2VjcmV0" } });
const noKey = { description: "no such key", schema: errorBody };

/** Staff API keys, the admin's to create, list and revoke. */
export const keyRoutes =
  (deps: { keys: Keys; auth: Authenticator }): FastifyPluginAsync =>
  (app) => {
    const by = (name: string | undefined) => name ?? "unknown";
    const auth = ["admin"] as const;

    defineRoute(app, deps.auth, {
      method: "POST",
      url: "/api/keys",
      tag: "keys",
      summary: "Create a staff API key",
      description:
        "Roles: admin, product (rules), support (read-only views). The token (rfk.) is answered once; only its scrypt hash is kept.",
      auth,
      body: keyInputSchema,
      responses: { 201: { description: "the key with its token", schema: created } },
      async handler(request, reply) {
        const { key, token } = await deps.keys.create(request.body, by(request.principal?.name));
        return reply.code(201).send({ ...describeKey(key), token });
      },
    });

    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/api/keys",
      tag: "keys",
      summary: "List staff API keys (never the tokens)",
      auth,
      responses: { 200: { description: "every key", schema: z.array(keyView) } },
      handler: () => deps.keys.list().map((key) => describeKey(key)),
    });

    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/api/keys/:id",
      tag: "keys",
      summary: "One staff API key",
      auth,
      params: idParams,
      responses: { 200: { description: "the key", schema: keyView }, 404: noKey },
      handler(request) {
        const key = deps.keys.get(request.params.id);
        if (!key) throw new KeyError("KEY_NOT_FOUND", `no API key '${request.params.id}'`);
        return describeKey(key);
      },
    });

    defineRoute(app, deps.auth, {
      method: "DELETE",
      url: "/api/keys/:id",
      tag: "keys",
      summary: "Revoke a staff API key at once",
      description: "Live streams opened with it end too.",
      auth,
      params: idParams,
      responses: { 200: { description: "the revoked key", schema: keyView }, 404: noKey },
      handler: async (request) => describeKey(await deps.keys.revoke(request.params.id, by(request.principal?.name))),
    });
    return Promise.resolve();
  };
