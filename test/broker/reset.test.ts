import { createConnection } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectDevice, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";

/**
 * A connection reset (RST) before CONNECT: what a load balancer's probe or a
 * device losing its link does. Nothing listens for the guard's errors before
 * Aedes takes the connection, so the reset must close it, not the process.
 */
describe("a connection reset before CONNECT", () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(() => t?.close());

  it("closes that connection only; devices go on connecting", async () => {
    const port = Number(new URL(t.mqttUrl).port);
    for (const bytes of [Buffer.alloc(0), Buffer.from([0x10])]) {
      const socket = createConnection({ port, host: "127.0.0.1" });
      await new Promise<void>((resolve, reject) => (socket.once("connect", resolve), socket.once("error", reject)));
      if (bytes.length > 0) socket.write(bytes);
      // Once the broker holds the connection (a pre-auth socket), the reset reaches its guard.
      await waitFor(
        async () =>
          (await fetch(`${t.http}/metrics`).then((r) => r.text())).match(/^refeed_mqtt_pre_auth_connections 1$/m),
        "the pre-auth connection",
      );
      socket.resetAndDestroy();
      await waitFor(
        async () =>
          (await fetch(`${t.http}/metrics`).then((r) => r.text())).match(/^refeed_mqtt_pre_auth_connections 0$/m),
        "the reset connection closed",
      );
    }
    const tv = await provision(t, { id: "tv-reset", kind: "tv" });
    const client = await connectDevice(t.mqttUrl, tv.id, tv.token);
    expect(client.connected).toBe(true);
    await client.endAsync();
  });
});
