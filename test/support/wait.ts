/**
 * Polls until `check` returns a value other than undefined/false, or fails
 * with the last observation; tests wait for conditions, never for time.
 */
export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`,
      );
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Options for vitest's `expect.poll` that match waitFor: every 25 ms, for up to 10 s. */
export const polling = { interval: 25, timeout: 10_000 } as const;
