import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startTestPlatform, type TestPlatform } from "../support/platform.ts";

/** Opens a raw TCP connection to the HTTP port; resolves once it is connected. */
function rawHttp(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

/**
 * A client that never finishes its headers is cut after the configured headers
 * timeout, like a slow MQTT CONNECT; a body over the configured limit is 413.
 */
describe("HTTP timeouts and body limit", () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform({
      http: {
        port: 0,
        host: "127.0.0.1",
        headersTimeoutMs: 1000,
        requestTimeoutMs: 2000,
        keepAliveTimeoutMs: 5000,
        bodyLimitBytes: 4096,
        trustedProxies: [],
      },
    });
  });
  afterAll(() => t?.close());

  it("drops a request whose headers never finish within the configured headers timeout", async () => {
    const socket = await rawHttp(t.http);
    const received: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => received.push(chunk));
    socket.on("error", () => undefined); // a reset is an acceptable way to be dropped
    const started = performance.now();
    const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(performance.now() - started)));
    socket.write("GET /healthz HTTP/1.1\r\nHost: refeed\r\nX-Slow: ");
    const elapsed = await closed;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    // The timeout plus Node's check interval (a quarter of it), with room for a busy machine.
    expect(elapsed).toBeLessThan(3000);
    const answer = Buffer.concat(received).toString();
    if (answer) expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });

  it("serves a complete request on the same server meanwhile", async () => {
    expect((await fetch(`${t.http}/healthz`)).status).toBe(200);
  });

  it("answers 413 body_too_large, naming the limit, to a body over the configured limit; one under it is served", async () => {
    const over = await api(t, "POST", "/api/devices", { id: "big-body", kind: "kiosk", pad: "x".repeat(5000) });
    expect(over).toEqual({
      status: 413,
      body: { error: "body_too_large", message: "the body is larger than 4096 bytes" },
    });
    const under = await api(t, "POST", "/api/devices", { id: "small-body", kind: "kiosk" });
    expect(under.status).toBe(201);
  });
});

describe("HTTP limits configuration", () => {
  it("refuses a headers timeout longer than the request timeout, naming the variable", async () => {
    const { loadConfig } = await import("../../config/load.ts");
    expect(() =>
      loadConfig({ REFEED_HTTP_HEADERS_TIMEOUT_MS: "40000", REFEED_HTTP_REQUEST_TIMEOUT_MS: "30000" }),
    ).toThrow(/REFEED_HTTP_HEADERS_TIMEOUT_MS: must not be longer than the request timeout \(30000 ms\)/);
    const config = loadConfig({ REFEED_HTTP_HEADERS_TIMEOUT_MS: "2000", REFEED_HTTP_BODY_LIMIT_BYTES: "2048" });
    expect(config.http).toMatchObject({ headersTimeoutMs: 2000, requestTimeoutMs: 30_000, bodyLimitBytes: 2048 });
  });
});
