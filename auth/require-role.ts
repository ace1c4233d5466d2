import type { FastifyRequest } from "fastify";
import type { Authenticator } from "./authenticator.ts";
import { AuthError } from "./errors.ts";
import type { Principal, Role } from "./principals.ts";

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

/**
 * An onRequest hook: the caller needs one of `roles` (admin always passes).
 * Routes that a subject or device may call still check that the id in the
 * path is the caller's own (see `ownsSubject`).
 */
export function requireRole(auth: Authenticator, ...roles: Role[]) {
  return async (request: FastifyRequest) => {
    const token = bearer(request);
    if (!token) throw new AuthError("UNAUTHORIZED", "missing 'Authorization: Bearer <token>' header");
    const principal = await auth.principal(token);
    if (!principal) throw new AuthError("UNAUTHORIZED", "unknown or invalid token");
    if (principal.role !== "admin" && !roles.includes(principal.role))
      throw new AuthError("FORBIDDEN", `this call needs the ${roles.join(" or ")} role`);
    request.principal = principal;
  };
}
