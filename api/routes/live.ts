import type { ServerResponse } from "node:http";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { z } from "zod";
import { formatDuration } from "../../config/duration.ts";
import { entryTypes, type Health } from "../../health/index.ts";
import { bearer, type Authenticator } from "../../auth/index.ts";
import { RegistryError } from "../../registry/index.ts";
import { createTickets, type Grant, type Tickets } from "../tickets.ts";
import { errorBody, RequestError } from "../errors.ts";
import { defineRoute, type Answer } from "../route.ts";
import { idParams, isoTime } from "../schemas.ts";
import { durationParam } from "./fleet.ts";

export interface LiveOptions {
  /** How often each stream checks for news. */
  intervalMs: number;
  ticketTtlMs?: number;
  /** Where tickets live (Redis in cluster mode, so a stream may open on another node); in memory by default. */
  tickets?: Tickets;
  /** Streams one principal may hold open at once. */
  maxStreamsPerPrincipal?: number;
  /** A stream ends after this long; the dashboard opens a new one with a fresh ticket (re-checking its key). */
  maxStreamMs?: number;
}

export interface LiveDeps {
  health: Health;
  auth: Authenticator;
  log: Logger;
  /** The API key a bearer token names, and whether it is still good, so that a revoked key's streams end. */
  keys: {
    idOf(token: string): string | undefined;
    active(id: string): boolean;
    onRevoke(listener: (id: string) => void): () => void;
  };
}

interface Stream {
  grant: Grant;
  raw: ServerResponse;
  send(event: string, data: unknown): void;
  end(): void;
}

const HEARTBEAT_MS = 15_000;
/** Late writes (the ingest batch, a device's own `ts`) are looked for this far back; the client de-duplicates by key. */
const OVERLAP_US = 10_000_000;
const HEALTH_EVERY_MS = 15_000;

const streamQuery = z.strictObject({
  ticket: z.string().min(1).max(128),
  window: durationParam(90 * 86_400_000, 60_000).optional(),
});
const deviceStreamQuery = streamQuery.extend({
  after: z.coerce.number({ error: "epoch microseconds" }).int().min(0).optional(),
});
const ticket = z
  .object({ ticket: z.string(), expiresAt: isoTime })
  .meta({ example: { ticket: "rft_c2VjcmV0", expiresAt: "2026-05-04T10:00:30.000Z" } });
const events = (example: string): Answer => ({
  description: "a text/event-stream",
  types: { "text/event-stream": z.string().meta({ example }) },
});
const tooMany: Answer = { description: "too many live streams open with this key", schema: errorBody };

/**
 * Live updates for the dashboard as Server-Sent Events. EventSource cannot send
 * headers, so a signed-in page first trades its key for a single-use ticket
 * (POST /api/live/tickets, Bearer) that opens one stream. The fleet stream says
 * when the fleet's health changed; a device stream sends the device's new
 * timeline entries, its health, and when new telemetry arrived.
 */
export const liveRoutes =
  (options: LiveOptions, deps: LiveDeps): FastifyPluginAsync =>
  async (app) => {
    const tickets = options.tickets ?? createTickets(options.ticketTtlMs ?? 30_000);
    const maxPerPrincipal = options.maxStreamsPerPrincipal ?? 16;
    const maxStreamMs = options.maxStreamMs ?? 30 * 60_000;
    const streams = new Set<Stream>();
    const stopRevoke = deps.keys.onRevoke((id) => {
      for (const s of streams) if (s.grant.keyId === id) s.end();
    });
    // Before the server waits for its connections to finish: an event stream never does by itself.
    app.addHook("preClose", async () => {
      stopRevoke();
      for (const s of streams) s.end();
    });

    defineRoute(app, deps.auth, {
      method: "POST",
      url: "/api/live/tickets",
      tag: "fleet",
      summary: "A single-use ticket for one live stream",
      description:
        "EventSource cannot send an Authorization header: the dashboard trades its key for a 30-second ticket and opens the stream with ?ticket=.",
      auth: ["support"],
      responses: { 201: { description: "`{ticket, expiresAt}`", schema: ticket } },
      async handler(request, reply) {
        const token = bearer(request)!;
        const { ticket, expiresAt } = await tickets.issue({
          principal: request.principal!,
          keyId: deps.keys.idOf(token),
        });
        return reply
          .code(201)
          .header("cache-control", "no-store")
          .send({ ticket, expiresAt: new Date(expiresAt).toISOString() });
      },
    });

    /** The grant of a ticket (used up) whose key is still good. */
    const redeem = async (ticket: string): Promise<Grant> => {
      const grant = await tickets.redeem(ticket);
      if (grant && (grant.keyId === undefined || deps.keys.active(grant.keyId))) return grant;
      throw new RequestError(
        "BAD_TICKET",
        "unknown, used or expired ticket; get a new one from POST /api/live/tickets",
      );
    };

    /** Opens the event stream for a redeemed ticket, or throws why not. */
    const open = (request: FastifyRequest, reply: FastifyReply, grant: Grant): Stream => {
      const mine = [...streams].filter((s) => s.grant.principal.name === grant.principal.name).length;
      if (mine >= maxPerPrincipal)
        throw new RequestError("TOO_MANY_STREAMS", `at most ${maxPerPrincipal} live streams per key at once`);
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      raw.write("retry: 5000\n\n");
      const timers: NodeJS.Timeout[] = [];
      let ended = false;
      const stream: Stream = {
        grant,
        raw,
        send(event, data) {
          if (!ended) raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
        },
        end() {
          if (ended) return;
          ended = true;
          for (const t of timers) clearTimeout(t);
          streams.delete(stream);
          raw.end();
        },
      };
      streams.add(stream);
      timers.push(setInterval(() => !ended && raw.write(": keepalive\n\n"), HEARTBEAT_MS).unref());
      timers.push(
        setTimeout(() => {
          stream.send("expired", { message: "open a new stream with a new ticket" });
          stream.end();
        }, maxStreamMs).unref(),
      );
      request.raw.on("close", () => stream.end());
      raw.on("error", () => stream.end());
      return stream;
    };

    /** Runs `tick` now and then every interval after the previous one finished, until the stream ends. */
    const every = (stream: Stream, what: string, tick: () => Promise<void>) => {
      const run = async () => {
        if (!streams.has(stream)) return;
        try {
          await tick();
        } catch (err) {
          deps.log.warn({ part: "live", what, err: (err as Error).message }, "live update failed; retrying");
        }
        if (streams.has(stream)) setTimeout(() => void run(), options.intervalMs).unref();
      };
      void run();
    };

    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/api/live/fleet",
      tag: "fleet",
      summary: "Server-sent events: the fleet's health changed",
      description: "Opened with a ticket from POST /api/live/tickets (no Authorization header).",
      auth: "ticket",
      query: streamQuery,
      responses: {
        200: events('retry: 5000\n\nevent: fleet\ndata: {"computedAt":"2026-05-04T10:00:00.000Z"}\n\n'),
        429: tooMany,
      },
      async handler(request, reply) {
        const windowMs = request.query.window ?? deps.health.config.window;
        const stream = open(request, reply, await redeem(request.query.ticket));
        let digest: string | undefined;
        every(stream, "fleet", async () => {
          const snap = await deps.health.snapshot(windowMs);
          if (snap.digest === digest) return;
          digest = snap.digest;
          stream.send("fleet", { computedAt: new Date(snap.computedAt).toISOString() });
        });
        return reply;
      },
    });

    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/api/live/devices/:id",
      tag: "fleet",
      summary: "Server-sent events: a device's new timeline entries, health and telemetry",
      description: "Opened with a ticket from POST /api/live/tickets (no Authorization header).",
      auth: "ticket",
      params: idParams,
      query: deviceStreamQuery,
      responses: {
        200: events('retry: 5000\n\nevent: health\ndata: {"window":"7d","device":"atm-1","score":41}\n\n'),
        404: { description: "no such device", schema: errorBody },
        429: tooMany,
      },
      async handler(request, reply) {
        const id = request.params.id;
        const q = request.query;
        const windowMs = q.window ?? deps.health.config.window;
        // The ticket first: nobody without one makes InfluxDB work.
        const grant = await redeem(q.ticket);
        const first = await deps.health.device(id, windowMs);
        if (!first) throw new RegistryError("NOT_FOUND", `no device '${id}'`);
        const stream = open(request, reply, grant);
        const types = new Set(entryTypes);
        let after = q.after ?? Date.now() * 1000;
        let telemetryAt = Math.floor(after / 1000);
        // Entries already sent, by key, with what was sent: an action is sent again when its lifecycle moves.
        const sent = new Map<string, { json: string; micros: number }>();
        const window = formatDuration(windowMs);
        let health = JSON.stringify({ score: first.score, components: first.components });
        let healthAt = Date.now();
        stream.send("health", { window, ...first });
        every(stream, "device", async () => {
          const news = await deps.health.since(id, Math.max(0, after - OVERLAP_US), types);
          const fresh = news.entries.filter((e) => {
            const json = JSON.stringify(e);
            if (sent.get(e.key)?.json === json) return false;
            sent.set(e.key, { json, micros: Date.parse(e.at) * 1000 });
            return true;
          });
          for (const e of fresh) after = Math.max(after, Date.parse(e.at) * 1000);
          for (const [key, s] of sent)
            if (s.micros < after - 2 * OVERLAP_US && !key.startsWith("action:")) sent.delete(key);
          if (fresh.length > 0) stream.send("entries", { entries: fresh, truncated: news.truncated });
          const newTelemetry = news.newestTelemetry !== undefined && news.newestTelemetry > telemetryAt;
          if (newTelemetry) {
            telemetryAt = news.newestTelemetry!;
            stream.send("telemetry", { at: new Date(telemetryAt).toISOString() });
          }
          if (fresh.length > 0 || newTelemetry || Date.now() - healthAt >= HEALTH_EVERY_MS) {
            healthAt = Date.now();
            const now = await deps.health.device(id, windowMs);
            const digest = now && JSON.stringify({ score: now.score, components: now.components });
            if (now && digest !== health) {
              health = digest!;
              stream.send("health", { window, ...now });
            }
          }
        });
        return reply;
      },
    });
  };
