import { rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "../config/load.ts";
import { generateToken, hashToken } from "../auth/tokens.ts";
import { CliError, runCommand, stdio, type Io } from "./api-client.ts";

export const adminUsage = `usage: refeed admin <command> [options]

commands:
  reset-token    generate a new admin token and store its hash in the data dir; prints the token once

options:
  --data-dir DIR   the platform's data dir (default: REFEED_DATA_DIR, the config file's dataDir, else ./data)
`;

/** Where the admin authenticator keeps the admin token's hash (api/auth.ts). */
export const ADMIN_TOKEN_FILE = "admin-token.hash";

/** `refeed admin ...`: operations on the data dir itself, for an operator who cannot use the API. */
export function admin(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
  io: Io = stdio,
): Promise<number> {
  return runCommand("admin", io, () => runAdmin(argv, env, io));
}

async function runAdmin(argv: string[], env: Record<string, string | undefined>, io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { "data-dir": { type: "string" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
    });
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${adminUsage}`, 2);
  }
  const [command, ...rest] = parsed.positionals;
  if (parsed.values.help || command === undefined || command === "help") {
    io.out(adminUsage);
    return 0;
  }
  if (command !== "reset-token") throw new CliError(`unknown command '${command}'\n\n${adminUsage}`, 2);
  if (rest.length > 0) throw new CliError(`'reset-token' takes options, not '${rest.join(" ")}'`, 2);
  return resetToken(parsed.values["data-dir"], env, io);
}

async function resetToken(dataDirFlag: string | undefined, env: Record<string, string | undefined>, io: Io) {
  // The same configuration the server reads, so the data dir and an overriding token are found as it finds them.
  let config;
  try {
    config = loadConfig(dataDirFlag === undefined ? env : { ...env, REFEED_DATA_DIR: dataDirFlag });
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, 2);
    throw err;
  }
  const source =
    dataDirFlag !== undefined
      ? "--data-dir"
      : env.REFEED_DATA_DIR
        ? "REFEED_DATA_DIR"
        : env.REFEED_CONFIG
          ? `${env.REFEED_CONFIG}: dataDir`
          : "data dir (default ./data; set --data-dir or REFEED_DATA_DIR)";
  const dir = path.resolve(config.dataDir);
  // A data dir that does not exist yet is not the platform's: the first start would generate its own token there.
  const found = await stat(dir).catch((err: NodeJS.ErrnoException) => err);
  if (found instanceof Error)
    throw new CliError(
      `${source}: ${dir} cannot be read (${found.code ?? found.message}); name the platform's data dir`,
      1,
    );
  if (!found.isDirectory()) throw new CliError(`${source}: ${dir} is not a directory`, 1);

  const token = generateToken("rfa");
  const file = path.join(dir, ADMIN_TOKEN_FILE);
  const next = `${file}.new`;
  try {
    // Written aside and renamed, so a platform starting meanwhile reads the old hash or the new one, never half.
    await writeFile(next, `${await hashToken(token)}\n`, { mode: 0o600 });
    await rename(next, file);
  } catch (err) {
    throw new CliError(
      `${source}: cannot write ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      1,
    );
  }
  io.out(`${token}\n`);
  io.err(`The new admin token is shown once: keep it now. Only its hash is kept, in ${file}.\n`);
  if (config.adminToken !== undefined) {
    io.err(
      "REFEED_ADMIN_TOKEN (or the config file's adminToken) is set and overrides this file: the platform keeps using that token until it is unset.\n",
    );
  }
  io.err("A running platform keeps the old token until it is restarted; restart Refeed to take the new one.\n");
  return 0;
}
