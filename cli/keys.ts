import { adminArgs, CliError, runCommand, stdio, table, type Io } from "./api-client.ts";

export const keysUsage = `usage: refeed keys <command> [options]

commands:
  add --role ROLE --name NAME [--expires 90d]   create a staff API key (admin, product or support); prints its token once
  list                                          all keys: id, name, role, state, created, expires
  revoke <id>                                   revoke for good; the key stops working at once

options:
  --url URL      the Refeed HTTP API (default: $REFEED_URL, else http://localhost:$REFEED_HTTP_PORT, else :8080)
  --token TOKEN  an admin token (default: $REFEED_ADMIN_TOKEN)
  --json         print the API's JSON answer
`;

interface KeyRow {
  id: string;
  name: string;
  role: string;
  state: string;
  createdAt: string;
  createdBy: string;
  expiresAt: string | null;
}

/** `refeed keys ...`: staff API keys through the HTTP API. */
export function keys(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
  io: Io = stdio,
): Promise<number> {
  return runCommand("keys", io, () => runKeys(argv, env, io));
}

async function runKeys(argv: string[], env: Record<string, string | undefined>, io: Io): Promise<number> {
  const args = adminArgs(argv, keysUsage, ["role", "name", "expires"], env, io);
  if (!args) return 0;
  const { command, rest, onlyFor, call } = args;
  const values = { ...args.options, json: args.json };

  switch (command) {
    case "add": {
      onlyFor(["role", "name", "expires"]);
      if (rest.length > 0) throw new CliError(`'add' takes options, not '${rest.join(" ")}'`, 2);
      if (!values.role || !values.name)
        throw new CliError(
          "'add' needs --role (admin, product or support) and --name, e.g. refeed keys add --role support --name 'support desk'",
          2,
        );
      const created = (await call("POST", "/api/keys", {
        role: values.role,
        name: values.name,
        ...(values.expires ? { expiresIn: values.expires } : {}),
      })) as KeyRow & { token: string };
      if (values.json) {
        io.out(`${JSON.stringify(created)}\n`);
      } else {
        io.out(`id: ${created.id}\nrole: ${created.role}\ntoken: ${created.token}\n`);
        io.err("The token is shown once: hand it to its user now. Only its hash is kept.\n");
      }
      return 0;
    }
    case "list": {
      onlyFor([]);
      const rows = (await call("GET", "/api/keys")) as KeyRow[];
      if (values.json) io.out(`${JSON.stringify(rows)}\n`);
      else if (rows.length === 0) io.out("no keys\n");
      else
        io.out(
          table(
            ["ID", "NAME", "ROLE", "STATE", "CREATED", "EXPIRES"],
            rows.map((k) => [k.id, k.name, k.role, k.state, k.createdAt, k.expiresAt ?? "never"]),
          ),
        );
      return 0;
    }
    case "revoke": {
      onlyFor([]);
      if (rest.length !== 1) throw new CliError("'revoke' takes one key id, e.g. refeed keys revoke k-0123456789", 2);
      const revoked = (await call("DELETE", `/api/keys/${encodeURIComponent(rest[0]!)}`)) as KeyRow;
      io.out(values.json ? `${JSON.stringify(revoked)}\n` : `revoked ${revoked.id} (${revoked.name})\n`);
      return 0;
    }
    default:
      throw new CliError(`unknown command '${command}'\n\n${keysUsage}`, 2);
  }
}
