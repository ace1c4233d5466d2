import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkContract, type Exchange } from "../support/contract.ts";
import { ADMIN_TOKEN, startTestPlatform, type TestPlatform } from "../support/platform.ts";

interface Operation {
  requestBody?: { required?: boolean };
  responses: Record<string, { content?: Record<string, unknown> }>;
}
type Paths = Record<string, Record<string, Operation>>;

const METHODS = ["get", "post", "put", "delete"];
const BODIES: unknown[] = [{ fuzz: [1, { x: null }] }, [], "text", 42, { id: 7, subject: { deep: true } }];
// ("..", which a client resolves before sending, is left out.)
const IDS = ["fuzz-1", "a b", "x".repeat(101), "%00", "tv-1"];
const QUERIES = ["", "?limit=-1&from=abc&to=&cursor=%ff", "?window=999999999999d&device=&type=nope"];

/** Drives every operation of the served document with bad and odd input; every answer must be one it lists. */
describe("a fuzzer driven by the served document", () => {
  let t: TestPlatform;
  let paths: Paths;
  beforeAll(async () => {
    t = await startTestPlatform();
    paths = ((await (await fetch(`${t.http}/docs/json`)).json()) as { paths: Paths }).paths;
  });
  afterAll(async () => t?.close());

  it("finds no status, content type or body outside the document", { timeout: 120_000 }, async () => {
    const exchanges: Exchange[] = [];
    const unanswered: string[] = [];
    const send = async (method: string, url: string, token: string | null, body?: unknown, raw?: string) => {
      const res = await fetch(`${t.http}${url}`, {
        method: method.toUpperCase(),
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body !== undefined || raw !== undefined ? { "content-type": "application/json" } : {}),
        },
        body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
        redirect: "manual",
        signal: AbortSignal.timeout(10_000),
      }).catch(() => undefined);
      if (!res) return void unanswered.push(`${method} ${url}`);
      const contentType = res.headers.get("content-type") ?? "";
      const text = await res.text();
      const json = contentType.includes("json") && text !== "";
      exchanges.push({
        method: method.toUpperCase(),
        url,
        status: res.status,
        contentType,
        body: json ? JSON.parse(text) : text,
      });
    };

    const missingBody: { name: string; status: number; message: unknown }[] = [];
    let operations = 0;
    for (const [template, item] of Object.entries(paths)) {
      for (const method of METHODS) {
        const op = item[method];
        if (!op) continue;
        operations += 1;
        // A stream that opens stays open: it is only sent what it refuses at once.
        const streams = Object.values(op.responses).some((r) =>
          Object.keys(r.content ?? {}).includes("text/event-stream"),
        );
        for (const id of IDS) {
          const url = template.replace(/\{[^}]+\}/g, encodeURIComponent(id).replace(/%25/g, "%"));
          await send(method, url, null);
          if (streams) continue;
          for (const query of QUERIES) await send(method, url + query, ADMIN_TOKEN);
          if (op.requestBody?.required && id === "fuzz-1") {
            const answer = exchanges.at(-QUERIES.length)!;
            missingBody.push({
              name: `${method} ${template}`,
              status: answer.status,
              message: (answer.body as { message?: unknown }).message,
            });
          }
          if (op.requestBody === undefined) continue;
          await send(method, url, ADMIN_TOKEN, undefined, "{not json");
          for (const body of BODIES) await send(method, url, ADMIN_TOKEN, body);
        }
      }
    }
    expect(operations).toBeGreaterThan(40);
    expect(unanswered).toEqual([]);
    // A required body that is missing is refused with 400 and a message naming it.
    expect(missingBody.length).toBeGreaterThan(5);
    // Who may not call an operation hears so first: the HTTP ingest routes take only device tokens.
    for (const m of missingBody.filter((m) => m.status !== 401))
      expect(m, m.name).toMatchObject({ status: 400, message: expect.stringMatching(/body/) });
    expect(exchanges.some((e) => e.status === 414)).toBe(true);
    expect(exchanges.some((e) => e.status === 401)).toBe(true);
    await checkContract(t.http, exchanges);
  });
});
