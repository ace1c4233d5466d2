/** CPU and memory of this process, for the summary: how heavy is a simulated device? */
export class ResourceMeter {
  private readonly startCpu = process.cpuUsage();
  private readonly startAt = performance.now();
  private steady: { cpu: NodeJS.CpuUsage; at: number } | undefined;

  /** From now on, also measure the steady state (the fleet is up). */
  markSteady(): void {
    this.steady ??= { cpu: process.cpuUsage(), at: performance.now() };
  }

  read(): ResourceReport {
    const share = (since: NodeJS.CpuUsage, at: number) => {
      const used = process.cpuUsage(since);
      const seconds = (used.user + used.system) / 1e6;
      const wall = (performance.now() - at) / 1000;
      return {
        cpuSeconds: round(seconds),
        wallSeconds: round(wall),
        cpuShareOfOneCore: wall > 0 ? round(seconds / wall) : 0,
      };
    };
    return {
      ...share(this.startCpu, this.startAt),
      steady: this.steady ? share(this.steady.cpu, this.steady.at) : null,
      // maxRSS is in kibibytes.
      maxRssMb: Math.round((process.resourceUsage().maxRSS * 1024) / 1e6),
      rssMb: Math.round(process.memoryUsage.rss() / 1e6),
    };
  }
}

export interface ResourceReport {
  cpuSeconds: number;
  wallSeconds: number;
  /** CPU time / wall time: 1 is one core busy all the time. */
  cpuShareOfOneCore: number;
  /** The same, since the fleet was up (without provisioning and connecting). */
  steady: { cpuSeconds: number; wallSeconds: number; cpuShareOfOneCore: number } | null;
  maxRssMb: number;
  rssMb: number;
}

const round = (n: number) => Math.round(n * 100) / 100;
