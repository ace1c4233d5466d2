import type { ServerResponse } from "node:http";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { z } from "zod";
import { formatDuration } from "../../config/duration.ts";
import { entryTypes, type Health } from "../../health/index.ts";
import { bearer, requireRole, type Authenticator } from "../../auth/index.ts";
import { createTickets, type Grant } from "../tickets.ts";
import { zodMessage } from "../errors.ts";
import { durationParam } from "./fleet.ts";
import { doc } from "../openapi.ts";

export interface LiveOptions {
  /** How often each stream checks for news. */
  intervalMs: number;
  ticketTtlMs?: number;
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
    const tickets = createTickets(options.ticketTtlMs ?? 30_000);
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

    app.register(async (authed) => {
      authed.addHook("onRequest", requireRole(deps.auth, "support"));
      authed.post(
        "/api/live/tickets",
        doc({
          tag: "fleet",
          summary: "A single-use ticket for one live stream",
          description:
            "EventSource cannot send an Authorization header: the dashboard trades its key for a 30-second ticket and opens the stream with ?ticket=.",
          auth: ["support"],
          responses: { 200: "`{ticket, expiresAt}`" },
        }),
        async (request, reply) => {
          const token = bearer(request)!;
          const { ticket, expiresAt } = tickets.issue({ principal: request.principal!, keyId: deps.keys.idOf(token) });
          return reply
            .code(201)
            .header("cache-control", "no-store")
            .send({ ticket, expiresAt: new Date(expiresAt).toISOString() });
        },
      );
    });

    /** The grant of a ticket (used up) whose key is still good, or undefined with a 401 sent. */
    const redeem = (reply: FastifyReply, ticket: string): Grant | undefined => {
      const grant = tickets.redeem(ticket);
      if (grant && (grant.keyId === undefined || deps.keys.active(grant.keyId))) return grant;
      void reply.code(401).send({
        error: "unauthorized",
        message: "unknown, used or expired ticket; get a new one from POST /api/live/tickets",
      });
      return undefined;
    };

    /** Opens the event stream for a redeemed ticket, or answers why not. */
    const open = (request: FastifyRequest, reply: FastifyReply, grant: Grant): Stream | undefined => {
      const mine = [...streams].filter((s) => s.grant.principal.name === grant.principal.name).length;
      if (mine >= maxPerPrincipal) {
        void reply
          .code(429)
          .send({ error: "too_many_streams", message: `at most ${maxPerPrincipal} live streams per key at once` });
        return undefined;
      }
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
        if (streams.has(stream)) setTimeout(run, options.intervalMs).unref();
      };
      void run();
    };

    app.get(
      "/api/live/fleet",
      doc({
        tag: "fleet",
        summary: "Server-sent events: the fleet's health changed",
        auth: "none",
        description: "Opened with a ticket from POST /api/live/tickets (no Authorization header).",
        query: streamQuery,
        responses: { 200: "a text/event-stream", 400: "invalid query", 401: "unknown, used or expired ticket" },
      }),
      async (request, reply) => {
        const parsed = streamQuery.safeParse(request.query);
        if (!parsed.success) return reply.code(400).send({ error: "invalid_query", message: zodMessage(parsed.error) });
        const windowMs = parsed.data.window ?? deps.health.config.window;
        const grant = redeem(reply, parsed.data.ticket);
        const stream = grant && open(request, reply, grant);
        if (!stream) return reply;
        let digest: string | undefined;
        every(stream, "fleet", async () => {
          const snap = await deps.health.snapshot(windowMs);
          if (snap.digest === digest) return;
          digest = snap.digest;
          stream.send("fleet", { computedAt: new Date(snap.computedAt).toISOString() });
        });
        return reply;
      },
    );

    app.get<{ Params: { id: string } }>(
      "/api/live/devices/:id",
      doc({
        tag: "fleet",
        summary: "Server-sent events: a device's new timeline entries, health and telemetry",
        auth: "none",
        description: "Opened with a ticket from POST /api/live/tickets (no Authorization header).",
        query: deviceStreamQuery,
        responses: {
          200: "a text/event-stream",
          400: "invalid query",
          401: "unknown, used or expired ticket",
          404: "no such device",
        },
      }),
      async (request, reply) => {
        const parsed = deviceStreamQuery.safeParse(request.query);
        if (!parsed.success) return reply.code(400).send({ error: "invalid_query", message: zodMessage(parsed.error) });
        const id = request.params.id;
        const windowMs = parsed.data.window ?? deps.health.config.window;
        // The ticket first: nobody without one makes InfluxDB work.
        const grant = redeem(reply, parsed.data.ticket);
        if (!grant) return reply;
        const first = await deps.health.device(id, windowMs);
        if (!first) return reply.code(404).send({ error: "not_found", message: `no device '${id}'` });
        const stream = open(request, reply, grant);
        if (!stream) return reply;
        const types = new Set(entryTypes);
        let after = parsed.data.after ?? Date.now() * 1000;
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
    );
  };
