import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema, RouteOptions } from "fastify";
import { validatorCompiler } from "fastify-type-provider-zod";
import { z } from "zod";
import { requireRole, type Authenticator, type Role } from "../auth/index.ts";
import { errorBody } from "./errors.ts";
import type { Tag } from "./openapi.ts";

/**
 * Who may call: staff and subject roles (admin always may) checked by the
 * authenticator; "device": the route checks a device token itself and admin
 * is refused; "ticket": a live-stream ticket in the query; "none": anyone.
 */
export type Access = readonly Role[] | "device" | "ticket" | "none";

/** One answer: what it means, and its body (JSON unless `type` names another content type). */
export interface Answer {
  description: string;
  /** The body's schema; absent for an answer without a body (101, 204, 301). */
  schema?: z.ZodType;
  /** Content types other than JSON, each with its schema (a stream is `z.string()`). */
  types?: Record<string, z.ZodType>;
}

export interface RouteDef<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  method: "GET" | "POST" | "PUT" | "DELETE";
  url: string;
  tag: Tag;
  summary: string;
  description?: string;
  auth: Access;
  params?: P;
  query?: Q;
  body?: B;
  /**
   * The body is documented but handed to the handler as it came, because its part
   * parses it (the rule loader answers with line and field; ingest parses a publish).
   */
  bodyParsedByPart?: boolean;
  /** Request content types beside JSON, each with its schema. */
  bodyTypes?: Record<string, z.ZodType>;
  /** Every answer the route gives itself; the ones its declaration implies (401, 403, 400, 413, 414, 415) are added. */
  responses: Record<number, Answer>;
  handler: (
    request: FastifyRequest<{ Params: z.output<P>; Querystring: z.output<Q>; Body: z.output<B> }>,
    reply: FastifyReply,
  ) => unknown;
}

const roleLine = (auth: Access) => {
  if (auth === "none") return "No authentication.";
  if (auth === "ticket") return "No Authorization header: a ticket from POST /api/live/tickets in `?ticket=`.";
  if (auth === "device") return "Bearer token of: the device itself (its rfd. token; no other token is taken).";
  return `Bearer token of: ${["admin", ...auth.filter((r) => r !== "admin")].join(", ")}.`;
};

const error = (description: string): Answer => ({ description, schema: errorBody });

/** The answers a route gives because of how it is declared, beside those it lists. */
function implied(def: RouteDef<z.ZodType, z.ZodType, z.ZodType>): Record<number, Answer> {
  const out: Record<number, Answer> = {};
  const bad: string[] = [];
  if (def.params) bad.push("invalid_params");
  if (def.query) bad.push("invalid_query");
  if (def.body) bad.push("invalid_body");
  if (bad.length) out[400] = error(`the request does not fit (${bad.join(", ")}), naming the field`);
  if (def.auth !== "none") {
    out[401] = error(def.auth === "ticket" ? "unknown, used or expired ticket" : "missing, unknown or invalid token");
    if (def.auth !== "ticket")
      out[403] = error("the token's role may not make this call, or the id is not the caller's own");
  }
  if (def.body) {
    out[413] = error("the body is larger than 1 MiB");
    out[415] = error("the body's content type is not one the route takes");
  }
  if (def.params) out[414] = error("a path segment is longer than 100 characters");
  return out;
}

/** The fastify `response` entry of one answer, as fastify-type-provider-zod reads it. */
function response(answer: Answer): unknown {
  if (answer.types)
    return {
      description: answer.description,
      content: Object.fromEntries(Object.entries(answer.types).map(([type, schema]) => [type, { schema }])),
    };
  if (!answer.schema) return { description: answer.description, content: {} };
  return answer.schema.describe(answer.description);
}

const passThrough = () => (data: unknown) => ({ value: data });

/**
 * Declares a route once: the role check it runs, the line of /docs that says
 * who may call it, the schemas fastify validates its request with and
 * serializes its answers through, and the document's entry, all from `def`.
 */
export function defineRoute<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(
  app: FastifyInstance,
  auth: Authenticator,
  def: RouteDef<P, Q, B>,
): void {
  const responses: Record<string, unknown> = {};
  const all = { ...implied(def), ...def.responses };
  for (const [status, answer] of Object.entries(all)) responses[status] = response(answer);
  const schema: FastifySchema & Record<string, unknown> = {
    tags: [def.tag],
    summary: def.summary,
    description: [def.description, roleLine(def.auth)].filter(Boolean).join("\n\n"),
    security: def.auth === "none" || def.auth === "ticket" ? [] : [{ bearer: [] }],
    response: responses,
  };
  if (def.params) schema.params = def.params;
  if (def.query) schema.querystring = def.query;
  if (def.body)
    schema.body = def.bodyTypes
      ? {
          content: Object.fromEntries(
            Object.entries({ "application/json": def.body, ...def.bodyTypes }).map(([t, s]) => [t, { schema: s }]),
          ),
        }
      : def.body;
  const route: RouteOptions = {
    method: def.method,
    url: def.url,
    schema,
    handler: def.handler as RouteOptions["handler"],
    ...(def.bodyParsedByPart
      ? {
          validatorCompiler: ((req: Parameters<typeof validatorCompiler>[0]) =>
            req.httpPart === "body" ? passThrough() : validatorCompiler(req)) as RouteOptions["validatorCompiler"],
        }
      : {}),
    ...(Array.isArray(def.auth) ? { onRequest: requireRole(auth, ...(def.auth as Role[])) } : {}),
  };
  app.route(route);
}
