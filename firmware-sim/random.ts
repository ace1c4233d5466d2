import { createHash } from "node:crypto";
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";

/** The draws a simulated device or customer needs; every stream is reproducible from its seed. */
export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform whole number in [min, max]. */
  int(min: number, max: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** Uniform in [min, max). */
  between(min: number, max: number): number;
}

/**
 * One independent stream per name (a device's behaviour, a device's answers)
 * under one simulation seed: the same seed and name behave the same on every run,
 * whatever else the fleet does in between.
 */
export function randomFor(seed: number, name: string): Random {
  const digest = createHash("sha256").update(`${seed}:${name}`).digest();
  const rng = xoroshiro128plus(digest.readInt32LE(0));
  return {
    next: () => uniformFloat64(rng),
    int: (min, max) => uniformInt(rng, min, max),
    chance: (p) => p > 0 && uniformFloat64(rng) < p,
    pick: (items) => items[uniformInt(rng, 0, items.length - 1)]!,
    between: (min, max) => min + uniformFloat64(rng) * (max - min),
  };
}

/** Traits handed out across a group; each has its own step so that they do not line up. */
const STEPS = {
  "opt-in": 0.6180339887498949, // the golden ratio's fraction
  pattern: 0.41421356237309515, // sqrt(2) - 1
  troubled: 0.7320508075688772, // sqrt(3) - 1
  hot: 0.2360679774997898, // sqrt(5) - 2
} as const;
export type Trait = keyof typeof STEPS;

/**
 * Whether the `index`-th member of a group has a trait that `share` of the
 * group has. Evenly spread (a Weyl sequence with an irrational step, offset by
 * the seed), so even a fleet of five devices has close to `share` of them,
 * which independent draws would not promise.
 */
export function hasTrait(seed: number, trait: Trait, index: number, share: number): boolean {
  const offset = createHash("sha256").update(`${seed}:${trait}`).digest().readUInt32LE(0) / 2 ** 32;
  return (offset + index * STEPS[trait]) % 1 < share;
}
