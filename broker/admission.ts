/**
 * Which connections the broker keeps when its budgets are full. A connection
 * is `waiting` from accept until its CONNECT has been read, `authenticating`
 * until its credentials are accepted, then `authenticated`. The first two are
 * pre-auth: they have a budget of their own and one per source address, and
 * when a budget (or the connection limit) is full the oldest pre-auth
 * connection gives way to the new one, waiting before authenticating. So
 * sockets that never send CONNECT, from one address or many, cost their
 * sender its own oldest sockets and never lock an authenticated device out;
 * a new connection is refused only when every open connection is
 * authenticated.
 */

/** Why a connection was closed or refused to keep a budget. */
export type BudgetReason = "max_connections" | "pre_auth_max" | "pre_auth_per_address";

export interface AdmissionLimits {
  /** Open connections, whatever their stage. */
  maxConnections: number;
  /** Pre-auth connections over all addresses. */
  preAuthMax: number;
  /** Pre-auth connections from one source address. */
  preAuthPerAddress: number;
}

type Stage = "waiting" | "authenticating" | "authenticated";

interface Entry {
  stage: Stage;
  address: string;
}

/** Connections of one pre-auth stage, oldest first, over all addresses and per address. */
class Tier<C> {
  readonly all = new Set<C>();
  private readonly byAddress = new Map<string, Set<C>>();

  add(conn: C, address: string): void {
    this.all.add(conn);
    let set = this.byAddress.get(address);
    if (!set) {
      set = new Set();
      this.byAddress.set(address, set);
    }
    set.add(conn);
  }

  delete(conn: C, address: string): void {
    this.all.delete(conn);
    const set = this.byAddress.get(address);
    if (!set) return;
    set.delete(conn);
    if (set.size === 0) this.byAddress.delete(address);
  }

  countOf(address: string): number {
    return this.byAddress.get(address)?.size ?? 0;
  }

  oldest(address?: string): C | undefined {
    const set = address === undefined ? this.all : this.byAddress.get(address);
    return set?.values().next().value;
  }
}

export class Admission<C> {
  private readonly entries = new Map<C, Entry>();
  private readonly waiting = new Tier<C>();
  private readonly authenticating = new Tier<C>();

  constructor(
    private readonly limits: AdmissionLimits,
    /** Closes a pre-auth connection that gives way; it is forgotten here at once. */
    private readonly evict: (conn: C, address: string, reason: BudgetReason) => void,
  ) {}

  /**
   * Makes room for a new connection from `address`, closing older pre-auth
   * connections where a budget is full. Returns the reason when it cannot be
   * admitted (every open connection is authenticated), else undefined.
   */
  makeRoom(address: string): BudgetReason | undefined {
    if (this.preAuthOf(address) >= this.limits.preAuthPerAddress) this.giveWay("pre_auth_per_address", address);
    else if (this.preAuth >= this.limits.preAuthMax) this.giveWay("pre_auth_max");
    if (this.entries.size < this.limits.maxConnections) return undefined;
    return this.giveWay("max_connections") ? undefined : "max_connections";
  }

  /** A connection admitted by makeRoom. */
  add(conn: C, address: string): void {
    this.entries.set(conn, { stage: "waiting", address });
    this.waiting.add(conn, address);
  }

  /** Its CONNECT has been read: its credentials are being checked. */
  connectRead(conn: C): void {
    const entry = this.entries.get(conn);
    if (entry?.stage !== "waiting") return;
    this.waiting.delete(conn, entry.address);
    entry.stage = "authenticating";
    this.authenticating.add(conn, entry.address);
  }

  /** Its credentials were accepted: it no longer counts against the pre-auth budgets. */
  authenticated(conn: C): void {
    const entry = this.entries.get(conn);
    if (!entry || entry.stage === "authenticated") return;
    this.tierOf(entry.stage).delete(conn, entry.address);
    entry.stage = "authenticated";
  }

  closed(conn: C): void {
    const entry = this.entries.get(conn);
    if (!entry) return;
    this.entries.delete(conn);
    if (entry.stage !== "authenticated") this.tierOf(entry.stage).delete(conn, entry.address);
  }

  get open(): number {
    return this.entries.size;
  }

  get preAuth(): number {
    return this.waiting.all.size + this.authenticating.all.size;
  }

  connections(): IterableIterator<C> {
    return this.entries.keys();
  }

  private preAuthOf(address: string): number {
    return this.waiting.countOf(address) + this.authenticating.countOf(address);
  }

  private tierOf(stage: Exclude<Stage, "authenticated">): Tier<C> {
    return stage === "waiting" ? this.waiting : this.authenticating;
  }

  /** Closes the oldest pre-auth connection (of `address`, if given), waiting ones first. */
  private giveWay(reason: BudgetReason, address?: string): boolean {
    const conn = this.waiting.oldest(address) ?? this.authenticating.oldest(address);
    if (conn === undefined) return false;
    const entry = this.entries.get(conn)!;
    this.closed(conn);
    this.evict(conn, entry.address, reason);
    return true;
  }
}
