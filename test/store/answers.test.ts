import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { microsOfRow } from "../../store/clock.ts";
import { keepRows, recordingStore, snapshotStore, type Answers } from "../../store/answers.ts";
import { StoreWriteError, type Store } from "../../store/index.ts";
import { ident, influxql } from "../../store/influxql.ts";
import { openTestStore } from "../support/store.ts";

const log = pino({ level: "silent" });
const REGISTRY = influxql`SELECT * FROM ${ident("device_registry")}`;

describe("the stores a start from the views snapshot is made of", () => {
  let test: { store: Store; close(): Promise<void> };
  beforeEach(async () => {
    test = await openTestStore("answers", log);
    // Microseconds that a Date would round: a change event's identity is built from them.
    await test.store.writeLines(
      `device_registry,device=atm-7 op="provisioned",token_hash="h" 1796400000000001\n` +
        `telemetry,device=atm-7 temp=21 1796400000000002`,
      5000,
    );
  });
  afterEach(() => test.close());

  it("notes InfluxDB's answers to the queries it is told to keep, and answers them again with the same times", async () => {
    const recording = recordingStore(test.store, (text) => text.includes("device_registry"));
    const live = await recording.store.query(REGISTRY);
    await recording.store.query(influxql`SELECT * FROM ${ident("telemetry")}`);
    recording.stop();
    await recording.store.query(influxql`SELECT * FROM ${ident("device_registry")} LIMIT 1`);
    expect([...recording.answers.keys()]).toEqual([REGISTRY.text]);

    // Through JSON, as the snapshot file keeps them.
    const answers: Answers = new Map(JSON.parse(JSON.stringify([...recording.answers])) as Array<[string, never]>);
    const offline = snapshotStore({ url: "http://127.0.0.1:1", db: test.store.db, answers });
    const again = await offline.query(REGISTRY);
    expect(again.map((r) => microsOfRow(r.time))).toEqual([1796400000000001]);
    expect(again.map((r) => microsOfRow(r.time))).toEqual(live.map((r) => microsOfRow(r.time)));
    expect(keepRows(again)).toEqual(keepRows(live));
  });

  it("fails writes as an unreachable InfluxDB does, answers other queries empty only while starting, then becomes InfluxDB", async () => {
    const offline = snapshotStore({ url: "http://127.0.0.1:1", db: test.store.db, answers: new Map() });
    const write = offline.write([{ measurement: "consent", fields: { granted: true } }]);
    await expect(write).rejects.toBeInstanceOf(StoreWriteError);
    await expect(write).rejects.toMatchObject({ status: undefined, code: "REFEED_INFLUX_WRITE" });
    await expect(offline.writeLines("x v=1", 1000)).rejects.toMatchObject({ status: undefined });
    expect(await offline.ping()).toBe(false);

    expect(await offline.query(REGISTRY)).toEqual([]);
    expect(offline.endStart()).toEqual([REGISTRY.text]);
    await expect(offline.query(REGISTRY)).rejects.toMatchObject({ code: "REFEED_INFLUX_UNREACHABLE" });
    await expect(offline.exec(REGISTRY)).rejects.toMatchObject({ code: "REFEED_INFLUX_UNREACHABLE" });

    offline.goLive(test.store);
    expect(offline.live).toBe(true);
    expect(await offline.ping()).toBe(true);
    expect((await offline.query(REGISTRY)).map((r) => r.device)).toEqual(["atm-7"]);
    await offline.write([{ measurement: "consent", tags: { subject: "cust-1" }, fields: { granted: true } }]);
    expect(await test.store.query(influxql`SELECT * FROM ${ident("consent")}`)).toHaveLength(1);
  });
});
