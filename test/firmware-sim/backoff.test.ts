import { describe, expect, it } from "vitest";
import { Backoff } from "../../firmware-sim/backoff.ts";

describe("reconnect backoff", () => {
  it("grows exponentially up to the cap, jittered within bounds, and starts over after a success", () => {
    const highest = new Backoff(() => 0.999999, 1000, 30_000);
    const delays = Array.from({ length: 8 }, () => highest.next());
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    const lowest = new Backoff(() => 0, 1000, 30_000);
    expect(Array.from({ length: 4 }, () => lowest.next())).toEqual([500, 500, 500, 500]);
    highest.reset();
    expect(highest.next()).toBe(1000);
  });
});
