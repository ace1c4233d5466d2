import { readFile } from "node:fs/promises";
import type { FastifyInstance, FastifySchema, RouteOptions } from "fastify";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { z } from "zod";

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
  metrics: "Prometheus metrics (no auth, unless REFEED_METRICS_TOKEN is set)",
} as const;
export type Tag = keyof typeof TAGS;

type Transform = typeof jsonSchemaTransform;

/**
 * jsonSchemaTransform, and request bodies of several content types (rules take
 * YAML too), which it does not convert: each is converted the same way.
 */
const transformRoute: Transform = (document) => {
  const body = (document.schema as { body?: { content?: Record<string, { schema: z.ZodType }> } } | undefined)?.body;
  let out: ReturnType<Transform>;
  if (body?.content) {
    const { body: _body, ...rest } = document.schema as FastifySchema & Record<string, unknown>;
    out = jsonSchemaTransform({ ...document, schema: rest });
    const content = Object.fromEntries(
      Object.entries(body.content).map(([type, { schema }]) => [type, { schema: jsonSchema(schema) }]),
    );
    out = { ...out, schema: { ...out.schema, body: { content } } };
  } else out = jsonSchemaTransform(document);
  // An answer without a body (101, 204, 301) is declared with no content; swagger writes it so when its type is null.
  const response = (out.schema as { response?: Record<string, Record<string, unknown>> }).response ?? {};
  for (const [status, answer] of Object.entries(response))
    if (answer.content && Object.keys(answer.content).length === 0)
      response[status] = { description: answer.description, type: "null" };
  return out;
};

const jsonSchema = (schema: z.ZodType) =>
  inlineDefinitions(z.toJSONSchema(schema, { target: "openapi-3.0", io: "input", unrepresentable: "any" }));

type Json = Record<string, unknown>;

/**
 * A recursive schema (a rule's JSON `value`) comes with local `definitions`
 * that a request body in OpenAPI cannot carry: each use gets the definition
 * itself, one level deep, its own recursion left as any JSON value.
 */
function inlineDefinitions(schema: Json): Json {
  const { definitions, ...rest } = schema as Json & { definitions?: Record<string, Json> };
  if (!definitions) return schema;
  const target = (node: Json): string | undefined => {
    const ref = (node.allOf as Json[] | undefined)?.[0]?.$ref ?? node.$ref;
    return typeof ref === "string" ? ref.replace(/^#\/definitions\//, "") : undefined;
  };
  const walk = (node: unknown, depth: number): unknown => {
    if (Array.isArray(node)) return node.map((n) => walk(n, depth));
    if (node === null || typeof node !== "object") return node;
    const name = target(node as Json);
    if (name && definitions[name]) return depth > 0 ? {} : walk(definitions[name], depth + 1);
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, walk(v, depth)]));
  };
  return walk(rest, 0) as Json;
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
  // The zod schemas of each route validate its request, serialize its answers and write /docs.
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.addHook("onRoute", (route: RouteOptions) => {
    const schema = route.schema;
    if (route.url.startsWith("/docs") || schema?.hide || schema?.summary) return;
    throw new Error(
      `route ${String(route.method)} ${route.url} has no OpenAPI description: declare it with defineRoute from api/route.ts`,
    );
  });
  await app.register(swagger, {
    transform: transformRoute,
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
