import { main as start } from "../platform/main.ts";
import { rulesCommand } from "./rules.ts";
import { devices } from "./devices.ts";
import { keys } from "./keys.ts";
import { admin } from "./admin.ts";
import { simCommand } from "../firmware-sim/cli.ts";
import { clusterCommand } from "../cluster/run.ts";
import { createLogger } from "../platform/log.ts";

const usage = `usage: refeed <command>

commands:
  start        run the platform (configuration from REFEED_* environment variables; see README)
  rules        check, backtest and push rule files (refeed rules --help)
  devices      add, list, rotate and revoke devices (refeed devices help)
  keys         add, list and revoke staff API keys (refeed keys help)
  admin        reset-token: a new admin token for a lost one, in the data dir (refeed admin help)
  sim          run a simulated fleet against a running platform (refeed sim --help)
  cluster      run a cluster on this machine: redis, influxd, N nodes, haproxy (refeed cluster --help)
  help         show this text
`;

async function run(argv: string[]): Promise<number> {
  const [command = "start"] = argv;
  switch (command) {
    case "start":
      return start();
    case "rules":
      return rulesCommand(argv.slice(1));
    case "devices":
      return devices(argv.slice(1));
    case "keys":
      return keys(argv.slice(1));
    case "admin":
      return admin(argv.slice(1));
    case "sim":
      return simCommand(argv.slice(1));
    case "cluster":
      return clusterCommand(argv.slice(1), createLogger);
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(usage);
      return 0;
    default:
      process.stderr.write(`refeed: unknown command '${command}'\n${usage}`);
      return 2;
  }
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`refeed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
