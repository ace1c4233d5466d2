import type { ChildProcess } from "node:child_process";

/** A child process of `refeed cluster`, its output read line by line. */
export interface Supervised {
  readonly pid: number | undefined;
  /** Rejects when the process cannot be spawned or exits; for racing against a start-up condition. */
  readonly startFailed: Promise<never>;
  /** SIGTERM, SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface SuperviseOptions {
  name: string;
  onLine(line: string, stream: "stdout" | "stderr"): void;
  /** An exit that stop() did not ask for. */
  onExit: (code: number | null, signal: NodeJS.Signals | null) => void;
}

export function superviseChild(proc: ChildProcess, options: SuperviseOptions): Supervised {
  let stopping = false;
  let tail: string[] = [];
  const lines = (stream: "stdout" | "stderr") => {
    let rest = "";
    return (chunk: Buffer) => {
      const parts = (rest + chunk.toString()).split("\n");
      rest = parts.pop() ?? "";
      for (const line of parts) {
        if (!line) continue;
        tail = [...tail.slice(-4), line];
        options.onLine(line, stream);
      }
    };
  };
  proc.stdout?.on("data", lines("stdout"));
  proc.stderr?.on("data", lines("stderr"));
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  proc.once("exit", (code, signal) => {
    if (!stopping) options.onExit(code, signal);
  });
  const startFailed = new Promise<never>((_, reject) => {
    proc.once("error", (err) => reject(new Error(`cannot start ${options.name}: ${err.message}`)));
    proc.once("exit", (code, signal) =>
      reject(
        new Error(`${options.name} exited (${code ?? signal}) while starting: ${tail.join(" | ") || "no output"}`),
      ),
    );
  });
  // Only start-up races read it; an exit later is reported through onExit.
  startFailed.catch(() => undefined);

  return {
    pid: proc.pid,
    startFailed,
    async stop(graceMs = 30_000) {
      stopping = true;
      if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
