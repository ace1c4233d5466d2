import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { superviseChild, type Supervised } from "./child.ts";

const REFEED_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../bin/refeed.js");

export interface NodeAddresses {
  mqtt: string;
  http: string;
  ws: string;
}

export interface NodeProcess extends Supervised {
  readonly id: string;
  readonly addresses: NodeAddresses;
  readonly mqttPort: number;
  readonly httpPort: number;
}

export interface StartNodeOptions {
  id: string;
  /** The whole environment of the node (`refeed start` reads its configuration from it). */
  env: NodeJS.ProcessEnv;
  /** Where the node's log lines go, with its id added (the cluster's stdout). */
  out: (line: string) => void;
  err: (line: string) => void;
  onExit: (code: number | null, signal: NodeJS.Signals | null) => void;
  startTimeoutMs?: number;
}

/**
 * Runs `refeed start` as a child process and resolves with its addresses once
 * it logs "refeed listening". Its own process group: Ctrl-C reaches only
 * `refeed cluster`, which stops the nodes before the engines they flush to.
 */
export async function startNode(options: StartNodeOptions): Promise<NodeProcess> {
  const proc = spawn(process.execPath, [REFEED_BIN, "start"], {
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let listening: (addresses: NodeAddresses) => void = () => undefined;
  const ready = new Promise<NodeAddresses>((resolve) => (listening = resolve));
  const tag = `{"node":${JSON.stringify(options.id)},`;
  const child = superviseChild(proc, {
    name: `refeed node ${options.id}`,
    onLine(line, stream) {
      if (stream === "stderr") return options.err(`${options.id}: ${line}`);
      const parsed = parseJson(line);
      if (!parsed) return options.out(`${options.id}: ${line}`);
      // Every line says which node wrote it; the listening line names it already.
      options.out("node" in parsed || !line.startsWith("{") ? line : tag + line.slice(1));
      if (parsed.msg === "refeed listening")
        listening({ mqtt: String(parsed.mqtt), http: String(parsed.http), ws: String(parsed.ws) });
    },
    onExit: options.onExit,
  });
  const timeoutMs = options.startTimeoutMs ?? 120_000;
  let timer: NodeJS.Timeout | undefined;
  const tooSlow = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`node ${options.id} did not log "refeed listening" within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    const addresses = await Promise.race([ready, child.startFailed, tooSlow]);
    return {
      ...child,
      id: options.id,
      addresses,
      mqttPort: Number(new URL(addresses.mqtt).port),
      httpPort: Number(new URL(addresses.http).port),
    };
  } catch (err) {
    await child.stop(5000);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function parseJson(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
