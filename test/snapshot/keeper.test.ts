import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { readSnapshot, SNAPSHOT_FILE } from "../../snapshot/file.ts";
import { api, logLine, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { waitFor } from "../support/wait.ts";

/** The snapshot a running platform keeps of its views, as it is on disk. */
describe("the views snapshot of a running platform", () => {
  let t: TestPlatform;
  afterEach(() => t?.close());

  const start = () => startTestPlatform({ snapshot: { every: "100ms" } } as never, { logs: true });
  const onDisk = async () => {
    const read = await readSnapshot(path.join(t.dataDir, SNAPSHOT_FILE), {
      url: t.config.influx.url!.replace(/\/$/, ""),
      db: t.db,
    });
    if (!read.ok) throw new Error(`${read.reason}: ${read.detail}`);
    return read.snapshot;
  };

  it("holds the changes made since the views were rebuilt, and InfluxDB's answers to their queries after a restart", async () => {
    t = await start();
    await provision(t, { id: "kiosk-3", subject: "cust-3" });
    await waitFor(async () => JSON.stringify((await onDisk()).events).includes('"kiosk-3"'), "the provisioning kept");
    await t.restart();
    // The device is now in what InfluxDB answered to the registry's rebuild, not in a change the feed brought.
    const snapshot = await waitFor(async () => {
      const s = await onDisk();
      return s.events.length === 0 && s;
    }, "the snapshot of the new start");
    const answers = new Map(snapshot.answers);
    expect(answers.get('SELECT * FROM "device_registry"')).toEqual([
      expect.objectContaining({ device: "kiosk-3", op: "provisioned", time: expect.stringMatching(/^\d{19}$/) }),
    ]);
    // Only the views' own measurements: no query over a time range, no device data.
    for (const query of answers.keys()) expect(query).not.toMatch(/telemetry|"events"|"feedback"|time >=/);
  });

  it("writes what decides who gets in and what is stored (a revocation, an opt-out) at once, not at the next interval", async () => {
    t = await startTestPlatform({ snapshot: { every: "1h" } } as never);
    await provision(t, { id: "tv-4" });
    expect((await api(t, "POST", "/api/devices/tv-4/revoke")).status).toBe(200);
    expect((await api(t, "PUT", "/api/subjects/cust-4/consent", { analytics: false })).status).toBe(200);
    await waitFor(async () => {
      const events = (await onDisk()).events as Array<{ topic: string; event: { op: string } }>;
      return (
        events.some((e) => e.topic === "registry" && e.event.op === "revoked") &&
        events.some((e) => e.topic === "consent" && e.event.op === "withdrawn")
      );
    }, "the revocation and the opt-out on disk");
  });

  it("keeps nothing of an erased customer", async () => {
    t = await start();
    await provision(t, { id: "phone-9", subject: "cust-9" });
    expect(
      (await api(t, "PUT", "/api/subjects/cust-9/consent", { analytics: true, personalization: true })).status,
    ).toBe(200);
    const file = path.join(t.dataDir, SNAPSHOT_FILE);
    await waitFor(async () => (await readFile(file, "utf8")).includes("cust-9"), "the customer in the snapshot");

    expect((await api(t, "DELETE", "/api/subjects/cust-9")).status).toBe(200);
    await logLine(t, (l) => l.msg === "views snapshot renewed from InfluxDB", "the snapshot renewed after the erasure");
    const text = await readFile(file, "utf8");
    expect(text).not.toContain("cust-9");
    // The device stays (erasure unlinks it from the customer), and the snapshot still verifies.
    expect(text).toContain("phone-9");
    expect((await onDisk()).influx.db).toBe(t.db);
  });
});
