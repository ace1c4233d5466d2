import { createServer, type Server } from "node:http";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collect, connectDevice, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";
import { parseAction } from "../support/messages.ts";

describe("rules on presence, and notify to a support webhook", () => {
  let t: TestPlatform;
  let hook: Server;
  const received: Array<Record<string, unknown>> = [];
  beforeAll(async () => {
    hook = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        received.push(JSON.parse(body) as Record<string, unknown>);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, "127.0.0.1", resolve));
    const port = (hook.address() as { port: number }).port;
    t = await startTestPlatform();
    await writeFile(
      path.join(t.rulesDir, "welcome.yaml"),
      `id: welcome-back\non: presence\nwhen: msg.online && msg.transport == 'tcp'\nthen:\n  - set: ui.greeting\n    value: welcome back\ncooldown: 1h\n`,
    );
    await writeFile(
      path.join(t.rulesDir, "gone.yaml"),
      `id: kiosk-gone\non: presence\nwhen: msg.event == 'disconnect'\nthen:\n  - notify: http://127.0.0.1:${port}/support\n    expr: "'device ' + msg.device + ' went offline: ' + msg.reason"\n`,
    );
    await t.restart();
  });
  afterAll(async () => {
    await t?.close();
    hook?.close();
  });

  it("fires on connect and on disconnect, with why, and posts the notification", async () => {
    const kiosk = await provision(t, { id: "kiosk-9", kind: "kiosk" });
    const client = await connectDevice(t.mqttUrl, kiosk.id, kiosk.token);
    const seen = collect(client);
    // The action was proposed at connect; delivery sends what is pending when the device subscribes.
    await client.subscribeAsync(`devices/${kiosk.id}/actions`, { qos: 1 });
    const [action] = (await waitFor(() => seen.get(`devices/${kiosk.id}/actions`), "the welcome action")).map(
      parseAction,
    );
    expect(action).toMatchObject({ rule: "welcome-back", kind: "set", key: "ui.greeting", value: "welcome back" });
    expect(action!.why).toContain('msg.online = true, msg.transport = "tcp"');

    await client.endAsync();
    const note = await waitFor(() => received.find((r) => r.device === kiosk.id), "the support webhook");
    expect(note).toMatchObject({ rule: "kiosk-gone", device: kiosk.id, message: "device kiosk-9 went offline: clean" });
    expect(String(note.why)).toMatch(/^rule kiosk-gone: msg\.event == 'disconnect' held/);
  });
});
