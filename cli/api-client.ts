import { parseArgs } from "node:util";

/** What the admin commands (`refeed devices`, `refeed keys`) share: the HTTP API, errors as exit codes, tables. */

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const stdio: Io = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

/** A problem to tell the operator, with the exit code (2: wrong usage, 1: the call failed). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** Runs a command, turning a CliError into `refeed <name>: <message>` on stderr and its exit code. */
export async function runCommand(name: string, io: Io, run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof CliError) {
      io.err(`refeed ${name}: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}

/** --url, else $REFEED_URL, else localhost on $REFEED_HTTP_PORT (8080). */
export function apiBase(url: string | undefined, env: Record<string, string | undefined>): string {
  return url ?? env.REFEED_URL ?? `http://localhost:${env.REFEED_HTTP_PORT || "8080"}`;
}

export async function request(
  base: string,
  token: string | undefined,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  if (!token) throw new CliError("an admin token is needed: pass --token or set REFEED_ADMIN_TOKEN", 2);
  let url: URL;
  try {
    url = new URL(path, base);
  } catch {
    throw new CliError(`--url: '${base}' is not a URL (expected e.g. http://localhost:8080)`, 2);
  }
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(
      `cannot reach Refeed at ${base} (${cause?.code ?? cause?.message ?? (err as Error).message})`,
      1,
    );
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    throw new CliError(`${base} answered HTTP ${res.status} with something that is not JSON; is it Refeed?`, 1);
  }
  if (!res.ok) {
    const message = (parsed as { message?: string } | undefined)?.message ?? res.statusText;
    throw new CliError(`${message} (HTTP ${res.status})`, 1);
  }
  return parsed;
}

/** Columns padded to their widest cell, two spaces apart. */
export function table(header: string[], lines: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return `${[header, ...lines].map(format).join("\n")}\n`;
}

export interface AdminArgs<Name extends string> {
  command: string;
  /** Positional arguments after the command. */
  rest: string[];
  json: boolean;
  /** The command-specific options given. */
  options: Partial<Record<Name, string>>;
  /** Refuses the command-specific options that `command` does not take. */
  onlyFor: (allowed: readonly Name[]) => void;
  /** Calls the API with the admin token, answering the parsed JSON. */
  call: (method: string, path: string, body?: unknown) => Promise<unknown>;
}

/**
 * The arguments of an admin command: `<command> [args] [--url] [--token] [--json]`
 * and string options of its own. Undefined when it printed its usage (help).
 */
export function adminArgs<Name extends string>(
  argv: string[],
  usage: string,
  names: readonly Name[],
  env: Record<string, string | undefined>,
  io: Io,
): AdminArgs<Name> | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: "string" },
        token: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
        ...Object.fromEntries(names.map((name) => [name, { type: "string" as const }])),
      },
    });
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${usage}`, 2);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const [command, ...rest] = parsed.positionals;
  if (values.help || command === "help") {
    io.out(usage);
    return undefined;
  }
  if (command === undefined) throw new CliError(`which command?\n\n${usage}`, 2);
  const options = Object.fromEntries(
    names.filter((n) => values[n] !== undefined).map((n) => [n, String(values[n])]),
  ) as Partial<Record<Name, string>>;
  const base = apiBase(values.url as string | undefined, env);
  const token = (values.token as string | undefined) ?? env.REFEED_ADMIN_TOKEN;
  return {
    command,
    rest,
    json: values.json === true,
    options,
    onlyFor(allowed) {
      for (const name of names) {
        if (options[name] !== undefined && !allowed.includes(name))
          throw new CliError(`--${name} is not an option of '${command}'`, 2);
      }
    },
    call: (method, path, body) => request(base, token, method, path, body),
  };
}
