import { pino, type Logger } from "pino";
import type { Config } from "../config/schema.ts";

/** One JSON line per event; secrets are redacted wherever they might appear. */
export function createLogger(level: Config["logLevel"]): Logger {
  return pino({
    level,
    base: { svc: "refeed" },
    redact: {
      paths: ["token", "password", "*.token", "*.password", "req.headers.authorization"],
      censor: "[redacted]",
    },
  });
}
