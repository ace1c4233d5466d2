import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import type { TestProject } from "vitest/node";
import { startInfluxd } from "../../store/influxd.ts";

declare module "vitest" {
  export interface ProvidedContext {
    influxUrl: string;
  }
}

/** Starts one private influxd on a free port with a temporary data dir; never a developer's own. */
export default async function setup(project: TestProject) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "refeed-test-influx-"));
  const influxd = await startInfluxd({ dataDir: dir, log: pino({ level: "warn" }) });
  project.provide("influxUrl", influxd.url);
  return async () => {
    await influxd.close();
    await rm(dir, { recursive: true, force: true });
  };
}
