import type { FastifyReply, FastifyRequest } from "fastify";
import { ownsSubject } from "../auth/index.ts";
import { SUBJECT_ID } from "../registry/index.ts";

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
