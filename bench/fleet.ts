import { randomBytes, scryptSync } from "node:crypto";
import { ident, influxql } from "../store/influxql.ts";

export interface BenchDevice {
  id: string;
  token: string;
  subject?: string;
}

/**
 * Provisions devices for a benchmark by writing their `device_registry`
 * records (docs/schema.md) into InfluxDB before Refeed starts, which rebuilds
 * its registry from them. The token hashes use scrypt with a tiny cost
 * (N=16; the format names its parameters): at the registry's own cost (N=2^14,
 * about 26 ms a hash on this machine) provisioning 1,000 devices and their
 * first connects would take most of a minute, and token checks are not what
 * the benchmark measures. Devices provisioned through the API are unaffected.
 */
export async function seedDevices(
  influxUrl: string,
  db: string,
  devices: ReadonlyArray<{ id: string; subject?: string }>,
): Promise<BenchDevice[]> {
  await fetch(`${influxUrl}/query?${new URLSearchParams({ q: influxql`CREATE DATABASE ${ident(db)}`.text })}`, {
    method: "POST",
  });
  const base = (Date.now() - 60_000) * 1000;
  const seeded: BenchDevice[] = [];
  const lines: string[] = [];
  devices.forEach((d, i) => {
    const token = `rfd.${Buffer.from(d.id).toString("base64url")}.${randomBytes(24).toString("base64url")}`;
    const salt = randomBytes(16);
    const hash = scryptSync(token, salt, 32, { N: 16, r: 1, p: 1 });
    const tokenHash = ["scrypt", 16, 1, 1, salt.toString("base64url"), hash.toString("base64url")].join("$");
    const subject = d.subject ? `,subject="${d.subject}"` : "";
    lines.push(
      `device_registry,device=${d.id} op="provisioned",token_hash="${tokenHash}",kind="bench"${subject} ${base + i}`,
    );
    seeded.push({ id: d.id, token, ...(d.subject ? { subject: d.subject } : {}) });
  });
  for (let i = 0; i < lines.length; i += 5000) {
    const res = await fetch(`${influxUrl}/write?${new URLSearchParams({ db, precision: "u" })}`, {
      method: "POST",
      body: lines.slice(i, i + 5000).join("\n"),
    });
    if (res.status !== 204) throw new Error(`seeding devices: InfluxDB answered ${res.status}: ${await res.text()}`);
  }
  return seeded;
}
