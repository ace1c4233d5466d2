import { SimDevice } from "./device.ts";
import { inParallel } from "./parallel.ts";
import { PlatformApi } from "./platform-api.ts";
import { provisionDevices, recordConsent, StateFile } from "./provision.ts";
import { randomFor } from "./random.ts";
import { scenarios, type Action, type Planned, type SimDeviceSpec } from "./scenarios/index.ts";
import { FleetStats } from "./stats.ts";

export interface FleetOptions {
  /** A name from `scenarios`. */
  scenario: string;
  devices: number;
  /** Records per second per device. */
  rate: number;
  /** The platform's HTTP API. */
  url: string;
  /** mqtt://host:port, or ws://host:port/mqtt for MQTT over WebSocket. */
  brokerUrl: string;
  /** An admin token: provisioning and consent. */
  token: string;
  /** Share of suggestions customers accept. */
  accept: number;
  /** Share of applied changes customers undo later. */
  undo: number;
  /** Share of customers who opt in. */
  optIn: number;
  /** Share of devices that turn bad after a few sessions. */
  troubled?: number;
  seed: number;
  prefix: string;
  /** Where device tokens are kept between runs: a file per platform address and prefix in this directory. */
  stateDir: string;
  /** Or exactly this file (a platform whose address changes between runs, like the demo's). */
  stateFile?: string;
  /** Devices connecting at once while the fleet comes up (each costs the broker one token check). */
  connectConcurrency?: number;
  /** Provisioning and consent calls at once (each provisioning hashes a token on the platform). */
  apiConcurrency?: number;
}

export type Phase =
  | { phase: "provisioning"; done: number; total: number; created: number }
  | { phase: "consent"; done: number; total: number }
  | { phase: "connecting"; done: number; total: number }
  | { phase: "running" };

export interface FleetEvents {
  phase?: (phase: Phase) => void;
  action?: (device: SimDeviceSpec, action: Action) => void;
  /** Something the operator should read once: a refused device, a platform without a consent API. */
  warn?: (message: string) => void;
}

export interface Fleet {
  readonly plan: Planned;
  readonly stats: FleetStats;
  readonly provisioned: { created: number; reused: number };
  /** The platform has no consent API, so every customer stays opted out. */
  readonly consentUnavailable: boolean;
  /** Provisions (or reuses) the devices, records consent, and connects every device; resolves once each has connected or failed once. */
  start(): Promise<void>;
  /** Stops publishing, lets in-flight messages finish, disconnects. Safe at any time, also during start(). */
  stop(): Promise<void>;
}

/** Problems printed one by one before they are only counted. */
const PROBLEMS_SHOWN = 5;

export function createFleet(options: FleetOptions, events: FleetEvents = {}): Fleet {
  const scenario = scenarios.get(options.scenario);
  if (!scenario) throw new Error(`unknown scenario '${options.scenario}'`);
  const plan = scenario.plan(options.devices, {
    prefix: options.prefix,
    seed: options.seed,
    optIn: options.optIn,
    ...(options.troubled !== undefined ? { troubled: options.troubled } : {}),
  });
  const stats = new FleetStats(plan.devices.length, [...new Set(plan.devices.map((d) => d.scenario))]);
  const api = new PlatformApi(options.url, options.token);
  const abort = new AbortController();
  const devices: SimDevice[] = [];
  let problems = 0;
  let starting: Promise<void> | undefined;

  const fleet = {
    plan,
    stats,
    provisioned: { created: 0, reused: 0 },
    consentUnavailable: false,
    start(): Promise<void> {
      starting ??= run();
      return starting;
    },
    async stop(): Promise<void> {
      abort.abort();
      // Devices still connecting give up at once, so start() settles without waiting for timeouts.
      await Promise.all(devices.map((d) => d.stop()));
      await starting?.catch(() => undefined);
      await Promise.all(devices.map((d) => d.stop()));
    },
  };

  const problem = (device: SimDeviceSpec, message: string) => {
    problems += 1;
    if (problems <= PROBLEMS_SHOWN) events.warn?.(`${device.id}: ${message}`);
    if (problems === PROBLEMS_SHOWN + 1) events.warn?.("more device problems are only counted (errors)");
  };

  async function run(): Promise<void> {
    const state = await StateFile.open(
      options.stateFile ? { file: options.stateFile } : { dir: options.stateDir },
      options.url,
      options.prefix,
    );
    const total = plan.devices.length;
    const apiConcurrency = options.apiConcurrency ?? 8;
    const { tokens, created, reused } = await provisionDevices(api, state, plan.devices, {
      concurrency: apiConcurrency,
      signal: abort.signal,
      onProgress: (done, made) => events.phase?.({ phase: "provisioning", done, total, created: made }),
    });
    fleet.provisioned = { created, reused };
    if (abort.signal.aborted) return;

    const consent = await recordConsent(api, state, plan.customers, {
      concurrency: apiConcurrency,
      signal: abort.signal,
      onProgress: (done, changes) => events.phase?.({ phase: "consent", done, total: changes }),
    });
    if (consent.unavailable) {
      fleet.consentUnavailable = true;
      events.warn?.(
        `${options.url} has no consent API (PUT /api/subjects/{id}/consent answered 404): every customer stays opted out, so rules about customers will not fire`,
      );
    }
    if (abort.signal.aborted) return;

    let connected = 0;
    await inParallel(
      plan.devices,
      options.connectConcurrency ?? 50,
      async (spec) => {
        const device = new SimDevice({
          spec,
          token: tokens.get(spec.id)!,
          brokerUrl: options.brokerUrl,
          behaviour: plan.behaviour(spec, randomFor(options.seed, `behaviour:${spec.id}`)),
          random: randomFor(options.seed, `timing:${spec.id}`),
          answers: randomFor(options.seed, `answers:${spec.id}`),
          rate: options.rate,
          accept: options.accept,
          undo: options.undo,
          stats,
          onAction: events.action,
          onProblem: problem,
        });
        devices.push(device);
        await device.start();
        connected += 1;
        events.phase?.({ phase: "connecting", done: connected, total });
      },
      abort.signal,
    );
    if (!abort.signal.aborted) events.phase?.({ phase: "running" });
  }

  return fleet;
}
