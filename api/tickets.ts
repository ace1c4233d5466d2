import { createHash, randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { z } from "zod";
import type { Principal } from "../auth/index.ts";

/** Who a ticket was issued to: the principal, and the API key behind it (none for the admin token). */
export interface Grant {
  principal: Principal;
  keyId: string | undefined;
}

export interface Tickets {
  /** A random single-use ticket for `grant`, valid for `ttlMs`. */
  issue(grant: Grant): Promise<{ ticket: string; expiresAt: number }>;
  /** The grant of a valid ticket, which is used up; undefined for an unknown, used or expired one. */
  redeem(ticket: string): Promise<Grant | undefined>;
  close(): Promise<void>;
}

const newTicket = () => `rft_${randomBytes(32).toString("base64url")}`;
const hashOf = (ticket: string) => createHash("sha256").update(ticket).digest("base64url");

/**
 * Short-lived, single-use tickets for EventSource, which cannot send an
 * Authorization header: the browser trades its key for a ticket over an
 * authenticated POST and puts only the ticket in the stream's URL, where a
 * proxy log may keep it after it is worthless. Only their hashes are kept.
 */
export function createTickets(ttlMs: number, now: () => number = Date.now): Tickets {
  const open = new Map<string, Grant & { expiresAt: number }>();
  const hash = hashOf;
  const sweep = () => {
    const t = now();
    for (const [key, grant] of open) if (grant.expiresAt <= t) open.delete(key);
  };
  return {
    issue(grant) {
      sweep();
      const ticket = newTicket();
      const expiresAt = now() + ttlMs;
      open.set(hash(ticket), { ...grant, expiresAt });
      return Promise.resolve({ ticket, expiresAt });
    },
    redeem(ticket) {
      const key = hash(ticket);
      const grant = open.get(key);
      open.delete(key);
      if (!grant || grant.expiresAt <= now()) return Promise.resolve(undefined);
      return Promise.resolve({ principal: grant.principal, keyId: grant.keyId });
    },
    close: () => Promise.resolve(),
  };
}

// A grant read back from Redis is parsed like any input.
const grantSchema = z.object({
  principal: z.union([
    z.object({ role: z.enum(["admin", "product", "support"]), name: z.string() }),
    z.object({ role: z.literal("subject"), subject: z.string(), name: z.string() }),
    z.object({ role: z.literal("device"), device: z.string(), name: z.string() }),
  ]),
  keyId: z.string().optional(),
});

/**
 * Tickets in cluster mode: issued on one node, good for one stream on any
 * node (HAProxy may send the stream elsewhere), used up at once everywhere.
 * Redis keeps each ticket's hash with its grant and lets it run out; GETDEL
 * makes the use single.
 */
export async function redisTickets(options: { url: string; node: string; ttlMs: number }): Promise<Tickets> {
  const redis = new Redis(options.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectionName: `refeed:${options.node}:tickets`,
  });
  redis.on("error", () => undefined); // a call that needs Redis fails with the reason; the feed's log line names it
  await redis.connect();
  const keyOf = (ticket: string) => `refeed:tickets:${hashOf(ticket)}`;
  return {
    async issue(grant) {
      const ticket = newTicket();
      const expiresAt = Date.now() + options.ttlMs;
      await redis.set(keyOf(ticket), JSON.stringify(grant), "PX", options.ttlMs);
      return { ticket, expiresAt };
    },
    async redeem(ticket) {
      const stored = await redis.getdel(keyOf(ticket));
      if (!stored) return undefined;
      const parsed = grantSchema.safeParse(JSON.parse(stored));
      return parsed.success ? (parsed.data as Grant) : undefined;
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
