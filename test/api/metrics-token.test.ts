import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Config } from "../../config/schema.ts";
import { ADMIN_TOKEN, startTestPlatform, type TestPlatform } from "../support/platform.ts";

const METRICS_TOKEN = "metrics-scrape-token-0123456789";

const scrape = (t: TestPlatform, authorization?: string) =>
  fetch(`${t.http}/metrics`, authorization ? { headers: { authorization } } : {});

/** A deployment that exposes the HTTP port closes /metrics with a token of its own; unset, it stays open. */
describe("/metrics with REFEED_METRICS_TOKEN", () => {
  let closed: TestPlatform;
  let open: TestPlatform;
  beforeAll(async () => {
    [closed, open] = await Promise.all([
      startTestPlatform({ http: { port: 0, host: "127.0.0.1", metricsToken: METRICS_TOKEN } as Config["http"] }),
      startTestPlatform(),
    ]);
  });
  afterAll(() => Promise.all([closed?.close(), open?.close()]));

  it("answers 401 without a token, and names what is missing", async () => {
    const res = await scrape(closed);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({
      error: "unauthorized",
      message: "missing 'Authorization: Bearer <token>' header (the metrics token)",
    });
  });

  it("answers 401 to any other token, the admin token included", async () => {
    for (const authorization of [
      `Bearer ${ADMIN_TOKEN}`,
      "Bearer wrong-token",
      `Bearer ${METRICS_TOKEN}x`,
      "Basic abc",
    ]) {
      const res = await scrape(closed, authorization);
      expect(res.status, authorization).toBe(401);
      expect(((await res.json()) as { error: string }).error).toBe("unauthorized");
    }
  });

  it("answers 200 with the metrics to the metrics token", async () => {
    const res = await scrape(closed, `Bearer ${METRICS_TOKEN}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(await res.text()).toMatch(/^refeed_mqtt_connected_clients 0$/m);
  });

  it("documents the 401 in the served document when the token is set", async () => {
    const doc = (await (await fetch(`${closed.http}/docs/json`)).json()) as {
      paths: Record<string, { get: { responses: Record<string, unknown> } }>;
    };
    expect(Object.keys(doc.paths["/metrics"]!.get.responses).sort()).toEqual(["200", "401"]);
  });

  it("stays open when no metrics token is set", async () => {
    const res = await scrape(open);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^refeed_mqtt_connected_clients 0$/m);
  });
});
