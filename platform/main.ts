import { loadConfig, ConfigError } from "../config/load.ts";
import { InfluxdMissingError } from "../store/influxd.ts";
import { createLogger } from "./log.ts";
import { startPlatform } from "./platform.ts";

/** `refeed start`: run the platform until SIGINT/SIGTERM, then flush and stop. */
export async function main(): Promise<number> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`refeed: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  let platform;
  try {
    platform = await startPlatform(config, { log });
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e instanceof InfluxdMissingError) {
      process.stderr.write(`refeed: ${e.message}\n`);
      return 3;
    }
    log.fatal({ code: e.code, err: e.message }, "refeed failed to start");
    if (e.code === "EADDRINUSE")
      process.stderr.write(`refeed: ${e.message} (set REFEED_MQTT_PORT / REFEED_HTTP_PORT, 0 picks a free port)\n`);
    return 1;
  }
  const running = platform;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, "shutting down: flushing pending writes");
      running.close().then(
        () => {
          log.info("refeed stopped");
          resolve(0);
        },
        (err: Error) => {
          log.error({ err: err.message }, "shutdown failed");
          resolve(1);
        },
      );
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  });
}
