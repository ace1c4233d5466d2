import { createHash, randomBytes } from "node:crypto";
import type { Principal } from "../auth/index.ts";

/** Who a ticket was issued to: the principal, and the API key behind it (none for the admin token). */
export interface Grant {
  principal: Principal;
  keyId: string | undefined;
}

export interface Tickets {
  /** A random single-use ticket for `grant`, valid for `ttlMs`. */
  issue(grant: Grant): { ticket: string; expiresAt: number };
  /** The grant of a valid ticket, which is used up; undefined for an unknown, used or expired one. */
  redeem(ticket: string): Grant | undefined;
}

/**
 * Short-lived, single-use tickets for EventSource, which cannot send an
 * Authorization header: the browser trades its key for a ticket over an
 * authenticated POST and puts only the ticket in the stream's URL, where a
 * proxy log may keep it after it is worthless. Only their hashes are kept.
 */
export function createTickets(ttlMs: number, now: () => number = Date.now): Tickets {
  const open = new Map<string, Grant & { expiresAt: number }>();
  const hash = (ticket: string) => createHash("sha256").update(ticket).digest("base64url");
  const sweep = () => {
    const t = now();
    for (const [key, grant] of open) if (grant.expiresAt <= t) open.delete(key);
  };
  return {
    issue(grant) {
      sweep();
      const ticket = `rft_${randomBytes(32).toString("base64url")}`;
      const expiresAt = now() + ttlMs;
      open.set(hash(ticket), { ...grant, expiresAt });
      return { ticket, expiresAt };
    },
    redeem(ticket) {
      const key = hash(ticket);
      const grant = open.get(key);
      open.delete(key);
      if (!grant || grant.expiresAt <= now()) return undefined;
      return { principal: grant.principal, keyId: grant.keyId };
    },
  };
}
