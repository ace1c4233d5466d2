import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { configSchema, envVars, type Config } from "./schema.ts";

/** A configuration problem a person can fix; `source` names the variable or file key. */
export class ConfigError extends Error {
  readonly code = "REFEED_CONFIG_INVALID";
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
}

type Env = Record<string, string | undefined>;

/**
 * Reads the optional config file named by REFEED_CONFIG (YAML or JSON, same
 * keys as the schema), overlays the environment, and validates once.
 */
export function loadConfig(env: Env = process.env): Config {
  const merged: Record<string, unknown> = env.REFEED_CONFIG ? readConfigFile(env.REFEED_CONFIG) : {};
  const origin = new Map<string, string>();
  for (const [name, path] of Object.entries(envVars)) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    setPath(merged, path, value);
    origin.set(path.join("."), name);
  }
  const result = configSchema.safeParse(merged);
  if (!result.success) throw new ConfigError(describe(result.error, origin, env));
  return result.data;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError([
      `REFEED_CONFIG: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    ]);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (err) {
    throw new ConfigError([`REFEED_CONFIG: ${file} is not valid YAML/JSON: ${(err as Error).message.split("\n")[0]}`]);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ConfigError([`REFEED_CONFIG: ${file} must hold a mapping of settings`]);
  }
  return parsed as Record<string, unknown>;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== "object" || next === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

const SECRETS = new Set(["REFEED_ADMIN_TOKEN", "REFEED_METRICS_TOKEN"]);

function describe(error: z.ZodError, origin: Map<string, string>, env: Env): string[] {
  const file = env.REFEED_CONFIG;
  return error.issues.map((issue) => {
    const key = issue.path.join(".");
    const envName = origin.get(key);
    if (envName) {
      // Secrets are never echoed back, not even in an error.
      const shown = SECRETS.has(envName) ? "" : ` (got ${JSON.stringify(env[envName])})`;
      return `${envName}: ${issue.message}${shown}`;
    }
    return `${file ? `${file}: ` : ""}${key || "(root)"}: ${issue.message}`;
  });
}
