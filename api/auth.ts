import { readFile, writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import type { FastifyReply, FastifyRequest } from "fastify";
import { SUBJECT_ID } from "../registry/index.ts";
import { fingerprint, generateToken, hashToken, verifyToken } from "../registry/token.ts";

/** admin: everything; product: rules; support: read-only views. */
export type StaffRole = "admin" | "product" | "support";

/**
 * Who is calling. Staff act on the platform; a subject (a customer, through an
 * app) acts only on their own data; a device only on its own. `name` is for
 * audit trails such as rule versions and undo; it never holds a secret.
 */
export type Principal =
  | { role: StaffRole; name: string }
  | { role: "subject"; subject: string; name: string }
  | { role: "device"; device: string; name: string };
export type Role = Principal["role"];

/** Turns a bearer token into a principal, or undefined when it does not know the token. */
export interface Authenticator {
  principal(token: string): Promise<Principal | undefined>;
}

/**
 * Several kinds of token behind one authenticator: each is asked in turn and
 * the first that knows the token answers. Kinds with a prefix of their own
 * (rfd., rfs., rfk.) answer undefined at once for a token that is not theirs;
 * the admin token may be any string (REFEED_ADMIN_TOKEN), so its scrypt check
 * goes last.
 */
export function anyAuthenticator(...auths: Authenticator[]): Authenticator {
  return {
    async principal(token) {
      for (const auth of auths) {
        const found = await auth.principal(token);
        if (found) return found;
      }
      return undefined;
    },
  };
}

/**
 * The admin token comes from REFEED_ADMIN_TOKEN, or is generated at first
 * start: its scrypt hash is stored in the data dir and the token is handed to
 * `announce` once, for the operator to keep.
 */
export async function adminAuthenticator(options: {
  token: string | undefined;
  dataDir: string;
  announce(token: string): void;
}): Promise<Authenticator> {
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

/**
 * An onRequest hook: the caller needs one of `roles` (admin always passes).
 * Routes that a subject or device may call still check that the id in the
 * path is the caller's own (see `ownsSubject`).
 */
export function requireRole(auth: Authenticator, ...roles: Role[]) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const token = bearer(request);
    if (!token)
      return reply.code(401).send({ error: "unauthorized", message: "missing 'Authorization: Bearer <token>' header" });
    const principal = await auth.principal(token);
    if (!principal) return reply.code(401).send({ error: "unauthorized", message: "unknown or invalid token" });
    if (principal.role !== "admin" && !roles.includes(principal.role)) {
      return reply.code(403).send({ error: "forbidden", message: `this call needs the ${roles.join(" or ")} role` });
    }
    request.principal = principal;
  };
}

/** A subject principal may act only on its own subject; staff roles that passed requireRole may act on any. */
export function ownsSubject(principal: Principal | undefined, subject: string): boolean {
  if (!principal) return false;
  if (principal.role === "subject") return principal.subject === subject;
  return principal.role !== "device";
}

/**
 * The subject named in the path (`:id`), once it is a valid id the caller may act on; otherwise
 * the 400 or 403 is sent and the answer is undefined. Every route about one customer goes through it.
 */
export function subjectInPath(request: FastifyRequest, reply: FastifyReply): string | undefined {
  const { id } = request.params as { id: string };
  if (!SUBJECT_ID.test(id)) {
    void reply.code(400).send({
      error: "invalid_subject",
      message: `'${id}' is not a subject id: 1-128 characters, ASCII letters, digits, '.', '_', ':' or '-'`,
    });
    return undefined;
  }
  if (!ownsSubject(request.principal, id)) {
    void reply.code(403).send({ error: "forbidden", message: "a subject token acts on its own subject only" });
    return undefined;
  }
  return id;
}
