import path from "node:path";
import { ConfigError, loadConfig } from "../config/load.ts";
import { createLogger } from "../platform/log.ts";
import { startPlatform, type Platform } from "../platform/platform.ts";
import { generateToken } from "../auth/tokens.ts";
import { InfluxdMissingError } from "../store/influxd.ts";
import { runSim } from "./cli.ts";
import type { SimOptions } from "./options.ts";
import { note, type Io } from "./progress.ts";
import type { Action } from "./scenarios/index.ts";
import { DEMO_FLEET } from "./demo-fleet.ts";

/** The demo's own corner: its data (managed InfluxDB, device tokens) never mixes with `npm start`'s. */
const DEMO_DEFAULTS = { REFEED_DATA_DIR: "./data/demo", REFEED_RULES_DIR: "examples/rules", REFEED_LOG_LEVEL: "warn" };
const { devices: DEVICES, rate: RATE } = DEMO_FLEET;

const io: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  tty: process.stderr.isTTY === true,
};

/**
 * `npm run demo`: the platform with the example rules and a small mixed fleet
 * in one process. Within a minute devices publish, feedback arrives and the
 * rules send actions; the demo says where to look. Ctrl-C stops both.
 */
async function demo(): Promise<number> {
  let config;
  try {
    config = loadConfig({ ...DEMO_DEFAULTS, ...process.env });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(`refeed demo: ${err.message}\n`);
    return 2;
  }
  // A fresh admin token each run (unless one is set): the demo prints it so that you can look around.
  const adminToken = config.adminToken ?? generateToken("rfa");
  let platform: Platform;
  try {
    platform = await startPlatform({ ...config, adminToken }, { log: createLogger(config.logLevel) });
  } catch (err) {
    const e = err as Error & { code?: string };
    io.err(`refeed demo: the platform did not start: ${e.message}\n`);
    if (e.code === "EADDRINUSE")
      io.err(
        "refeed demo: is `npm start` running? Stop it, or pick free ports: REFEED_HTTP_PORT=0 REFEED_MQTT_PORT=0 npm run demo\n",
      );
    return e instanceof InfluxdMissingError ? 3 : 1;
  }

  const { http, mqtt, ws, influx } = platform.addresses;
  const auth = `-H "authorization: Bearer $ADMIN"`;
  // A support key for the dashboard, as an admin would hand one to a support agent.
  const keyAnswer = await fetch(`${http}/api/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "demo support desk", role: "support", expiresIn: "1d" }),
  });
  const supportKey = keyAnswer.ok ? ((await keyAnswer.json()) as { token: string }).token : undefined;
  io.out(
    [
      "",
      "Refeed demo: the platform, the example rules and a simulated fleet",
      `  HTTP API   ${http}   MQTT ${mqtt}   MQTT over WebSocket ${ws}`,
      `  InfluxDB   ${influx}, database ${platform.store.db}   (data in ${config.dataDir})`,
      `  rules      ${config.rulesDir ?? "(none)"}`,
      `  fleet      ${DEVICES} devices and apps (ATMs, banking and ride apps, TVs, phones, kiosks), ${RATE} records/s each;`,
      "             a few turn bad after a few sessions (errors, slow answers, complaints)",
      "",
      ...(supportKey
        ? [
            `Support dashboard: ${http}/dashboard   sign in with the support key ${supportKey}`,
            "  the devices that turned bad come first within a few minutes, with what their customers said",
            "",
          ]
        : []),
      "Look around in another terminal:",
      `  export ADMIN=${adminToken}`,
      `  curl -s ${auth} ${http}/api/devices                                  # the fleet`,
      `  curl -s ${auth} ${http}/api/devices/demo-home-00001-tv               # a TV and its personalization profile`,
      `  curl -s ${auth} ${http}/api/rules                                    # the rules, one per acceptance story`,
      `  curl -s ${auth} ${http}/api/subjects/demo-cust-bank-00001/participation   # answers / asks (story 7)`,
      `  curl -sG ${influx}/query --data-urlencode db=${platform.store.db} \\`,
      `    --data-urlencode "q=SELECT rule, kind, key, value, why FROM action_log WHERE status = 'proposed' ORDER BY time DESC LIMIT 5"`,
      `  curl -sG ${influx}/query --data-urlencode db=${platform.store.db} \\`,
      `    --data-urlencode "q=SELECT device, rating, text FROM feedback ORDER BY time DESC LIMIT 5"`,
      "The first action of each rule is shown below as it arrives. Ctrl-C stops the fleet, then the platform.",
      "",
      "",
    ].join("\n"),
  );

  const seen = new Set<string>();
  const firstOfRule = (device: { id: string }, action: Action) => {
    if (seen.has(action.rule)) return;
    seen.add(action.rule);
    const what =
      action.kind === "suggest"
        ? `suggests ${action.key} = ${JSON.stringify(action.value)} ("${action.prompt}")`
        : `${action.kind} ${action.key}${action.value === undefined ? "" : ` = ${JSON.stringify(action.value)}`}`;
    note(
      io,
      `first action of ${action.rule} on ${device.id}: ${what}\n    curl -s ${auth} ${http}/api/actions/${action.id}`,
    );
  };

  const options: SimOptions = {
    ...DEMO_FLEET,
    url: http,
    brokerUrl: mqtt,
    token: adminToken,
    stateDir: path.join(config.dataDir, "sim"),
    // The demo's platform is always the one in its data dir, whatever ports it got.
    stateFile: path.join(config.dataDir, "sim", "demo.json"),
    durationMs: undefined,
    json: false,
    progressMs: undefined,
  };
  const code = await runSim(options, io, { action: firstOfRule });
  io.err("refeed demo: stopping the platform (flushing pending writes)\n");
  await platform.close();
  return code;
}

demo().then(
  (code) => process.exit(code),
  (err: Error) => {
    io.err(`refeed demo: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
