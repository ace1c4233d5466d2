import { adminArgs, CliError, runCommand, stdio, table, type Io } from "./api-client.ts";

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

interface DeviceRow {
  id: string;
  kind: string | null;
  subject: string | null;
  revoked: boolean;
  online: boolean;
  lastSeen: string | null;
}

/** `refeed devices ...`: the device lifecycle through the HTTP API. */
export function devices(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
  io: Io = stdio,
): Promise<number> {
  return runCommand("devices", io, () => runDevices(argv, env, io));
}

async function runDevices(argv: string[], env: Record<string, string | undefined>, io: Io): Promise<number> {
  const args = adminArgs(argv, devicesUsage, ["id", "kind", "subject"], env, io);
  if (!args) return 0;
  const { command, rest, onlyFor, call } = args;
  const values = { ...args.options, json: args.json };
  const target = () => {
    if (rest.length !== 1)
      throw new CliError(`'${command}' takes one device id, e.g. refeed devices ${command} tv-livingroom`, 2);
    return encodeURIComponent(rest[0]!);
  };
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
      const body = Object.fromEntries(
        Object.entries({ id: values.id, kind: values.kind, subject: values.subject }).filter(
          ([, v]) => v !== undefined,
        ),
      );
      showToken(
        (await call("POST", "/api/devices", body)) as { id: string; token: string },
        "The token is shown once: put it on the device now.",
      );
      return 0;
    }
    case "list": {
      onlyFor([]);
      const rows = (await call("GET", "/api/devices")) as DeviceRow[];
      io.out(values.json ? `${JSON.stringify(rows)}\n` : devicesTable(rows));
      return 0;
    }
    case "rotate": {
      onlyFor([]);
      showToken(
        (await call("POST", `/api/devices/${target()}/rotate`)) as { id: string; token: string },
        "The old token no longer works. The new one is shown once: put it on the device now.",
      );
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

function devicesTable(rows: DeviceRow[]): string {
  if (rows.length === 0) return "no devices\n";
  return table(
    ["ID", "KIND", "SUBJECT", "STATE", "LAST SEEN"],
    rows.map((d) => [
      d.id,
      d.kind ?? "-",
      d.subject ?? "-",
      d.revoked ? "revoked" : d.online ? "online" : "offline",
      d.lastSeen ?? "never",
    ]),
  );
}
