import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { checkAnswersOf } from "./contract-every-answer.ts";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export interface Running {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
  /** Resolves with the first stdout JSON log line for which `match` is true. */
  logLine(
    match: (line: Record<string, unknown>) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
}

/** Starts the `refeed` CLI as a user would, with only the given REFEED_* variables set. */
export function runCli(args: string[], env: Record<string, string>): Running {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("REFEED_")));
  const child = spawn(process.execPath, [path.join(ROOT, "bin/refeed.js"), ...args], {
    env: { ...clean, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters: Array<() => void> = [];
  const split = (sink: string[]) => {
    let rest = "";
    return (chunk: Buffer) => {
      const lines = (rest + chunk.toString()).split("\n");
      rest = lines.pop() ?? "";
      sink.push(...lines);
      waiters.forEach((w) => w());
    };
  };
  child.stdout.on("data", split(stdout));
  // A started platform's answers are checked against its document like an in-process one's.
  child.stdout.on("data", (chunk: Buffer) => {
    for (const line of chunk
      .toString()
      .split("\n")
      .filter((l) => l.includes('"refeed listening"'))) {
      const http = /"http":"([^"]+)"/.exec(line)?.[1];
      if (http) checkAnswersOf(http);
    }
  });
  child.stderr.on("data", split(stderr));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    stdout,
    stderr,
    exited,
    logLine(match, what, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          for (const line of stdout) {
            try {
              const parsed = JSON.parse(line) as Record<string, unknown>;
              if (match(parsed)) return (resolve(parsed), true);
            } catch {
              // not a log line
            }
          }
          return false;
        };
        if (check()) return;
        const timer = setTimeout(
          () => reject(new Error(`no log line for ${what} within ${timeoutMs} ms; stderr: ${stderr.join("\n")}`)),
          timeoutMs,
        );
        waiters.push(() => check() && clearTimeout(timer));
        void exited.then((code) =>
          reject(new Error(`refeed exited (${code}) before ${what}; stderr: ${stderr.join("\n")}`)),
        );
      });
    },
  };
}

/** Runs a command to completion and returns its output. */
export function run(
  cmd: string,
  args: string[],
  timeoutMs = 15_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

type Command = (
  argv: string[],
  env: Record<string, string | undefined>,
  io: { out(s: string): void; err(s: string): void },
) => Promise<number>;

/**
 * An admin command (`refeed devices`, `refeed keys`) run in this process against
 * `http` (starting node + tsx per call would cost seconds); one test per
 * command runs the real `refeed` binary to cover the wiring.
 */
export async function inProcess(command: Command, http: string, args: string[], env: Record<string, string>) {
  let stdout = "";
  let stderr = "";
  const code = await command([...args, "--url", http], env, { out: (s) => (stdout += s), err: (s) => (stderr += s) });
  return { code, stdout: stdout.trimEnd(), stderr: stderr.trimEnd() };
}
