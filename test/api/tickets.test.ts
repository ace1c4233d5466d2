import { describe, expect, it } from "vitest";
import { createTickets } from "../../api/tickets.ts";

describe("live stream tickets", () => {
  const grant = { principal: { role: "support" as const, name: "desk (key k-0123456789)" }, keyId: "k-0123456789" };

  it("open one stream each: a ticket is used up by its first redemption", () => {
    const tickets = createTickets(30_000);
    const { ticket } = tickets.issue(grant);
    expect(ticket).toMatch(/^rft_[A-Za-z0-9_-]{43}$/);
    expect(tickets.redeem(ticket)).toEqual(grant);
    expect(tickets.redeem(ticket)).toBeUndefined();
    expect(tickets.redeem("rft_guessed")).toBeUndefined();
  });

  it("expire after their time to live", () => {
    let now = 1_000;
    const tickets = createTickets(30_000, () => now);
    const { ticket, expiresAt } = tickets.issue(grant);
    expect(expiresAt).toBe(31_000);
    now = 31_000;
    expect(tickets.redeem(ticket)).toBeUndefined();
  });
});
