import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { z } from "zod";

/** One readable sentence per problem, naming the field. */
export function zodMessage(error: z.ZodError): string {
  return issuesMessage(
    error.issues.map((i) => ({
      field: i.path.join("."),
      code: i.code,
      message: i.message,
      keys: i.code === "unrecognized_keys" ? i.keys : [],
    })),
  );
}

interface Issue {
  field: string;
  code: string;
  message: string;
  keys: readonly string[];
}

function issuesMessage(issues: readonly Issue[]): string {
  return issues
    .map((i) => {
      if (i.code === "unrecognized_keys") return `unknown field${i.keys.length > 1 ? "s" : ""} ${i.keys.join(", ")}`;
      return i.field ? `${i.field}: ${i.message}` : i.message;
    })
    .join("; ");
}

/** What a request got wrong that only the API can tell (the id in the path, a query's combination). */
export type RequestErrorCode =
  | "INVALID_SUBJECT"
  | "INVALID_QUERY"
  | "MISSING_BODY"
  | "INVALID_FORMAT"
  | "NOT_LINKED"
  | "UNKNOWN_CHANNEL"
  | "BAD_TICKET"
  | "TOO_MANY_STREAMS"
  | "ERASURE_INCOMPLETE";

export class RequestError extends Error {
  constructor(
    readonly code: RequestErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "RequestError";
  }
}

/** What a client is told for one error code: the HTTP status, the wire `error` and, for a 503, when to retry. */
interface Answer {
  status: number;
  error: string;
  /** The wire message; the error's own message when absent. */
  message?: string;
  retryAfter?: number;
  /** More of the error on the wire, beside `error` and `message`. */
  details?(err: Error): Record<string, unknown>;
}

/**
 * Every error code a part throws or fastify raises, and what the API answers
 * for it. Parts keep their error classes; this is the one place that knows
 * HTTP, applied by the one error handler (`answerError`).
 */
export const catalogue: Record<string, Answer> = {
  // auth/
  UNAUTHORIZED: { status: 401, error: "unauthorized" },
  FORBIDDEN: { status: 403, error: "forbidden" },
  DEVICE_REVOKED: { status: 403, error: "unauthorized" },
  // api/
  INVALID_SUBJECT: { status: 400, error: "invalid_subject" },
  INVALID_QUERY: { status: 400, error: "invalid_query" },
  MISSING_BODY: { status: 400, error: "invalid_body" },
  INVALID_FORMAT: { status: 400, error: "invalid_format" },
  NOT_LINKED: { status: 404, error: "not_linked" },
  UNKNOWN_CHANNEL: { status: 404, error: "not_found" },
  BAD_TICKET: { status: 401, error: "unauthorized" },
  TOO_MANY_STREAMS: { status: 429, error: "too_many_streams" },
  ERASURE_INCOMPLETE: { status: 503, error: "erasure_incomplete", retryAfter: 10 },
  // registry/
  NOT_FOUND: { status: 404, error: "not_found" },
  REVOKED: { status: 409, error: "device_revoked" },
  DEVICE_EXISTS: { status: 409, error: "device_exists" },
  // subjects/
  TOKEN_NOT_FOUND: { status: 404, error: "token_not_found" },
  // keys/
  KEY_NOT_FOUND: { status: 404, error: "key_not_found" },
  // actions/
  ACTION_NOT_FOUND: { status: 404, error: "action_not_found" },
  ACTION_NOT_UNDOABLE: { status: 409, error: "action_not_undoable" },
  ACTION_NOT_ANSWERABLE: { status: 409, error: "action_not_answerable" },
  // rules/
  RULE_NOT_FOUND: { status: 404, error: "rule_not_found" },
  RULE_OWNED_BY_FILE: { status: 409, error: "rule_owned_by_file" },
  REFEED_RULE_INVALID: {
    status: 400,
    error: "invalid_rule",
    details: (err) => {
      const { line, field } = err as Error & { line?: number; field?: string };
      return { line: line ?? null, field: field || null };
    },
  },
  REFEED_REDIS_UNREACHABLE: { status: 503, error: "unavailable", retryAfter: 5 },
  // health/
  BAD_CURSOR: { status: 400, error: "invalid_cursor" },
  TOO_MANY_BUCKETS: { status: 400, error: "invalid_query" },
  // privacy/
  SPOOL_NOT_EMPTY: { status: 503, error: "spool_not_empty", retryAfter: 30 },
  // store/ and ingest/: InfluxDB is down; the client sends it again.
  REFEED_INFLUX_WRITE: {
    status: 503,
    error: "unavailable",
    message: "this could not be recorded because InfluxDB is unavailable; send the request again",
    retryAfter: 5,
  },
  // store/: a start from the views' snapshot, before InfluxDB is back (store/answers.ts).
  REFEED_INFLUX_UNREACHABLE: { status: 503, error: "unavailable", retryAfter: 5 },
  REFEED_SPOOL_FULL: {
    status: 503,
    error: "unavailable",
    message: "InfluxDB is unavailable and the spool is full; nothing was stored, send it again later",
    retryAfter: 5,
  },
  // fastify's own
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    status: 415,
    error: "unsupported_media_type",
    message: "send the body as JSON with 'content-type: application/json'",
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, error: "invalid_body", message: "the content-length is wrong" },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, error: "invalid_body", message: "the JSON body is empty" },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, error: "invalid_body", message: "the body is not valid JSON" },
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, error: "body_too_large", message: "the body is larger than the limit" },
  FST_ERR_MAX_PARAM_LENGTH: {
    status: 414,
    error: "uri_too_long",
    message: "a path segment is longer than 100 characters; no id is that long",
  },
  FST_ERR_BAD_URL: { status: 400, error: "bad_request", message: "the URL is not valid" },
};

/** The wire `error` of a request part that does not fit its schema. */
const invalid = {
  body: "invalid_body",
  querystring: "invalid_query",
  params: "invalid_params",
  headers: "invalid_headers",
};

/** What the answers name of the server's own limits. */
export interface ErrorLimits {
  bodyLimitBytes: number;
}

/** The one error handler (and fastify's `frameworkErrors`): a domain code answers its catalogued status, anything else 500. */
export function errorHandler(limits: ErrorLimits) {
  return (err: FastifyError & { code?: string }, request: FastifyRequest, reply: FastifyReply): FastifyReply =>
    answerError(err, request, reply, limits);
}

function answerError(
  err: FastifyError & { code?: string },
  request: FastifyRequest,
  reply: FastifyReply,
  limits: ErrorLimits,
): FastifyReply {
  if (hasZodFastifySchemaValidationErrors(err)) {
    const context = err.validationContext ?? "body";
    const message = issuesMessage(
      err.validation.map((v) => ({
        // An issue with the whole part (a missing body) names the part.
        field: v.instancePath.slice(1).replaceAll("/", ".") || (context === "querystring" ? "query" : context),
        code: v.keyword,
        message: v.message ?? "invalid",
        keys: Array.isArray(v.params.keys) ? (v.params.keys as string[]) : [],
      })),
    );
    return reply.code(400).send({ error: invalid[context] ?? "bad_request", message: message || err.message });
  }
  const catalogued = catalogue[err.code ?? ""];
  const known =
    err.code === "FST_ERR_CTP_BODY_TOO_LARGE" && catalogued
      ? { ...catalogued, message: `the body is larger than ${limits.bodyLimitBytes} bytes` }
      : catalogued;
  if (known) {
    if (known.retryAfter) void reply.header("retry-after", String(known.retryAfter));
    if (known.status >= 500) request.log.warn({ code: err.code, err: err.message, url: request.url }, "unavailable");
    return reply
      .code(known.status)
      .send({ error: known.error, message: known.message ?? err.message, ...known.details?.(err) });
  }
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
  if (status === 500) {
    request.log.error({ err, url: request.url }, "request failed");
    return reply.code(500).send({ error: "internal", message: "internal error" });
  }
  return reply.code(status).send({ error: "bad_request", message: err.message });
}

/** The body of every error answer. */
export const errorBody = z
  .object({ error: z.string(), message: z.string() })
  .loose()
  .meta({ example: { error: "not_found", message: "no device 'tv-1'" } });
