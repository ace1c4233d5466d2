import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxQuery } from "../support/influx.ts";
import { ingestCaughtUp, provision, startTestPlatform, type TestPlatform } from "../support/platform.ts";
import { run } from "../support/process.ts";
import { influxql } from "../../store/influxql.ts";

/** What a Node program that depends on the package does: plain `node`, no tsx of its own, `import "refeed/device"`. */
const program = `
const [url, id, token] = process.argv.slice(1);
const { connect, DeviceError } = await import("refeed/device");
const device = await connect({ url, id, token });
await device.telemetry({ metrics: { from_package: 1 } });
await device.close();
const refused = await connect({ url, id, token: "wrong" }).catch((e) => e);
console.log(JSON.stringify({ refused: refused instanceof DeviceError && refused.code }));
`;

describe("the refeed/device package entry", () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(() => t?.close());

  it("loads in plain Node and speaks to the platform", async () => {
    const { id, token } = await provision(t, { id: "node-consumer" });
    const result = await run(process.execPath, ["--input-type=module", "-e", program, t.mqttUrl, id, token], 30_000);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ refused: "BAD_USER_NAME_OR_PASSWORD" });
    await ingestCaughtUp(t);
    expect(await influxQuery(t.db, influxql`SELECT from_package FROM telemetry WHERE device = ${id}`)).toMatchObject([
      { from_package: 1 },
    ]);
  });
});
