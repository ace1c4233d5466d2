import { parseArgs } from "node:util";

export const devicesUsage = `usage: refeed devices <command> [options]

commands:
  add [--id ID] [--kind KIND] [--subject SUBJECT]   provision a device; prints its token once
  list                                              all devices, online state and last seen
  rotate <id>                                       issue a new token; the old one stops working at once
  revoke <id>                                       revoke for good; live sessions are closed at once

options:
  --url URL      the Refeed HTTP API (default: $REFEED_URL, else http://localhost:$REFEED_HTTP_PORT, else :8080)
  --token TOKEN  an admin token (default: $REFEED_ADMIN_TOKEN)
  --json         print the API's JSON answer
`;

interface Io {
  out(text: string): void;
  err(text: string): void;
}

class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

interface DeviceRow {
  id: string;
  kind: string | null;
  subject: string | null;
  revoked: boolean;
  online: boolean;
  lastSeen: string | null;
}

/** `refeed devices ...`: the device lifecycle through the HTTP API. */
export async function devices(argv: string[], env: Record<string, string | undefined> = process.env, io: Io = stdio): Promise<number> {
  try {
    return await runDevices(argv, env, io);
  } catch (err) {
    if (err instanceof CliError) {
      io.err(`refeed devices: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}

async function runDevices(argv: string[], env: Record<string, string | undefined>, io: Io): Promise<number> {
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
        id: { type: "string" },
        kind: { type: "string" },
        subject: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${devicesUsage}`, 2);
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || command === "help") {
    io.out(devicesUsage);
    return 0;
  }
  if (command === undefined) throw new CliError(`which command?\n\n${devicesUsage}`, 2);
  const base = values.url ?? env.REFEED_URL ?? `http://localhost:${env.REFEED_HTTP_PORT || "8080"}`;
  const token = values.token ?? env.REFEED_ADMIN_TOKEN;
  const onlyFor = (allowed: string[]) => {
    for (const name of ["id", "kind", "subject"] as const) {
      if (values[name] !== undefined && !allowed.includes(name)) throw new CliError(`--${name} is an option of 'add' only`, 2);
    }
  };
  const target = () => {
    if (rest.length !== 1) throw new CliError(`'${command}' takes one device id, e.g. refeed devices ${command} tv-livingroom`, 2);
    return encodeURIComponent(rest[0]!);
  };
  const call = (method: string, path: string, body?: unknown) => request(base, token, method, path, body);
  /** A token is shown once: on stdout for the operator to copy, with a reminder on stderr. */
  const showToken = (answer: { id: string; token: string }, reminder: string) => {
    if (values.json) return io.out(`${JSON.stringify(answer)}\n`);
    io.out(`id: ${answer.id}\ntoken: ${answer.token}\n`);
    io.err(`${reminder}\n`);
  };

  switch (command) {
    case "add": {
      onlyFor(["id", "kind", "subject"]);
      if (rest.length > 0) throw new CliError(`'add' takes options, not '${rest.join(" ")}' (use --id ${rest[0]})`, 2);
      const body = Object.fromEntries(Object.entries({ id: values.id, kind: values.kind, subject: values.subject }).filter(([, v]) => v !== undefined));
      showToken((await call("POST", "/api/devices", body)) as { id: string; token: string }, "The token is shown once: put it on the device now.");
      return 0;
    }
    case "list": {
      onlyFor([]);
      const rows = (await call("GET", "/api/devices")) as DeviceRow[];
      io.out(values.json ? `${JSON.stringify(rows)}\n` : table(rows));
      return 0;
    }
    case "rotate": {
      onlyFor([]);
      showToken((await call("POST", `/api/devices/${target()}/rotate`)) as { id: string; token: string }, "The old token no longer works. The new one is shown once: put it on the device now.");
      return 0;
    }
    case "revoke": {
      onlyFor([]);
      const revoked = (await call("POST", `/api/devices/${target()}/revoke`)) as DeviceRow;
      io.out(values.json ? `${JSON.stringify(revoked)}\n` : `revoked ${revoked.id}\n`);
      return 0;
    }
    default:
      throw new CliError(`unknown command '${command}'\n\n${devicesUsage}`, 2);
  }
}

async function request(base: string, token: string | undefined, method: string, path: string, body?: unknown): Promise<unknown> {
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
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(`cannot reach Refeed at ${base} (${cause?.code ?? cause?.message ?? (err as Error).message})`, 1);
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

function table(rows: DeviceRow[]): string {
  if (rows.length === 0) return "no devices\n";
  const header = ["ID", "KIND", "SUBJECT", "STATE", "LAST SEEN"];
  const lines = rows.map((d) => [d.id, d.kind ?? "-", d.subject ?? "-", d.revoked ? "revoked" : d.online ? "online" : "offline", d.lastSeen ?? "never"]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return `${[header, ...lines].map(format).join("\n")}\n`;
}

const stdio: Io = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};
