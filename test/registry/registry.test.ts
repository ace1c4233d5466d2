import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistry, type RegistryChange } from "../../registry/index.ts";
import type { Store } from "../../store/index.ts";
import { openTestStore } from "../support/store.ts";

/** The registry against a real InfluxDB: its view must always be what the change events rebuild. */
describe("device registry lifecycle", () => {
  let store: Store;
  const log = pino({ level: "silent" });
  let opened: Awaited<ReturnType<typeof openTestStore>> | undefined;
  beforeAll(async () => {
    opened = await openTestStore("reg", log);
    store = opened.store;
  });
  afterAll(async () => opened?.close());

  it("rotates and revokes, announces each change, and refuses the old token at once even when it was cached", async () => {
    const registry = await startRegistry(store, log);
    const changes: RegistryChange[] = [];
    registry.onChange((c) => changes.push(c));
    const { token } = await registry.provision({ id: "pump-1" });
    expect(await registry.authenticate("pump-1", token)).toMatchObject({ ok: true }); // now in the verified cache
    const rotated = await registry.rotate("pump-1");
    expect(rotated.token).not.toBe(token);
    expect(await registry.authenticate("pump-1", token)).toEqual({ ok: false, reason: "bad_token" });
    expect(await registry.authenticateBearer(token)).toEqual({ ok: false, reason: "bad_token" });
    expect(await registry.authenticate("pump-1", rotated.token)).toMatchObject({ ok: true });
    expect(registry.get("pump-1")?.rotatedAt).toBeInstanceOf(Date);

    await registry.revoke("pump-1");
    await registry.revoke("pump-1"); // idempotent: no second event
    expect(await registry.authenticate("pump-1", rotated.token)).toEqual({ ok: false, reason: "revoked" });
    await expect(registry.rotate("pump-1")).rejects.toMatchObject({ code: "REVOKED" });
    await expect(registry.rotate("ghost")).rejects.toMatchObject({ code: "NOT_FOUND" });
    await expect(registry.revoke("ghost")).rejects.toMatchObject({ code: "NOT_FOUND" });
    expect(changes).toEqual([
      { op: "provisioned", device: "pump-1", here: true },
      { op: "rotated", device: "pump-1", here: true },
      { op: "revoked", device: "pump-1", here: true },
    ]);
  });

  it("serialises concurrent rotations, and a restart rebuilds the same view", async () => {
    const registry = await startRegistry(store, log);
    const { token } = await registry.provision({ id: "pump-2", kind: "pump" });
    const [first, second] = await Promise.all([registry.rotate("pump-2"), registry.rotate("pump-2")]);
    // The later call wins, in memory and in the stored order alike.    expect(await registry.authenticate("pump-2", second.token)).toMatchObject({ ok: true });
    expect(await registry.authenticate("pump-2", first.token)).toEqual({ ok: false, reason: "bad_token" });

    const rebuilt = await startRegistry(store, log);
    expect(rebuilt.get("pump-2")).toEqual(registry.get("pump-2"));
    expect(rebuilt.get("pump-1")).toMatchObject({ revoked: true, revokedAt: registry.get("pump-1")!.revokedAt });
    expect(await rebuilt.authenticate("pump-2", second.token)).toMatchObject({ ok: true, device: { kind: "pump" } });
    expect(await rebuilt.authenticate("pump-2", first.token)).toEqual({ ok: false, reason: "bad_token" });
    expect(await rebuilt.authenticate("pump-2", token)).toEqual({ ok: false, reason: "bad_token" });
    expect(await rebuilt.authenticate("pump-1", "whatever")).toEqual({ ok: false, reason: "revoked" });
  });
});
