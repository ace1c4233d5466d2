import { parseArgs } from "node:util";
import { z } from "zod";
import { parseDuration } from "../config/duration.ts";
import type { FleetOptions } from "./fleet.ts";
import { scenarios } from "./scenarios/index.ts";

export interface SimOptions extends FleetOptions {
  /** Stop after this long; undefined runs until Ctrl-C. */
  durationMs: number | undefined;
  json: boolean;
  /** Milliseconds between progress lines. */
  progressMs: number | undefined;
}

export const usage = `usage: refeed sim [options]

Runs a simulated fleet of devices and apps against a running platform: it provisions
(or reuses) the devices through the HTTP API, connects each as its own MQTT client,
publishes telemetry, events and feedback, and answers the actions it receives.

  --scenario NAME   ${[...scenarios.keys()].join(" | ")} (default mixed)
${[...scenarios.values()].map((s) => `                      ${s.name}: ${s.summary}`).join("\n")}
  --devices N       simulated devices (default 20)
  --rate R          records per second per device (default 1)
  --duration D      stop D after every device is connected, e.g. 90s or 10m (default: run until Ctrl-C)
  --url URL         the platform's HTTP API (default $REFEED_URL or http://localhost:8080)
  --mqtt URL        the MQTT broker (default $REFEED_MQTT_URL or mqtt://<--url host>:1883)
  --ws              connect over MQTT over WebSocket (<--url>/mqtt) instead
  --token TOKEN     an admin token (default $REFEED_ADMIN_TOKEN)
  --accept P        share of suggestions customers accept, 0..1 (default 0.7)
  --undo P          share of applied changes customers undo later, 0..1 (default 0.1)
  --opt-in P        share of customers who opt in, 0..1 (default 0.8)
  --troubled P      share of devices that turn bad after a few sessions (errors, slow, complaints), 0..1 (default 0.1)
  --seed N          the same seed gives the same customers and habits (default 1)
  --prefix NAME     start of device and customer ids (default sim)
  --state DIR       where device tokens are kept between runs (default ./data/sim)
  --progress D      time between progress lines (default 1s on a terminal, 10s otherwise)
  --json            print the summary as JSON
`;

const flags = {
  scenario: { type: "string" },
  devices: { type: "string" },
  rate: { type: "string" },
  duration: { type: "string" },
  url: { type: "string" },
  mqtt: { type: "string" },
  ws: { type: "boolean" },
  token: { type: "string" },
  accept: { type: "string" },
  undo: { type: "string" },
  "opt-in": { type: "string" },
  troubled: { type: "string" },
  seed: { type: "string" },
  prefix: { type: "string" },
  state: { type: "string" },
  progress: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const number = (what: string) =>
  z.coerce.number({ error: `expected ${what}` }).refine(Number.isFinite, `expected ${what}`);
const share = number("a share from 0 to 1").pipe(
  z.number().min(0, "expected a share from 0 to 1").max(1, "expected a share from 0 to 1"),
);
const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined || ms === 0) {
    ctx.addIssue({ code: "custom", message: "expected a duration such as 90s, 10m or 1h" });
    return z.NEVER;
  }
  return ms;
});
const httpUrl = z.url({ protocol: /^https?$/, error: "expected an http(s) URL such as http://localhost:8080" });
const brokerUrl = z.url({
  protocol: /^(mqtts?|tcp|wss?)$/,
  error: "expected a broker URL such as mqtt://localhost:1883 or ws://localhost:8080/mqtt",
});

/** Each flag's rule; an error names the flag. */
const schema = z.object({
  scenario: z
    .string()
    .refine((s) => scenarios.has(s), `expected one of ${[...scenarios.keys()].join(", ")}`)
    .default("mixed"),
  devices: number("a whole number of devices from 1 to 100000")
    .pipe(
      z
        .number()
        .int("expected a whole number of devices")
        .min(1, "expected at least 1 device")
        .max(100_000, "at most 100000 devices per process"),
    )
    .default(20),
  rate: number("records per second per device, e.g. 0.2 or 5")
    .pipe(
      z
        .number()
        .gt(0, "expected more than 0 records per second")
        .max(1000, "at most 1000 records per second per device"),
    )
    .default(1),
  duration: duration.optional(),
  url: httpUrl,
  mqtt: brokerUrl.optional(),
  ws: z.boolean().default(false),
  token: z
    .string({ error: "an admin token is needed (or set REFEED_ADMIN_TOKEN)" })
    .min(1, "an admin token is needed (or set REFEED_ADMIN_TOKEN)"),
  accept: share.default(0.7),
  undo: share.default(0.1),
  "opt-in": share.default(0.8),
  troubled: share.default(0.1),
  seed: number("a whole number").pipe(z.number().int("expected a whole number")).default(1),
  prefix: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,23}$/, "1-24 lowercase letters, digits or '-' (device ids start with it)")
    .default("sim"),
  state: z.string().min(1).default("./data/sim"),
  progress: duration.optional(),
  json: z.boolean().default(false),
});

export type Parsed = { ok: true; options: SimOptions } | { ok: true; help: true } | { ok: false; message: string };

/** argv after `refeed sim` -> options, or one message per problem naming the flag. */
export function parseSimArgs(argv: string[], env: Record<string, string | undefined> = process.env): Parsed {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: flags, strict: true, allowPositionals: false }));
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
  if (values.help) return { ok: true, help: true };
  const input = {
    ...values,
    url: values.url ?? env.REFEED_URL ?? "http://localhost:8080",
    mqtt: values.mqtt ?? env.REFEED_MQTT_URL,
    token: values.token ?? env.REFEED_ADMIN_TOKEN,
  };
  const result = schema.safeParse(input);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const flag = String(issue.path[0]);
      // Tokens are never echoed back, not even in an error.
      const got =
        flag === "token" || input[flag as keyof typeof input] === undefined
          ? ""
          : ` (got ${JSON.stringify(input[flag as keyof typeof input])})`;
      return `--${flag}: ${issue.message}${got}`;
    });
    return { ok: false, message: problems.join("\n") };
  }
  const v = result.data;
  const min = scenarios.get(v.scenario)!.minDevices;
  if (v.devices < min)
    return {
      ok: false,
      message: `--devices: the ${v.scenario} scenario needs at least ${min} devices (got ${v.devices})`,
    };
  if (v.ws && v.mqtt)
    return {
      ok: false,
      message: "--ws: give either --ws (MQTT over WebSocket at <--url>/mqtt) or --mqtt URL, not both",
    };
  const api = new URL(v.url);
  const broker = v.ws
    ? `${api.protocol === "https:" ? "wss" : "ws"}://${api.host}/mqtt`
    : (v.mqtt ?? `mqtt://${api.hostname}:1883`);
  return {
    ok: true,
    options: {
      scenario: v.scenario,
      devices: v.devices,
      rate: v.rate,
      url: v.url,
      brokerUrl: broker,
      token: v.token,
      accept: v.accept,
      undo: v.undo,
      optIn: v["opt-in"],
      troubled: v.troubled,
      seed: v.seed,
      prefix: v.prefix,
      stateDir: v.state,
      durationMs: v.duration,
      json: v.json,
      progressMs: v.progress,
    },
  };
}
