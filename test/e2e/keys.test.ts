import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keys as keysCli } from "../../cli/keys.ts";
import { influxQuery } from "../support/influx.ts";
import { ADMIN_TOKEN, api, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { inProcess, runCli } from "../support/process.ts";
import { waitFor } from "../support/wait.ts";
import { influxql } from "../../store/influxql.ts";

interface Key {
  id: string;
  token: string;
  expiresAt: string;
  createdAt: string;
}
interface TimelineAction {
  id: string;
  rule: string;
  target: string | null;
}

/** `refeed keys ...` against the test platform's API. */
const cli = (t: TestPlatform, args: string[], env: Record<string, string> = { REFEED_ADMIN_TOKEN: ADMIN_TOKEN }) =>
  inProcess(keysCli, t.http, args, env);

describe("staff API keys", () => {
  let t: TestPlatform;
  let support: Key;
  let product: Key;
  beforeAll(async () => {
    t = await startTestPlatform({}, { logs: true });
    support = (await api(t, "POST", "/api/keys", { name: "support desk", role: "support" })).body as unknown as Key;
    product = (await api(t, "POST", "/api/keys", { name: "growth team", role: "product" })).body as unknown as Key;
    await provision(t, { id: "tv-1", kind: "tv", subject: "cust-1" });
  });
  afterAll(() => t?.close());

  it("are created by the admin, answered once, and listed without their tokens", async () => {
    expect(support).toMatchObject({
      name: "support desk",
      role: "support",
      state: "active",
      createdBy: "admin",
      expiresAt: null,
      revokedAt: null,
    });
    expect(support.id).toMatch(/^k-[0-9a-f]{10}$/);
    // The token names its key, so one scrypt check decides.
    expect(support.token).toMatch(
      new RegExp(`^rfk\\.${Buffer.from(support.id).toString("base64url")}\\.[A-Za-z0-9_-]{43}$`),
    );
    const listed = await api(t, "GET", "/api/keys");
    expect(listed.status).toBe(200);
    expect((listed.body as unknown as Key[]).map((k) => k.id)).toEqual(
      expect.arrayContaining([support.id, product.id]),
    );
    const text = JSON.stringify(listed.body);
    expect(text).not.toContain(support.token);
    expect(text).not.toMatch(/token|scrypt/);
    expect((await api(t, "GET", `/api/keys/${support.id}`)).body).toMatchObject({ id: support.id, role: "support" });
    // At rest only the scrypt hash; in the logs nothing of the token.
    const rows = await influxQuery(t.db, influxql`SELECT * FROM api_keys WHERE "key" = ${support.id}`);
    expect(rows[0]).toMatchObject({ op: "created", role: "support", name: "support desk", by: "admin" });
    expect(String(rows[0]!.token_hash)).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(JSON.stringify(rows)).not.toContain(support.token.split(".")[2]);
    expect(JSON.stringify(t.logs)).not.toContain(support.token.split(".")[2]);
  });

  it("a support key reads health and timelines and can change nothing", async () => {
    const as = (method: string, url: string, body?: unknown) => api(t, method, url, body, support.token);
    expect((await as("GET", "/api/fleet/health")).status).toBe(200);
    expect((await as("GET", "/api/devices/tv-1/health")).status).toBe(200);
    expect((await as("GET", "/api/devices/tv-1/timeline")).status).toBe(200);
    expect((await as("POST", "/api/live/tickets")).status).toBe(201);

    const refused: Array<[string, string, unknown?]> = [
      ["POST", "/api/rules", { id: "sneaky", on: "telemetry", when: "true", then: [{ set: "x", value: 1 }] }],
      ["POST", "/api/rules/cool-theme/disable"],
      ["POST", "/api/rules/cool-theme/backtest", {}],
      ["POST", "/api/devices", { id: "rogue" }],
      ["GET", "/api/devices"],
      ["POST", "/api/devices/tv-1/rotate"],
      ["POST", "/api/devices/tv-1/revoke"],
      ["DELETE", "/api/devices/tv-1"],
      ["PUT", "/api/subjects/cust-1/consent", { analytics: true }],
      ["POST", "/api/actions/act_x/undo"],
      ["POST", "/api/keys", { name: "escalate", role: "admin" }],
      ["GET", "/api/keys"],
      ["DELETE", `/api/keys/${product.id}`],
    ];
    for (const [method, url, body] of refused) {
      const res = await as(method, url, body);
      expect(res.status, `${method} ${url}`).toBe(403);
      expect(res.body.error).toBe("forbidden");
    }
    // No raw export of a customer, whatever state that route is in.
    expect((await as("GET", "/api/subjects/cust-1/export")).status).not.toBe(200);
    // Nothing changed: the device still works, no rule, no key appeared.
    expect((await api(t, "GET", "/api/devices/tv-1")).body.revoked).toBe(false);
    expect((await api(t, "GET", "/api/rules")).body).toEqual([]);
    expect((await api(t, "GET", "/api/keys")).body).toHaveLength(2);
    // A staff key is not a device token.
    const ingest = await fetch(`${t.http}/api/ingest/telemetry`, {
      method: "POST",
      headers: { authorization: `Bearer ${support.token}` },
      body: '{"metrics":{"x":1}}',
    });
    expect(ingest.status).toBe(401);
  });

  it("a support key never sees a notification's webhook URL, which carries its secret", async () => {
    const received: string[] = [];
    const hook = createServer((req, res) => {
      req.resume();
      received.push(req.url ?? "");
      res.end();
    });
    await new Promise<void>((resolve) => hook.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hooks/T0123?token=s3cret-webhook-token`;
    try {
      const rule = await api(t, "POST", "/api/rules", {
        id: "page-support",
        on: "telemetry",
        when: "msg.metrics.temp > 40",
        then: [{ notify: url, message: "overheating" }],
      });
      expect(rule.status, JSON.stringify(rule.body)).toBe(201);
      const device = await provision(t, { id: "kiosk-hot" });
      const res = await fetch(`${t.http}/api/ingest/telemetry`, {
        method: "POST",
        headers: { authorization: `Bearer ${device.token}` },
        body: '{"metrics":{"temp":45}}',
      });
      expect(res.status).toBe(200);
      await waitFor(() => received.length > 0, "the webhook call");
      const action = await waitFor(async () => {
        const entries = (await api(t, "GET", "/api/devices/kiosk-hot/timeline?types=action", undefined, support.token))
          .body.entries as TimelineAction[];
        return entries.find((e) => e.rule === "page-support");
      }, "the notification in the timeline");
      expect(action.target).toBeNull();
      const asSupport = await api(t, "GET", `/api/actions/${action.id}`, undefined, support.token);
      expect(asSupport.body).toMatchObject({ id: action.id, kind: "notify", key: null });
      expect(JSON.stringify(asSupport.body)).not.toContain("s3cret");
      expect((await api(t, "GET", `/api/actions/${action.id}`)).body.key).toBe(url);
    } finally {
      await api(t, "DELETE", "/api/rules/page-support");
      hook.close();
    }
  });

  it("a product key manages rules and sees no support views", async () => {
    const as = (method: string, url: string, body?: unknown) => api(t, method, url, body, product.token);
    const rule = await as("POST", "/api/rules", {
      id: "hot",
      on: "telemetry",
      when: "msg.metrics.temp > 30",
      then: [{ set: "ui.theme", value: "cool" }],
    });
    expect(rule.status).toBe(201);
    expect(rule.body.updatedBy).toBe(`growth team (key ${product.id})`);
    expect((await as("GET", "/api/fleet/health")).status).toBe(403);
    expect((await as("POST", "/api/keys", { name: "x", role: "support" })).status).toBe(403);
    expect((await api(t, "DELETE", "/api/rules/hot")).status).toBe(204);
  });

  it("an admin key manages keys like the admin token", async () => {
    const admin = (await api(t, "POST", "/api/keys", { name: "ops", role: "admin", expiresIn: "90d" }))
      .body as unknown as Key;
    expect(Date.parse(admin.expiresAt) - Date.parse(admin.createdAt)).toBe(90 * 86_400_000);
    const made = await api(t, "POST", "/api/keys", { name: "night shift", role: "support" }, admin.token);
    const madeId = made.body.id as string;
    expect(made.status).toBe(201);
    expect(made.body.createdBy).toBe(`ops (key ${admin.id})`);
    expect((await api(t, "DELETE", `/api/keys/${madeId}`, undefined, admin.token)).body).toMatchObject({
      state: "revoked",
      revokedBy: `ops (key ${admin.id})`,
    });
  });

  it("refuses bad input with the field named", async () => {
    const bad = async (body: unknown) => {
      const res = await api(t, "POST", "/api/keys", body);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe("invalid_body");
      return res.body.message as string;
    };
    expect(await bad({ name: "x", role: "root" })).toBe("role: one of admin, product, support");
    expect(await bad({ role: "support" })).toMatch(/^name: /);
    expect(await bad({ name: "<script>", role: "support" })).toMatch(/^name: 1-64 characters/);
    expect(await bad({ name: "x", role: "support", expiresIn: "forever" })).toMatch(/^expiresIn: a duration/);
    expect(await bad({ name: "x", role: "support", scope: "all" })).toBe("unknown field scope");
    expect((await api(t, "DELETE", "/api/keys/k-0000000000")).status).toBe(404);
    expect((await api(t, "GET", "/api/fleet/health", undefined, "rfk.bm9wZQ.bm9wZQ")).status).toBe(401);
  });

  it("a revoked or expired key stops working at once, and all of it survives a restart", async () => {
    const gone = (await api(t, "POST", "/api/keys", { name: "temp", role: "support" })).body as unknown as Key;
    expect((await api(t, "GET", "/api/fleet/health", undefined, gone.token)).status).toBe(200);
    expect((await api(t, "DELETE", `/api/keys/${gone.id}`)).body).toMatchObject({
      state: "revoked",
      revokedBy: "admin",
    });
    expect((await api(t, "GET", "/api/fleet/health", undefined, gone.token)).status).toBe(401);
    const brief = (await api(t, "POST", "/api/keys", { name: "brief", role: "support", expiresIn: "2s" }))
      .body as unknown as Key;
    expect((await api(t, "GET", "/api/fleet/health", undefined, brief.token)).status).toBe(200);
    await waitFor(
      async () => (await api(t, "GET", "/api/fleet/health", undefined, brief.token)).status === 401,
      "the key to expire",
    );
    expect((await api(t, "GET", `/api/keys/${brief.id}`)).body.state).toBe("expired");

    await t.restart();
    expect((await api(t, "GET", "/api/fleet/health", undefined, support.token)).status).toBe(200);
    expect((await api(t, "GET", "/api/fleet/health", undefined, gone.token)).status).toBe(401);
    expect((await api(t, "GET", "/api/fleet/health", undefined, brief.token)).status).toBe(401);
    expect((await api(t, "GET", `/api/keys/${gone.id}`)).body).toMatchObject({ state: "revoked", revokedBy: "admin" });
  });

  it("refeed keys add, list and revoke", async () => {
    const child = runCli(["keys", "add", "--role", "support", "--name", "desk 2", "--url", t.http], {
      REFEED_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    expect(await child.exited).toBe(0);
    const out = child.stdout.join("\n");
    const id = /^id: (k-[0-9a-f]{10})$/m.exec(out)?.[1];
    const token = /^token: (rfk\.\S+)$/m.exec(out)?.[1];
    expect(id && token).toBeTruthy();
    expect(child.stderr.join("\n")).toMatch(/shown once/);
    expect((await api(t, "GET", "/api/fleet/health", undefined, token)).status).toBe(200);

    const listed = await cli(t, ["list"]);
    expect(listed.stdout).toMatch(/^ID\s+NAME\s+ROLE\s+STATE\s+CREATED\s+EXPIRES$/m);
    expect(listed.stdout).toMatch(new RegExp(`^${id}\\s+desk 2\\s+support\\s+active\\s+\\d{4}-`, "m"));
    expect(listed.stdout).not.toContain(token);
    expect(await cli(t, ["revoke", id!])).toMatchObject({ code: 0, stdout: `revoked ${id} (desk 2)` });
    expect((await api(t, "GET", "/api/fleet/health", undefined, token)).status).toBe(401);

    expect(await cli(t, ["add", "--role", "support"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("'add' needs --role (admin, product or support) and --name"),
    });
    expect(await cli(t, ["add", "--role", "boss", "--name", "x"])).toMatchObject({
      code: 1,
      stderr: "refeed keys: role: one of admin, product, support (HTTP 400)",
    });
    expect(await cli(t, ["revoke"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("'revoke' takes one key id"),
    });
    expect(await cli(t, ["list"], { REFEED_ADMIN_TOKEN: support.token })).toMatchObject({
      code: 1,
      stderr: "refeed keys: this call needs the admin role (HTTP 403)",
    });
  });
});
