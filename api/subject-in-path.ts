import type { FastifyRequest } from "fastify";
import { AuthError, ownsSubject } from "../auth/index.ts";
import { SUBJECT_ID } from "../registry/index.ts";
import { RequestError } from "./errors.ts";

/**
 * The subject named in the path (`:id`), once it is a valid id the caller may act on; otherwise
 * it throws the 400 or 403. Every route about one customer goes through it.
 */
export function subjectInPath(request: FastifyRequest): string {
  const { id } = request.params as { id: string };
  if (!SUBJECT_ID.test(id))
    throw new RequestError(
      "INVALID_SUBJECT",
      `'${id}' is not a subject id: 1-128 characters, ASCII letters, digits, '.', '_', ':' or '-'`,
    );
  if (!ownsSubject(request.principal, id))
    throw new AuthError("FORBIDDEN", "a subject token acts on its own subject only");
  return id;
}
