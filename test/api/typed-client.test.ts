import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import openapiTS, { astToString } from "openapi-typescript";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../support/platform.ts";

/** A small client written against the generated types only, as an integrator would. */
const client = `import type { paths } from "./api.ts";

type Provision = paths["/api/devices"]["post"];
export type ProvisionBody = NonNullable<Provision["requestBody"]>["content"]["application/json"];
export type Provisioned = Provision["responses"][201]["content"]["application/json"];
export type Device = paths["/api/devices/{id}"]["get"]["responses"][200]["content"]["application/json"];
export type Missing = paths["/api/devices/{id}"]["get"]["responses"][404]["content"]["application/json"];

export async function provision(base: string, key: string, body: ProvisionBody): Promise<Provisioned> {
  const res = await fetch(base + "/api/devices", {
    method: "POST",
    headers: { authorization: "Bearer " + key, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (res.status !== 201) throw new Error("provision answered " + res.status);
  return (await res.json()) as Provisioned;
}

export async function device(base: string, key: string, id: string): Promise<Device | Missing> {
  const res = await fetch(base + "/api/devices/" + encodeURIComponent(id), { headers: { authorization: "Bearer " + key } });
  return (await res.json()) as Device | Missing;
}

export const tokenOf = (p: Provisioned): string => p.token;
export const idOf = (p: Provisioned): string => p.id;
export const errorOf = (m: Missing): string => m.error;
`;

/** What a wrong client does; the generated types must refuse it. */
const misuse = `import type { Provisioned } from "./client.ts";
export const wrong = (p: Provisioned): number => p.token;
export const absent = (p: Provisioned): unknown => p.notAField;
`;

function typeErrors(dir: string, file: string): string[] {
  const program = ts.createProgram([path.join(dir, file)], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    allowImportingTsExtensions: true,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
    skipLibCheck: true,
    types: [],
  });
  return ts
    .getPreEmitDiagnostics(program)
    .map(
      (d) => `${d.file ? path.basename(d.file.fileName) : ""}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`,
    );
}

describe("a client typed from the served document (openapi-typescript)", () => {
  let t: TestPlatform;
  let dir: string;
  beforeAll(async () => {
    t = await startTestPlatform();
    dir = await mkdtemp(path.join(tmpdir(), "refeed-client-"));
    const doc = (await (await fetch(`${t.http}/docs/json`)).json()) as Parameters<typeof openapiTS>[0];
    await writeFile(path.join(dir, "api.ts"), astToString(await openapiTS(doc)));
    await writeFile(path.join(dir, "client.ts"), client);
    await writeFile(path.join(dir, "misuse.ts"), misuse);
  });
  afterAll(async () => {
    await t?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("type-checks a client of the device routes, and refuses one that misreads an answer", () => {
    expect(typeErrors(dir, "client.ts")).toEqual([]);
    const refused = typeErrors(dir, "misuse.ts");
    expect(refused).toHaveLength(2);
    expect(refused[0]).toMatch(/misuse\.ts: Type 'string' is not assignable to type 'number'/);
    expect(refused[1]).toMatch(/misuse\.ts: Property 'notAField' does not exist/);
  });

  it("the typed client provisions and reads a device through the platform", async () => {
    const typed = (await import(path.join(dir, "client.ts"))) as {
      provision(base: string, key: string, body: object): Promise<{ id: string; token: string }>;
      device(base: string, key: string, id: string): Promise<{ id?: string; error?: string }>;
    };
    const made = await typed.provision(t.http, "test-admin-token-0123456789", { id: "typed-1", kind: "tv" });
    expect(made.id).toBe("typed-1");
    expect(made.token).toMatch(/^rfd\./);
    expect(await typed.device(t.http, "test-admin-token-0123456789", "typed-1")).toMatchObject({ id: "typed-1" });
    expect(await typed.device(t.http, "test-admin-token-0123456789", "nope")).toMatchObject({ error: "not_found" });
  });
});
