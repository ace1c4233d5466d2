/**
 * Reconnect delays: exponential with full jitter, so a fleet that lost the
 * broker together does not come back in one wave. `random` is [0, 1).
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly random: () => number,
    private readonly baseMs = 1000,
    private readonly maxMs = 30_000,
  ) {}

  /** The delay before the next attempt. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(this.baseMs / 2 + this.random() * (ceiling - this.baseMs / 2));
  }

  /** After a successful connection. */
  reset(): void {
    this.attempt = 0;
  }
}
