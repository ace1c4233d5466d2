import { afterEach } from "vitest";
import { contractChecker, type Exchange, type OpenApiDocument } from "./contract.ts";

/**
 * Every answer any test receives from a Refeed platform, through `fetch`,
 * is checked against the document that platform serves (/docs/json), with
 * ajv rather than the zod schemas that wrote it. A test whose calls received
 * an answer outside the document fails after it runs, listing the answers.
 * Only origins registered with `checkAnswersOf` (test/support/platform.ts
 * does, for every platform it starts) are checked: the platform's own calls
 * to webhooks and influxd go through the same `fetch`. The support page and
 * its assets under /dashboard/ are static files outside the API contract.
 */

type Checker = (x: Exchange) => string | undefined;

const realFetch = globalThis.fetch;
// On globalThis, so that a test file's copy of this module and the setup file's agree.
const platforms: Set<string> = ((globalThis as { refeedPlatformOrigins?: Set<string> }).refeedPlatformOrigins ??=
  new Set<string>());

/** Checks every answer from the platform serving HTTP at `http` (an origin such as http://127.0.0.1:1234). */
export function checkAnswersOf(http: string): void {
  platforms.add(new URL(http).origin);
}
const checkers = new Map<string, Promise<Checker | undefined>>();
// A platform that answered and then closed before its document was read serves the same document as the others.
let lastDocument: OpenApiDocument | undefined;
const pending = new Set<Promise<void>>();
const violations: string[] = [];

function checkerFor(origin: string): Promise<Checker | undefined> {
  let checker = checkers.get(origin);
  if (!checker) {
    checker = realFetch(`${origin}/docs/json`)
      .then(async (res) => {
        if (!res.ok || !(res.headers.get("content-type") ?? "").includes("json")) return undefined;
        const doc = (await res.json()) as Partial<OpenApiDocument> & { openapi?: string };
        if (!doc.openapi || !doc.paths) return undefined;
        lastDocument = doc as OpenApiDocument;
        return contractChecker(lastDocument);
      })
      .catch(() => (lastDocument ? contractChecker(lastDocument) : undefined));
    checkers.set(origin, checker);
  }
  return checker;
}

async function jsonOf(res: Response): Promise<unknown> {
  const text = await res.text();
  if (!text) return "";
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

async function check(origin: string, method: string, url: string, res: Response): Promise<void> {
  const checker = await checkerFor(origin);
  if (!checker) return;
  const type = res.headers.get("content-type") ?? "";
  // Streams and downloads are checked by status and content type; their bytes are the tests' business.
  // An answer without a content type is taken as one without a body.
  const body = type.includes("json") ? await jsonOf(res) : type ? "(not read)" : "";
  const problem = checker({ method, url, status: res.status, contentType: type, body });
  if (problem) violations.push(problem);
}

globalThis.fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const res = await realFetch(input, init);
  const request = input instanceof Request ? input : undefined;
  const url = new URL(input instanceof Request ? input.url : input instanceof URL ? input.href : input);
  if (!platforms.has(url.origin) || url.pathname.startsWith("/docs") || url.pathname.startsWith("/dashboard/"))
    return res;
  const method = (init?.method ?? request?.method ?? "GET").toUpperCase();
  const type = res.headers.get("content-type") ?? "";
  // Reading a JSON answer's copy must not hold back the test reading the original.
  const copy = type.includes("json") ? res.clone() : res;
  const checking = check(url.origin, method, url.pathname + url.search, copy).catch((err: unknown) => {
    violations.push(`${method} ${url.pathname}: could not be checked: ${String(err)}`);
  });
  pending.add(checking);
  void checking.finally(() => pending.delete(checking));
  return res;
};

afterEach(async () => {
  await Promise.all([...pending]);
  if (violations.length === 0) return;
  const found = [...new Set(violations.splice(0))];
  throw new Error(`${found.length} answers outside the served OpenAPI document:\n${found.join("\n")}`);
});
