/**
 * A token bucket: `burst` tokens at most, refilled at `rate` per second.
 * Time is passed in so the policy can be tested without waiting.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** True once the bucket is full again, so forgetting it changes nothing. */
  full(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }

  private refill(now: number): void {
    const elapsed = Math.max(0, now - this.last) / 1000;
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.rate);
    this.last = now;
  }
}

/**
 * One bucket per device, shared by all its connections, so opening more
 * connections (or reconnecting) buys a device no extra rate. Buckets that have
 * refilled are swept, so memory follows the devices that are busy now.
 */
export class PublishRateLimiter {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {}

  allow(device: string, now: number): boolean {
    let bucket = this.buckets.get(device);
    if (!bucket) {
      bucket = new TokenBucket(this.rate, this.burst, now);
      this.buckets.set(device, bucket);
    }
    return bucket.take(now);
  }

  sweep(now: number): void {
    for (const [device, bucket] of this.buckets) if (bucket.full(now)) this.buckets.delete(device);
  }

  get size(): number {
    return this.buckets.size;
  }
}
