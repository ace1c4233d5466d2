import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkContract } from "../support/contract.ts";
import { api, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";

describe("answers fit the served OpenAPI document (checked with ajv, not zod)", () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(async () => t?.close());

  it("every answer of a walk through devices and subjects is listed, with a body that fits", async () => {
    const device = await provision(t, { id: "tv-1", kind: "tv", subject: "cust-1" });
    expect(device.token).toMatch(/^rfd\./);
    expect((await api(t, "GET", "/api/devices")).status).toBe(200);
    expect((await api(t, "GET", "/api/devices/tv-1")).status).toBe(200);
    expect((await api(t, "GET", "/api/subjects/cust-1")).status).toBe(200);
    expect((await api(t, "POST", "/api/subjects/cust-1/tokens", {})).status).toBe(201);
    expect((await api(t, "GET", "/api/keys")).status).toBe(200);
    expect((await api(t, "GET", "/api/rules")).status).toBe(200);
    expect((await api(t, "GET", "/api/devices/nope")).status).toBe(404);
    expect((await api(t, "GET", "/api/devices", undefined, null)).status).toBe(401);
    await checkContract(t.http, t.exchanges);
  });

  it("refuses a missing required body with 400 naming it, an over-long id with 414, a foreign content type with 415", async () => {
    const missing = await api(t, "POST", "/api/devices");
    expect(missing.status).toBe(400);
    expect(missing.body.error).toBe("invalid_body");
    const long = await api(t, "GET", `/api/devices/${"x".repeat(200)}`);
    expect(long).toMatchObject({ status: 414, body: { error: "uri_too_long" } });
    const res = await fetch(`${t.http}/api/devices`, {
      method: "POST",
      headers: { authorization: "Bearer test-admin-token-0123456789", "content-type": "application/xml" },
      body: "<device/>",
    });
    expect(res.status).toBe(415);
    t.exchanges.push({
      method: "POST",
      url: "/api/devices",
      status: res.status,
      contentType: res.headers.get("content-type") ?? "",
      body: await res.json(),
    });
    await checkContract(t.http, t.exchanges);
  });
});
