import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { haproxyConfig, type HaproxyConfigOptions } from "../../cluster/haproxy.ts";
import { ROOT, run } from "../support/process.ts";

/** The compose profile's topology: three nodes by service name, Docker's DNS, the default ports and limits. */
const compose: HaproxyConfigOptions = {
  mqtt: { host: "0.0.0.0", port: 1883 },
  http: { host: "0.0.0.0", port: 8080 },
  nodes: [1, 2, 3].map((i) => ({ id: `node-${i}`, host: `refeed-${i}`, mqttPort: 1883, httpPort: 8080 })),
  maxKeepaliveSeconds: 900,
  httpKeepAliveMs: 72_000,
  resolver: "127.0.0.11:53",
};

describe("haproxyConfig", () => {
  it("is what HAProxy accepts: MQTT as TCP with long idle bounds, HTTP with a tunnel timeout, /healthz checks", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-test-haproxy-"));
    try {
      const text = haproxyConfig({
        ...compose,
        nodes: [{ id: "node-1", host: "127.0.0.1", mqttPort: 18831, httpPort: 18081 }],
        resolver: undefined,
      });
      const file = path.join(dir, "haproxy.cfg");
      await writeFile(file, text);
      const checked = await run("/usr/sbin/haproxy", ["-c", "-f", file]);
      expect(checked.code, checked.stderr).toBe(0);
      const section = (name: string) => text.split(`\n${name}\n`)[1]!.split("\n\n")[0]!;
      expect(section("backend mqtt_nodes")).toContain("  mode tcp\n  balance leastconn\n  timeout server 1410s");
      expect(section("backend mqtt_nodes")).toContain("  server node-1 127.0.0.1:18831 check port 18081");
      expect(section("frontend mqtt")).toContain("timeout client 1410s");
      expect(section("backend http_nodes")).toContain("  mode http");
      expect(section("backend http_nodes")).toContain("timeout tunnel 1410s");
      for (const backend of ["mqtt_nodes", "http_nodes"])
        expect(section(`backend ${backend}`)).toContain("option httpchk GET /healthz");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("wrote docker/haproxy.cfg for the compose profile, whose nodes and mount match it", async () => {
    const file = path.join(ROOT, "docker/haproxy.cfg");
    // REFEED_WRITE_HAPROXY_CFG=1 writes it again after a change to haproxyConfig.
    if (process.env.REFEED_WRITE_HAPROXY_CFG) await writeFile(file, haproxyConfig(compose));
    expect(await readFile(file, "utf8")).toBe(haproxyConfig(compose));
    const services = (
      parse(await readFile(path.join(ROOT, "docker-compose.yml"), "utf8"), { merge: true }) as {
        services: Record<string, { profiles?: string[]; volumes?: string[]; environment?: Record<string, string> }>;
      }
    ).services;
    const cluster = Object.keys(services).filter((s) => services[s]!.profiles?.includes("cluster"));
    expect(cluster.sort()).toEqual(["haproxy", "redis", "refeed-1", "refeed-2", "refeed-3"]);
    expect(services.haproxy!.volumes).toContain("./docker/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro");
    for (const node of compose.nodes)
      expect(services[`refeed-${node.id.slice("node-".length)}`]!.environment).toMatchObject({
        REFEED_NODE_ID: node.id,
        REFEED_REDIS_URL: "redis://redis:6379",
        REFEED_INFLUX_URL: "http://influxdb:8086",
      });
    // The default profile is what it was: InfluxDB and one Refeed.
    expect(Object.keys(services).filter((s) => !services[s]!.profiles)).toEqual(["influxdb", "refeed"]);
  });
});
