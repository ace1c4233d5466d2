import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { registerDocs } from "../../api/openapi.ts";
import { defineRoute } from "../../api/route.ts";
import { startTestPlatform, type TestPlatform } from "../support/platform.ts";

interface Operation {
  summary?: string;
  security?: unknown[];
  requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> };
  responses: Record<string, unknown>;
}

describe("the OpenAPI document at /docs", () => {
  let t: TestPlatform;
  let paths: Record<string, Record<string, Operation>>;
  beforeAll(async () => {
    t = await startTestPlatform();
    const res = await fetch(`${t.http}/docs/json`);
    expect(res.status).toBe(200);
    const spec = (await res.json()) as {
      openapi: string;
      paths: typeof paths;
      components: { securitySchemes: Record<string, unknown> };
    };
    expect(spec.openapi).toBe("3.0.3");
    expect(spec.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
    paths = spec.paths;
  });
  afterAll(async () => t?.close());

  it("describes every call of the design's HTTP contract, with who may make it", () => {
    const calls = [
      ["get", "/healthz"],
      ["post", "/api/devices"],
      ["post", "/api/ingest/{channel}"],
      ["put", "/api/subjects/{id}/consent"],
      ["get", "/api/subjects/{id}/export"],
      ["delete", "/api/subjects/{id}"],
      ["post", "/api/rules"],
      ["get", "/api/rules"],
      ["post", "/api/rules/{id}/backtest"],
      ["get", "/api/fleet/health"],
      ["get", "/api/devices/{id}/health"],
      ["get", "/dashboard"],
    ] as const;
    for (const [method, path] of calls) {
      const op = paths[path]?.[method];
      expect(op, `${method.toUpperCase()} ${path}`).toBeDefined();
      expect(op!.summary, `${method} ${path}`).toMatch(/\w/);
    }
    expect(paths["/healthz"]!.get!.security).toEqual([]);
    expect(paths["/api/devices"]!.post!.security).toEqual([{ bearer: [] }]);
    expect(Object.keys(paths["/api/devices"]!.post!.responses)).toEqual(
      expect.arrayContaining(["201", "400", "401", "403"]),
    );
  });

  it("shows the request bodies from the same zod schemas the handlers parse with", () => {
    const provision = paths["/api/devices"]!.post!.requestBody!.content["application/json"]!.schema;
    expect(Object.keys(provision.properties ?? {}).sort()).toEqual(["id", "kind", "subject"]);
    const rule = paths["/api/rules"]!.post!.requestBody!.content;
    expect(Object.keys(rule)).toEqual(expect.arrayContaining(["application/json", "application/yaml"]));
    expect(Object.keys(rule["application/json"]!.schema.properties ?? {})).toEqual(
      expect.arrayContaining(["id", "on", "when", "then"]),
    );
  });

  it("serves a browsable page", async () => {
    const res = await fetch(`${t.http}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/html/);
    expect(await res.text()).toMatch(/swagger/i);
  });
});

describe("registerDocs", () => {
  it("refuses to start an API with a route that is not documented", async () => {
    const app = Fastify();
    await registerDocs(app);
    const nobody = { principal: () => Promise.resolve(undefined) };
    defineRoute(app, nobody, {
      method: "GET",
      url: "/documented",
      tag: "health",
      summary: "fine",
      auth: "none",
      responses: { 200: { description: "fine", schema: z.object({}) } },
      handler: () => ({}),
    });
    expect(() => app.get("/forgotten", () => ({}))).toThrow(/GET \/forgotten has no OpenAPI description/);
    await app.close();
  });
});
