import { mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../config/load.ts";

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("configuration", () => {
  it("has the defaults of DESIGN.md", () => {
    const config = loadConfig({});
    expect(config.mqtt.port).toBe(1883);
    expect(config.http.port).toBe(8080);
    expect(config.influx.db).toBe("refeed");
    expect(config.influx.url).toBeUndefined();
    expect(config.dataDir).toBe("./data");
    expect(config.adminToken).toBeUndefined();
  });

  it("reads the environment, with 0 meaning a free port", () => {
    const config = loadConfig({ REFEED_MQTT_PORT: "0", REFEED_HTTP_PORT: "9090", REFEED_INFLUX_URL: "http://db:8086", REFEED_RULES_DIR: "/rules" });
    expect(config).toMatchObject({ mqtt: { port: 0 }, http: { port: 9090 }, influx: { url: "http://db:8086" }, rulesDir: "/rules" });
  });

  it("names the variable and what was expected for a wrong value", () => {
    expect(problems({ REFEED_MQTT_PORT: "abc" })).toEqual(['REFEED_MQTT_PORT: expected a port number from 0 to 65535 (0 picks a free port) (got "abc")']);
    expect(problems({ REFEED_HTTP_PORT: "70000" })[0]).toMatch(/^REFEED_HTTP_PORT: expected a port number/);
    expect(problems({ REFEED_INFLUX_URL: "localhost:8086" })[0]).toMatch(/^REFEED_INFLUX_URL: expected an http\(s\) URL/);
    expect(problems({ REFEED_INFLUX_DB: "my db" })[0]).toMatch(/^REFEED_INFLUX_DB: /);
    expect(problems({ REFEED_LOG_LEVEL: "loud", REFEED_MQTT_PORT: "-1" })).toHaveLength(2);
  });

  it("never echoes the admin token in an error", () => {
    const [problem] = problems({ REFEED_ADMIN_TOKEN: "short-secret" });
    expect(problem).toMatch(/^REFEED_ADMIN_TOKEN: /);
    expect(problem).not.toContain("short-secret");
  });

  it("reads an optional YAML config file, with the environment taking precedence", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-config-"));
    const file = path.join(dir, "refeed.yaml");
    await writeFile(file, "http:\n  port: 9000\nmqtt:\n  port: 1999\ninflux:\n  db: fleet\n");
    const config = loadConfig({ REFEED_CONFIG: file, REFEED_MQTT_PORT: "2000" });
    expect(config).toMatchObject({ http: { port: 9000 }, mqtt: { port: 2000 }, influx: { db: "fleet" } });
    await writeFile(file, "http:\n  port: nope\n");
    expect(problems({ REFEED_CONFIG: file })[0]).toBe(`${file}: http.port: expected a port number from 0 to 65535 (0 picks a free port)`);
    expect(problems({ REFEED_CONFIG: path.join(dir, "missing.yaml") })[0]).toMatch(/REFEED_CONFIG: cannot read .*ENOENT/);
  });
});
