import { readFile } from "node:fs/promises";
import type { FastifyInstance, FastifySchema, RouteOptions } from "fastify";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { z } from "zod";
import type { Role } from "../auth/index.ts";

/** The API's sections in /docs, in the order a newcomer reads them. */
const TAGS = {
  health: "Liveness and InfluxDB reachability (no auth)",
  devices: "Device lifecycle: provision, rotate, revoke, presence",
  ingest: "Device messages over HTTP, the same contract as MQTT",
  subjects: "Customers: tokens, profile, touchpoints, actions, export and erasure",
  consent: "Opt-in per purpose, with its history",
  rules: "Rules as code, versions and backtests (product)",
  actions: "Actions with their lifecycle, undo, participation",
  keys: "Staff API keys (admin)",
  fleet: "Experience health and timelines (support)",
  dashboard: "The support agents' web page",
  metrics: "Prometheus metrics (no auth)",
} as const;
export type Tag = keyof typeof TAGS;

export interface RouteDoc {
  tag: Tag;
  summary: string;
  description?: string;
  /** Who may call it (admin always may); "none": no Authorization header needed. */
  auth: readonly Role[] | "none";
  /** The request body, as the zod schema the handler parses it with. */
  body?: z.ZodType;
  /** Other request content types the route takes, beside JSON. */
  bodyTypes?: readonly string[];
  query?: z.ZodObject;
  /** Status codes the route answers beside 401/403, with what each means. */
  responses?: Record<number, string>;
}

/**
 * The JSON Schema of what a client sends. Zod stays the one parser at the
 * edge: these schemas describe the API in /docs and are never used to
 * validate (see `registerDocs`), so a route cannot drift into two checks.
 */
const jsonSchema = (schema: z.ZodType) =>
  z.toJSONSchema(schema, { target: "openapi-3.0", io: "input", unrepresentable: "any" }) as Record<string, unknown>;

const roleLine = (auth: RouteDoc["auth"]) =>
  auth === "none"
    ? "No authentication."
    : `Bearer token of: ${["admin", ...auth.filter((r) => r !== "admin")].join(", ")}.`;

/** The `schema` of a route's options: what /docs shows for it. */
export function doc(d: RouteDoc): { schema: FastifySchema } {
  const responses: Record<string, { description: string }> = {};
  for (const [code, text] of Object.entries(d.responses ?? { 200: "OK" })) responses[code] = { description: text };
  if (d.auth !== "none") {
    responses["401"] ??= { description: "missing, unknown or invalid token" };
    responses["403"] ??= { description: "the token's role may not make this call, or the id is not the caller's own" };
  }
  const schema: FastifySchema & Record<string, unknown> = {
    tags: [d.tag],
    summary: d.summary,
    description: [d.description, roleLine(d.auth)].filter(Boolean).join("\n\n"),
    security: d.auth === "none" ? [] : [{ bearer: [] }],
    response: responses,
  };
  if (d.body) {
    const body = jsonSchema(d.body);
    schema.body = d.bodyTypes
      ? { content: Object.fromEntries(["application/json", ...d.bodyTypes].map((t) => [t, { schema: body }])) }
      : body;
  }
  if (d.query) schema.querystring = jsonSchema(d.query);
  return { schema };
}

/** Marks a route that is not part of the API (the WebSocket upgrade, static files). */
export const undocumented = { schema: { hide: true } } as const;

/**
 * OpenAPI 3 at /docs/json (and /docs/yaml), a browsable page at /docs. Every
 * route must carry a `doc(...)` or be marked `undocumented`: registering one
 * without either fails at start, so the document cannot fall behind the API.
 */
export async function registerDocs(app: FastifyInstance): Promise<void> {
  const { version } = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  // Schemas document; zod parses (inside each handler) and handlers answer plain JSON.
  app.setValidatorCompiler(() => () => true);
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.addHook("onRoute", (route: RouteOptions) => {
    const schema = route.schema as (FastifySchema & { hide?: boolean; summary?: string }) | undefined;
    if (route.url.startsWith("/docs") || schema?.hide || schema?.summary) return;
    throw new Error(
      `route ${String(route.method)} ${route.url} has no OpenAPI description: give it doc({...}) from api/openapi.ts`,
    );
  });
  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "Refeed HTTP API",
        version,
        description:
          'JSON over HTTP. Errors are `{"error": code, "message": text}` with a 4xx status. MQTT (the devices\' main contract) is described in the README.',
      },
      components: {
        securitySchemes: {
          bearer: {
            type: "http",
            scheme: "bearer",
            description: "an admin token, an API key (rfk.), a device token (rfd.) or a subject token (rfs.)",
          },
        },
      },
      tags: Object.entries(TAGS).map(([name, description]) => ({ name, description })),
    },
  });
  await app.register(swaggerUi, { routePrefix: "/docs", uiConfig: { docExpansion: "list", deepLinking: true } });
}
