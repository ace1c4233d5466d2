import { describe, expect, it } from "vitest";
import { PublishRateLimiter, TokenBucket } from "../../broker/limits.ts";

describe("token bucket", () => {
  it("allows a burst, then the rate", () => {
    const bucket = new TokenBucket(10, 5, 0);
    const burst = Array.from({ length: 8 }, () => bucket.take(0));
    expect(burst).toEqual([true, true, true, true, true, false, false, false]);
    // 10 per second: one token every 100 ms.
    expect(bucket.take(50)).toBe(false);
    expect(bucket.take(100)).toBe(true);
    expect(bucket.take(100)).toBe(false);
    expect(bucket.take(350)).toBe(true);
    expect(bucket.take(350)).toBe(true);
    expect(bucket.take(350)).toBe(false);
  });

  it("never holds more than the burst, however long it was idle", () => {
    const bucket = new TokenBucket(100, 3, 0);
    const after = Array.from({ length: 5 }, () => bucket.take(60_000));
    expect(after.filter(Boolean)).toHaveLength(3);
  });

  it("does not run backwards when the clock does", () => {
    const bucket = new TokenBucket(1, 1, 1000);
    expect(bucket.take(1000)).toBe(true);
    expect(bucket.take(500)).toBe(false);
  });
});

describe("per-device rate limiter", () => {
  it("gives each device its own bucket and forgets only full ones", () => {
    const limiter = new PublishRateLimiter(1, 2);
    expect([limiter.allow("a", 0), limiter.allow("a", 0), limiter.allow("a", 0)]).toEqual([true, true, false]);
    expect(limiter.allow("b", 0)).toBe(true);
    limiter.sweep(500);
    expect(limiter.size).toBe(2);
    limiter.sweep(2000);
    expect(limiter.size).toBe(0);
  });
});
