import { createFleet, type FleetEvents } from "./fleet.ts";
import { parseSimArgs, usage, type SimOptions } from "./options.ts";
import { formatSummary, note, ProgressLine, summarize, type Io, type Summary } from "./progress.ts";
import { ResourceMeter } from "./resources.ts";

const processIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  tty: process.stderr.isTTY === true,
};

/** `refeed sim ...`: exit code 0 after a clean stop, 1 when the fleet could not run, 2 for bad flags. */
export async function simCommand(argv: string[], io: Io = processIo): Promise<number> {
  const parsed = parseSimArgs(argv);
  if (!parsed.ok) {
    io.err(`refeed sim: ${parsed.message.split("\n").join("\nrefeed sim: ")}\n(refeed sim --help lists the options)\n`);
    return 2;
  }
  if ("help" in parsed) {
    io.out(usage);
    return 0;
  }
  return runSim(parsed.options, io);
}

/**
 * Runs the fleet until --duration, Ctrl-C or SIGTERM, with a progress line,
 * then stops cleanly and prints the summary. A second Ctrl-C leaves at once.
 */
export async function runSim(options: SimOptions, io: Io, extra: Pick<FleetEvents, "action"> = {}): Promise<number> {
  const meter = new ResourceMeter();
  let reason = "";
  let stopNow: () => void = () => undefined;
  let timer: NodeJS.Timeout | undefined;
  const fleet = createFleet(options, {
    phase: (p) => {
      progress.setPhase(p);
      if (p.phase !== "running") return;
      meter.markSteady();
      // --duration is the time the fleet runs: provisioning and connecting a large fleet do not eat into it.
      if (options.durationMs !== undefined)
        timer = setTimeout(() => ((reason ||= "duration"), stopNow()), options.durationMs);
    },
    warn: (message) => note(io, `refeed sim: ${message}`),
    ...extra,
  });
  const progress = new ProgressLine(fleet, io, options.progressMs ?? (io.tty ? 1000 : 10_000));
  progress.start();

  const stopped = new Promise<void>((resolve) => (stopNow = resolve));
  const onSignal = (signal: NodeJS.Signals) => {
    if (reason) {
      io.err(`\nrefeed sim: ${signal} again, leaving without a clean stop\n`);
      process.exit(130);
    }
    reason = signal;
    stopNow();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  let failure: Error | undefined;
  const starting = fleet.start().catch((err: Error) => {
    failure = err;
    stopNow();
  });
  await stopped;
  clearTimeout(timer);
  const connected = fleet.stats.connected;
  await fleet.stop();
  await starting;
  progress.stop();
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);

  if (failure) {
    io.err(`refeed sim: ${failure.message}\n`);
    return 1;
  }
  const summary: Summary = summarize(fleet, options.scenario, options.rate, meter, connected);
  io.out(options.json ? `${JSON.stringify(summary, null, 2)}\n` : formatSummary(summary));
  if (summary.totals.sent === 0 && fleet.stats.total.errors > 0) {
    io.err("refeed sim: nothing was sent; see the errors above\n");
    return 1;
  }
  return 0;
}
