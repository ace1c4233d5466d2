import type { Client } from "aedes";
import type { PacketGuard, Transport } from "./packet-limit.ts";
import type { DisconnectReason } from "./presence.ts";

/** One authenticated connection of a device. */
export interface Session {
  readonly device: string;
  readonly clientId: string;
  readonly client: Client;
  readonly guard: PacketGuard;
  readonly transport: Transport;
  /** Topic filters granted to this connection. */
  readonly subscriptions: Set<string>;
  /** Action id per packet identifier of action packets written to this connection and not yet acknowledged (made on first use: most connections of a fleet are idle). */
  inFlight: Map<number, string> | undefined;
  /** Action ids written to this connection, so a resend does not repeat them (made on first use). */
  sent: Set<string> | undefined;
  /** Registered with Aedes (CONNACK sent) and recorded as connected. */
  online: boolean;
  /** Why the session ends, when the broker knows it before the transport closes. */
  reason: DisconnectReason | undefined;
  /** The client sent DISCONNECT. */
  saidGoodbye: boolean;
  /** The transport closed. */
  closed: boolean;
  /** The open session this one took the client id from, if any (Aedes closes it once this one registers). */
  displaced: Session | undefined;
}

/** The broker's index of live sessions: by Aedes client, by transport, by device and by client id. */
export class Sessions {
  private readonly byClient = new WeakMap<Client, Session>();
  private readonly byGuard = new WeakMap<PacketGuard, Session>();
  private readonly byDevice = new Map<string, Set<Session>>();
  private readonly byClientId = new Map<string, Session>();

  /** Registers a session; it now holds its client id. */
  open(client: Client, guard: PacketGuard, device: string, clientId: string): Session {
    const session: Session = {
      device,
      clientId,
      client,
      guard,
      transport: guard.transport,
      subscriptions: new Set(),
      inFlight: undefined,
      sent: undefined,
      online: false,
      reason: undefined,
      saidGoodbye: false,
      closed: false,
      displaced: this.byClientId.get(clientId),
    };
    this.byClient.set(client, session);
    this.byGuard.set(guard, session);
    this.byClientId.set(clientId, session);
    let set = this.byDevice.get(device);
    if (!set) this.byDevice.set(device, (set = new Set()));
    set.add(session);
    return session;
  }

  /** Forgets a session whose transport closed. */
  close(session: Session): void {
    session.closed = true;
    if (this.byClientId.get(session.clientId) === session) {
      // A newcomer that failed before taking over hands the id back.
      const previous = session.displaced;
      if (previous && !previous.closed) this.byClientId.set(session.clientId, previous);
      else this.byClientId.delete(session.clientId);
    }
    session.displaced = undefined;
    const set = this.byDevice.get(session.device);
    set?.delete(session);
    if (set?.size === 0) this.byDevice.delete(session.device);
  }

  /** True when another session now holds this session's client id: it was taken over. */
  superseded(session: Session): boolean {
    const holder = this.byClientId.get(session.clientId);
    return holder !== undefined && holder !== session;
  }

  of(client: Client | null): Session | undefined {
    return client ? this.byClient.get(client) : undefined;
  }

  ofGuard(guard: PacketGuard): Session | undefined {
    return this.byGuard.get(guard);
  }

  ofDevice(device: string): Session[] {
    return [...(this.byDevice.get(device) ?? [])];
  }

  all(): Session[] {
    return [...this.byDevice.values()].flatMap((set) => [...set]);
  }
}
