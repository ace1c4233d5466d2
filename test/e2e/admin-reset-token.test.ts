import { stat } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { runCli } from "../support/process.ts";

/** Runs `refeed admin ...` to its end, as an operator would. */
async function admin(args: string[], env: Record<string, string> = {}) {
  const cli = runCli(["admin", ...args], env);
  const code = await cli.exited;
  return { code, stdout: cli.stdout.join("\n"), stderr: cli.stderr.join("\n") };
}

/** An operator who lost the admin token gets a new one from the data dir; the old one stops working. */
describe("refeed admin reset-token", () => {
  let t: TestPlatform;
  beforeAll(async () => {
    // No REFEED_ADMIN_TOKEN: the platform authenticates the admin with the hash in its data dir.
    t = await startTestPlatform({ adminToken: undefined });
  });
  afterAll(() => t?.close());

  it("writes a new token's hash (mode 0600) that the platform accepts after a restart, and the old token is refused", async () => {
    const first = await admin(["reset-token", "--data-dir", t.dataDir]);
    expect(first.code).toBe(0);
    const old = first.stdout.trim();
    expect(old).toMatch(/^rfa_[A-Za-z0-9_-]{43}$/);
    expect(first.stderr).toContain("restart Refeed to take the new one");
    expect(first.stderr).not.toContain(old);
    expect((await stat(path.join(t.dataDir, "admin-token.hash"))).mode & 0o777).toBe(0o600);
    // The running platform keeps what it read at start, as the command says.
    expect((await api(t, "GET", "/api/devices", undefined, old)).status).toBe(401);

    await t.restart();
    expect((await api(t, "GET", "/api/devices", undefined, old)).status).toBe(200);

    const second = await admin(["reset-token"], { REFEED_DATA_DIR: t.dataDir });
    expect(second.code).toBe(0);
    const fresh = second.stdout.trim();
    expect(fresh).toMatch(/^rfa_/);
    expect(fresh).not.toBe(old);
    await t.restart();
    expect((await api(t, "GET", "/api/devices", undefined, fresh)).status).toBe(200);
    expect((await api(t, "GET", "/api/devices", undefined, old)).status).toBe(401);
  });

  it("says that REFEED_ADMIN_TOKEN overrides the file when it is set", async () => {
    const out = await admin(["reset-token", "--data-dir", t.dataDir], {
      REFEED_ADMIN_TOKEN: "an-operator-chosen-token-0123",
    });
    expect(out.code).toBe(0);
    expect(out.stderr).toContain("REFEED_ADMIN_TOKEN (or the config file's adminToken) is set and overrides this file");
    expect(out.stderr).not.toContain("an-operator-chosen-token-0123");
  });

  it("names the option or variable whose data dir cannot be used, and writes nothing", async () => {
    const missing = path.join(t.dataDir, "no-such-dir");
    const byFlag = await admin(["reset-token", "--data-dir", missing]);
    expect(byFlag.code).toBe(1);
    expect(byFlag.stderr).toContain(`refeed admin: --data-dir: ${missing} cannot be read (ENOENT)`);
    expect(byFlag.stdout).toBe("");
    const byEnv = await admin(["reset-token"], { REFEED_DATA_DIR: path.join(t.dataDir, "admin-token.hash") });
    expect(byEnv.code).toBe(1);
    expect(byEnv.stderr).toContain("refeed admin: REFEED_DATA_DIR:");
    expect(byEnv.stderr).toContain("is not a directory");
    const unknown = await admin(["rotate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'rotate'");
  });
});
