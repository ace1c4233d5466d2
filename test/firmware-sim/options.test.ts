import { describe, expect, it } from "vitest";
import { parseSimArgs } from "../../firmware-sim/options.ts";

const env = { REFEED_ADMIN_TOKEN: "admin-token-0123456789" };

describe("refeed sim options", () => {
  it("has defaults that fit a local npm start, and derives the broker from --url", () => {
    const parsed = parseSimArgs([], env);
    expect(parsed).toMatchObject({
      ok: true,
      options: {
        scenario: "mixed",
        devices: 20,
        rate: 1,
        url: "http://localhost:8080",
        brokerUrl: "mqtt://localhost:1883",
        token: env.REFEED_ADMIN_TOKEN,
        accept: 0.7,
        undo: 0.1,
        optIn: 0.8,
        durationMs: undefined,
      },
    });
    expect(
      parseSimArgs(["--url", "http://10.0.0.5:9000", "--ws", "--duration", "10m", "--rate", "0.2"], env),
    ).toMatchObject({
      ok: true,
      options: { brokerUrl: "ws://10.0.0.5:9000/mqtt", durationMs: 600_000, rate: 0.2 },
    });
    expect(parseSimArgs(["--mqtt", "mqtt://broker:1884", "--scenario", "tv", "--devices", "3"], env)).toMatchObject({
      ok: true,
      options: { brokerUrl: "mqtt://broker:1884", scenario: "tv" },
    });
  });

  it.each([
    [["--devices", "many"], '--devices: expected a whole number of devices from 1 to 100000 (got "many")'],
    [["--devices", "2.5"], "--devices: expected a whole number of devices"],
    [["--rate", "0"], "--rate: expected more than 0 records per second"],
    [["--scenario", "fridge"], '--scenario: expected one of atm, banking-app, ride-app, tv, mixed (got "fridge")'],
    [["--duration", "ten minutes"], "--duration: expected a duration such as 90s, 10m or 1h"],
    [["--url", "localhost:8080"], "--url: expected an http(s) URL"],
    [["--mqtt", "http://x:1883"], "--mqtt: expected a broker URL"],
    [["--accept", "1.5"], '--accept: expected a share from 0 to 1 (got "1.5")'],
    [["--opt-in=-1"], "--opt-in: expected a share from 0 to 1"],
    [["--prefix", "Sim Fleet"], "--prefix: 1-24 lowercase letters, digits or '-'"],
    [["--scenario", "mixed", "--devices", "5"], "--devices: the mixed scenario needs at least 7 devices (got 5)"],
    [["--ws", "--mqtt", "mqtt://x:1883"], "--ws: give either --ws"],
    [["--devcies", "5"], "Unknown option '--devcies'"],
  ])("refuses %j naming the flag", (argv, message) => {
    const parsed = parseSimArgs(argv, env);
    expect(parsed.ok).toBe(false);
    expect(!parsed.ok && parsed.message).toContain(message);
  });

  it("needs an admin token and never echoes one back", () => {
    expect(parseSimArgs([], {})).toEqual({
      ok: false,
      message: "--token: an admin token is needed (or set REFEED_ADMIN_TOKEN)",
    });
    const bad = parseSimArgs(["--token", ""], {});
    expect(!bad.ok && bad.message).toBe("--token: an admin token is needed (or set REFEED_ADMIN_TOKEN)");
  });
});
