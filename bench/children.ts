import type { ChildProcess } from "node:child_process";

/**
 * The processes the benchmark started (Refeed, the peers, influxd), so that
 * a run that fails or is interrupted leaves none of them behind.
 */
const running = new Set<{ pid: number | undefined; kill(): void }>();

export function track(child: ChildProcess): void {
  const entry = { pid: child.pid, kill: () => child.kill("SIGKILL") };
  running.add(entry);
  child.once("exit", () => running.delete(entry));
}

/** influxd runs in its own process group (store/influxd.ts). */
export function trackGroup(pid: number | undefined): () => void {
  const entry = {
    pid,
    kill: () => {
      try {
        if (pid) process.kill(-pid, "SIGKILL");
      } catch {
        // already gone
      }
    },
  };
  running.add(entry);
  return () => running.delete(entry);
}

export function killAll(): void {
  for (const entry of running) entry.kill();
  running.clear();
}
