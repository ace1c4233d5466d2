import { Ajv, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";

/**
 * Checks HTTP answers against the served OpenAPI document (/docs/json) with
 * ajv, a validator apart from the zod schemas that write the document: the
 * status must be listed for the operation, the content type listed for the
 * status, and the body valid against its schema.
 */

export interface Exchange {
  method: string;
  url: string;
  status: number;
  contentType: string;
  body: unknown;
}

interface Operation {
  responses: Record<string, { content?: Record<string, { schema: object }> }>;
}
export interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
}

const mediaType = (contentType: string) => contentType.split(";")[0]!.trim().toLowerCase();

export function contractChecker(spec: OpenApiDocument) {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats.default(ajv);
  ajv.addFormat("binary", true);
  const compiled = new Map<object, ValidateFunction>();
  const validatorOf = (schema: object) => {
    let v = compiled.get(schema);
    if (!v) compiled.set(schema, (v = ajv.compile(schema)));
    return v;
  };
  const templates = Object.keys(spec.paths).map((path) => ({
    path,
    // A path parameter is one segment; static segments must match as they are.
    pattern: new RegExp(`^${path.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{[^}]+\}/g, "[^/]+")}$`),
    statics: path.split("/").filter((s) => !s.startsWith("{")).length,
  }));
  /** The documented path a URL calls; a static segment wins over a parameter (find-my-way's order). */
  const pathOf = (url: string) =>
    templates.filter((t) => t.pattern.test(new URL(url, "http://x").pathname)).sort((a, b) => b.statics - a.statics)[0]
      ?.path;

  /** What is wrong with one answer, or undefined when it fits the document. */
  return (x: Exchange): string | undefined => {
    const what = `${x.method} ${x.url} -> ${x.status} ${x.contentType}`;
    const path = pathOf(x.url);
    const op = path ? spec.paths[path]?.[x.method.toLowerCase()] : undefined;
    if (!op) return x.status === 404 || x.status === 414 ? undefined : `${what}: no such operation in the document`;
    const answer = op.responses[String(x.status)];
    if (!answer) return `${what}: status ${x.status} is not listed for ${x.method} ${path}`;
    if (!answer.content)
      return x.body === undefined || x.body === "" ? undefined : `${what}: a body where none is listed`;
    const type = mediaType(x.contentType);
    const media = answer.content[type];
    if (!media) return `${what}: content type ${type} is not listed (${Object.keys(answer.content).join(", ")})`;
    if (type !== "application/json") return undefined;
    const validate = validatorOf(media.schema);
    if (validate(x.body)) return undefined;
    return `${what}: body does not fit: ${ajv.errorsText(validate.errors)} in ${JSON.stringify(x.body).slice(0, 300)}`;
  };
}

/** Fetches the document and checks every exchange; throws one error listing every violation. */
export async function checkContract(http: string, exchanges: readonly Exchange[]): Promise<void> {
  if (exchanges.length === 0) return;
  const spec = (await (await fetch(`${http}/docs/json`)).json()) as OpenApiDocument;
  const check = contractChecker(spec);
  const violations = [...new Set(exchanges.map(check).filter((v): v is string => v !== undefined))];
  if (violations.length > 0)
    throw new Error(`${violations.length} answers outside the OpenAPI document:\n${violations.join("\n")}`);
}
