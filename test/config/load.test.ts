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
    const config = loadConfig({
      REFEED_MQTT_PORT: "0",
      REFEED_HTTP_PORT: "9090",
      REFEED_INFLUX_URL: "http://db:8086",
      REFEED_RULES_DIR: "/rules",
    });
    expect(config).toMatchObject({
      mqtt: { port: 0 },
      http: { port: 9090 },
      influx: { url: "http://db:8086" },
      rulesDir: "/rules",
    });
  });

  it("names the variable and what was expected for a wrong value", () => {
    expect(problems({ REFEED_MQTT_PORT: "abc" })).toEqual([
      'REFEED_MQTT_PORT: expected a port number from 0 to 65535 (0 picks a free port) (got "abc")',
    ]);
    expect(problems({ REFEED_HTTP_PORT: "70000" })[0]).toMatch(/^REFEED_HTTP_PORT: expected a port number/);
    expect(problems({ REFEED_INFLUX_URL: "localhost:8086" })[0]).toMatch(
      /^REFEED_INFLUX_URL: expected an http\(s\) URL/,
    );
    expect(problems({ REFEED_INFLUX_DB: "my db" })[0]).toMatch(/^REFEED_INFLUX_DB: /);
    expect(problems({ REFEED_LOG_LEVEL: "loud", REFEED_MQTT_PORT: "-1" })).toHaveLength(2);
  });

  it("never echoes the admin token in an error", () => {
    const [problem] = problems({ REFEED_ADMIN_TOKEN: "short-secret" });
    expect(problem).toMatch(/^REFEED_ADMIN_TOKEN: /);
    expect(problem).not.toContain("short-secret");
  });

  it("reads the metrics token from REFEED_METRICS_TOKEN, unset by default, and never echoes it", () => {
    expect(loadConfig({}).http.metricsToken).toBeUndefined();
    expect(loadConfig({ REFEED_METRICS_TOKEN: "scrape-token-0123456789" }).http.metricsToken).toBe(
      "scrape-token-0123456789",
    );
    const [problem] = problems({ REFEED_METRICS_TOKEN: "short-scrape" });
    expect(problem).toBe("REFEED_METRICS_TOKEN: at least 16 characters");
  });

  it("takes experience health's weights and targets from the environment, and per device kind from the file", async () => {
    const config = loadConfig({
      REFEED_HEALTH_WINDOW: "24h",
      REFEED_HEALTH_WEIGHT_SENTIMENT: "3",
      REFEED_HEALTH_LATENCY_TARGET_MS: "250",
      REFEED_HEALTH_REFRESH_MS: "0",
    });
    expect(config.health).toMatchObject({
      window: 86_400_000,
      weights: { sentiment: 3, reliability: 1 },
      latencyTargetMs: 250,
      refreshMs: 0,
      latencyMetric: "latency_ms",
    });
    expect(problems({ REFEED_HEALTH_WINDOW: "forever" })[0]).toMatch(/^REFEED_HEALTH_WINDOW: expected a duration/);
    expect(problems({ REFEED_HEALTH_WEIGHT_CONNECTIVITY: "-1" })[0]).toBe(
      'REFEED_HEALTH_WEIGHT_CONNECTIVITY: expected a weight of 0 or more (got "-1")',
    );
    expect(problems({ REFEED_HEALTH_ONLINE_TARGET: "1.5" })[0]).toMatch(
      /^REFEED_HEALTH_ONLINE_TARGET: expected a share between 0/,
    );
    expect(problems({ REFEED_HEALTH_LATENCY_METRIC: "response time" })[0]).toMatch(
      /^REFEED_HEALTH_LATENCY_METRIC: a metric or event name/,
    );
    const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-config-"));
    const file = path.join(dir, "refeed.yaml");
    await writeFile(file, "health:\n  kinds:\n    phone-app: { connectivity: 0 }\n");
    expect(loadConfig({ REFEED_CONFIG: file }).health.kinds).toEqual({ "phone-app": { connectivity: 0 } });
    await writeFile(file, "health:\n  kinds:\n    phone-app: { speed: 2 }\n");
    expect(problems({ REFEED_CONFIG: file })[0]).toMatch(/health\.kinds\.phone-app: unknown field|Unrecognized key/);
  });

  it("reads an optional YAML config file, with the environment taking precedence", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-config-"));
    const file = path.join(dir, "refeed.yaml");
    await writeFile(file, "http:\n  port: 9000\nmqtt:\n  port: 1999\ninflux:\n  db: fleet\n");
    const config = loadConfig({ REFEED_CONFIG: file, REFEED_MQTT_PORT: "2000" });
    expect(config).toMatchObject({ http: { port: 9000 }, mqtt: { port: 2000 }, influx: { db: "fleet" } });
    await writeFile(file, "http:\n  port: nope\n");
    expect(problems({ REFEED_CONFIG: file })[0]).toBe(
      `${file}: http.port: expected a port number from 0 to 65535 (0 picks a free port)`,
    );
    expect(problems({ REFEED_CONFIG: path.join(dir, "missing.yaml") })[0]).toMatch(
      /REFEED_CONFIG: cannot read .*ENOENT/,
    );
  });
});
