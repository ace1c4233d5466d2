import { createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ident, influxql } from "../../store/influxql.ts";
import { influxQuery } from "../support/influx.ts";
import {
  ADMIN_TOKEN,
  api,
  ingestCaughtUp,
  provision,
  startTestPlatform,
  type TestPlatform,
} from "../support/platform.ts";

const ALL = { analytics: true, personalization: true, feedback: true };

/**
 * Records that name no `subject` are about a customer all the same when the device is theirs (linked) or
 * serves them now (a shared device's session): they are stored as that customer's, with consent applied,
 * and never pass as the device's own.
 */
describe("whom a record without subject is about", () => {
  let t: TestPlatform;
  const tokens = new Map<string, string>();
  beforeAll(async () => {
    t = await startTestPlatform();
    for (const [id, subject] of [
      ["phone-agreed", "cust-rs-agreed"],
      ["phone-silent", "cust-rs-silent"],
      ["kiosk-rs", undefined],
    ] as const) {
      const device = await provision(t, { id, kind: subject ? "app" : "kiosk", ...(subject ? { subject } : {}) });
      tokens.set(id, device.token);
    }
    for (const subject of ["cust-rs-agreed", "cust-rs-shopper"])
      expect((await api(t, "PUT", `/api/subjects/${subject}/consent`, ALL)).status).toBe(200);
  });
  afterAll(() => t?.close());

  const post = async (device: string, channel: string, body: unknown) => {
    const res = await fetch(`${t.http}/api/ingest/${channel}`, {
      method: "POST",
      headers: { authorization: `Bearer ${tokens.get(device)}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return (await res.json()) as { accepted?: number; withheld?: number; refused?: unknown[] };
  };
  const stored = async (measurement: string, device: string, marker: string) => {
    await ingestCaughtUp(t);
    const rows = await influxQuery(t.db, influxql`SELECT * FROM ${ident(measurement)} WHERE "device" = ${device}`);
    return rows.filter((r) => JSON.stringify(r).includes(marker)).map((r) => r.subject ?? null);
  };

  it("a linked device's telemetry, events and feedback are its customer's", async () => {
    expect(await post("phone-agreed", "telemetry", { metrics: { battery: 81.25 } })).toMatchObject({ accepted: 1 });
    expect(await post("phone-agreed", "events", { name: "page_view", props: { page: "m-linked" } })).toMatchObject({
      accepted: 1,
    });
    expect(await post("phone-agreed", "feedback", { rating: 4, text: "m-linked feedback" })).toMatchObject({
      accepted: 1,
    });
    expect(await stored("telemetry", "phone-agreed", "81.25")).toEqual(["cust-rs-agreed"]);
    expect(await stored("events", "phone-agreed", "m-linked")).toEqual(["cust-rs-agreed"]);
    expect(await stored("feedback", "phone-agreed", "m-linked")).toEqual(["cust-rs-agreed"]);
    // So they are the customer's to see (and to erase).
    const exported = await fetch(`${t.http}/api/subjects/cust-rs-agreed/export`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(await exported.text()).toContain("m-linked");
  });

  it("without the customer's consent, a linked device's records are withheld, not stored as the device's", async () => {
    expect(await post("phone-silent", "telemetry", { metrics: { battery: 64.75 } })).toMatchObject({
      accepted: 0,
      withheld: 1,
    });
    expect(await post("phone-silent", "events", { name: "page_view", props: { page: "m-silent" } })).toMatchObject({
      accepted: 0,
      withheld: 1,
    });
    expect(await stored("telemetry", "phone-silent", "64.75")).toEqual([]);
    expect(await stored("events", "phone-silent", "m-silent")).toEqual([]);
  });

  it("a refused record of such a device keeps its customer's keyed hash, not the payload", async () => {
    const answer = await post("phone-silent", "events", { name: "page_view", props: {}, m_refused: 1 });
    expect(answer.refused).toHaveLength(1);
    await ingestCaughtUp(t);
    const [letter, ...more] = await influxQuery(
      t.db,
      influxql`SELECT * FROM dead_letters WHERE "device" = 'phone-silent'`,
    );
    expect(more).toHaveLength(0);
    const key = Buffer.from((await readFile(path.join(t.dataDir, "subject-hash.key"), "utf8")).trim(), "hex");
    expect(letter!.payload ?? null).toBeNull();
    expect(letter!.subject_hash).toBe(createHmac("sha256", key).update("cust-rs-silent").digest("hex"));
  });

  it("a shared device's events and feedback in a session are that customer's; its telemetry stays its own", async () => {
    await post("kiosk-rs", "events", { subject: "cust-rs-shopper", name: "session_start" });
    await post("kiosk-rs", "events", { name: "tap", props: { m: "m-in-session" } });
    await post("kiosk-rs", "feedback", { rating: 2, text: "m-in-session slow" });
    await post("kiosk-rs", "telemetry", { metrics: { temp: 31.5 } });
    await post("kiosk-rs", "events", { name: "session_end" });
    await post("kiosk-rs", "events", { name: "tap", props: { m: "m-after-session" } });
    expect(await stored("events", "kiosk-rs", "m-in-session")).toEqual(["cust-rs-shopper"]);
    expect(await stored("feedback", "kiosk-rs", "m-in-session")).toEqual(["cust-rs-shopper"]);
    expect(await stored("telemetry", "kiosk-rs", "31.5")).toEqual([null]);
    expect(await stored("events", "kiosk-rs", "m-after-session")).toEqual([null]);
  });

  it("a session that starts in the same publish counts for the records after it", async () => {
    expect(
      await post("kiosk-rs", "events", [
        { subject: "cust-rs-shopper", name: "session_start" },
        { name: "tap", props: { m: "m-same-publish" } },
        { name: "session_end" },
        { name: "tap", props: { m: "m-after-end" } },
      ]),
    ).toMatchObject({ accepted: 4 });
    expect(await stored("events", "kiosk-rs", "m-same-publish")).toEqual(["cust-rs-shopper"]);
    expect(await stored("events", "kiosk-rs", "m-after-end")).toEqual([null]);
  });

  it("the session of a customer without consent withholds their taps instead of storing them as the kiosk's", async () => {
    expect(await post("kiosk-rs", "events", { subject: "cust-rs-nobody", name: "session_start" })).toMatchObject({
      withheld: 1,
    });
    expect(await post("kiosk-rs", "events", { name: "tap", props: { m: "m-nob-before" } })).toMatchObject({
      accepted: 0,
      withheld: 1,
    });
    await post("kiosk-rs", "events", { name: "session_end" });
    expect(await post("kiosk-rs", "events", { name: "tap", props: { m: "m-nob-after" } })).toMatchObject({
      accepted: 1,
    });
    expect(await stored("events", "kiosk-rs", "m-nob-before")).toEqual([]);
    expect(await stored("events", "kiosk-rs", "m-nob-after")).toEqual([null]);
    expect(JSON.stringify(await influxQuery(t.db, influxql`SELECT * FROM events`))).not.toContain("cust-rs-nobody");
  });
});
