import { readFile, writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import type { FastifyReply, FastifyRequest } from "fastify";
import { fingerprint, generateToken, hashToken, verifyToken } from "../registry/token.ts";

/** admin: everything; product: rules; support: read-only views. */
export type Role = "admin" | "product" | "support";
export interface Principal {
  role: Role;
  /** Who, for audit trails such as rule versions. */
  name: string;
}

/** Checks bearer tokens against the admin token's hash; the token itself is never kept. */
export interface Authenticator {
  principal(token: string): Promise<Principal | undefined>;
}

/**
 * The admin token comes from REFEED_ADMIN_TOKEN, or is generated at first
 * start: its scrypt hash is stored in the data dir and the token is handed to
 * `announce` once, for the operator to keep.
 */
export async function adminAuthenticator(options: { token: string | undefined; dataDir: string; announce(token: string): void }): Promise<Authenticator> {
  let hash: string;
  if (options.token) {
    hash = await hashToken(options.token);
  } else {
    const file = path.join(options.dataDir, "admin-token.hash");
    try {
      hash = (await readFile(file, "utf8")).trim();
    } catch {
      const token = generateToken("rfa");
      hash = await hashToken(token);
      await mkdir(options.dataDir, { recursive: true });
      await writeFile(file, `${hash}\n`, { mode: 0o600 });
      options.announce(token);
    }
  }
  let known: string | undefined;
  return {
    async principal(token) {
      const print = fingerprint(token);
      if (known === print) return { role: "admin", name: "admin" };
      if (!(await verifyToken(token, hash))) return undefined;
      known = print;
      return { role: "admin", name: "admin" };
    },
  };
}

export function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  return match?.[1];
}

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** An onRequest hook: the caller needs one of `roles` (admin always passes). */
export function requireRole(auth: Authenticator, ...roles: Role[]) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const token = bearer(request);
    if (!token) return reply.code(401).send({ error: "unauthorized", message: "missing 'Authorization: Bearer <token>' header" });
    const principal = await auth.principal(token);
    if (!principal) return reply.code(401).send({ error: "unauthorized", message: "unknown or invalid token" });
    if (principal.role !== "admin" && !roles.includes(principal.role)) {
      return reply.code(403).send({ error: "forbidden", message: `this call needs the ${roles.join(" or ")} role` });
    }
    request.principal = principal;
  };
}
