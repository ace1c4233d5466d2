import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../support/platform.ts";

interface Media {
  schema?: unknown;
  example?: unknown;
  examples?: Record<string, unknown>;
}
interface Operation {
  summary?: string;
  requestBody?: { required?: boolean; content?: Record<string, Media> };
  responses: Record<string, { description?: string; content?: Record<string, Media> }>;
}
type Paths = Record<string, Record<string, Operation>>;

const METHODS = new Set(["get", "post", "put", "patch", "delete"]);
const hasExample = (m: Media | undefined) =>
  m !== undefined &&
  (m.example !== undefined ||
    (m.examples !== undefined && Object.keys(m.examples).length > 0) ||
    JSON.stringify(m.schema ?? {}).includes('"example'));

describe("the served OpenAPI document is complete", () => {
  let t: TestPlatform;
  let paths: Paths;
  beforeAll(async () => {
    t = await startTestPlatform();
    paths = ((await (await fetch(`${t.http}/docs/json`)).json()) as { paths: Paths }).paths;
  });
  afterAll(async () => t?.close());

  const operations = () =>
    Object.entries(paths).flatMap(([url, item]) =>
      Object.entries(item)
        .filter(([method]) => METHODS.has(method))
        .map(([method, op]) => ({ name: `${method.toUpperCase()} ${url}`, op })),
    );

  it("documents operations", () => {
    expect(operations().length).toBeGreaterThan(40);
  });

  it("gives every 2xx and 4xx answer with a body a schema", () => {
    const missing = operations().flatMap(({ name, op }) =>
      Object.entries(op.responses)
        .filter(([status]) => /^[24]/.test(status) && status !== "204")
        .flatMap(([status, answer]) => {
          const content = Object.entries(answer.content ?? {});
          if (content.length === 0) return [`${name} ${status}: no content`];
          return content
            .filter(([, m]) => m.schema === undefined)
            .map(([type]) => `${name} ${status} ${type}: no schema`);
        }),
    );
    expect(missing).toEqual([]);
  });

  it("gives every operation with a body an example; only the dashboard's redirect has no body at all", () => {
    const media = (op: Operation) => [
      ...Object.values(op.requestBody?.content ?? {}),
      ...Object.values(op.responses).flatMap((r) => Object.values(r.content ?? {})),
    ];
    const bodiless = operations().filter(({ op }) => media(op).length === 0);
    expect(bodiless.map(({ name }) => name)).toEqual(["GET /dashboard"]);
    expect(Object.keys(bodiless[0]!.op.responses)).toEqual(["301"]);
    const without = operations()
      .filter(({ op }) => media(op).length > 0 && !media(op).some(hasExample))
      .map(({ name }) => name);
    expect(without).toEqual([]);
  });
});
