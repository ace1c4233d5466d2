import type { FastifyPluginAsync } from "fastify";
import type { ServerResponse } from "node:http";
import type { Registry } from "../../registry/index.ts";
import { z } from "zod";
import { AuthError, deviceOf, type Authenticator } from "../../auth/index.ts";
import { defineRoute } from "../route.ts";
import { idParams } from "../schemas.ts";

export interface StreamDeps {
  registry: Registry;
  auth: Authenticator;
  /** Follows a broker topic (what MQTT subscribers of it get); resolves with a function that stops. */
  follow(topic: string, onMessage: (payload: Buffer) => void): Promise<() => Promise<void>>;
  /** The retained state a device would get on subscribe, as its JSON payload. */
  stateOf(device: string): string;
  /** Actions the device has not confirmed yet, oldest first. */
  pendingFor(device: string): Array<{ id: string; payload: string }>;
  /** Seconds between keep-alive comments. */
  heartbeatMs?: number;
}

const actionIdOf = (payload: string): string | undefined => {
  try {
    const id = (JSON.parse(payload) as { id?: unknown }).id;
    return typeof id === "string" ? id : undefined;
  } catch {
    return undefined;
  }
};

/**
 * Server-sent events for apps that cannot speak MQTT: `GET
 * /api/devices/{id}/stream` with the device's token streams its `state`
 * (at once, then on every change) and its `action`s: everything still pending
 * first, then new ones. SSE has no PUBACK, so an action stays pending until
 * the app acks it (`POST /api/ingest/acks`) and is sent again on the next
 * stream; apps de-duplicate by the event id, which is the action id.
 */
export const streamRoutes =
  (deps: StreamDeps): FastifyPluginAsync =>
  async (app) => {
    const open = new Set<ServerResponse>();
    // fastify's close() waits for open responses; end the streams first so a shutdown never hangs.
    app.addHook("preClose", async () => {
      for (const res of open) res.end('event: bye\ndata: {"reason":"server_shutdown"}\n\n');
    });
    const stopWatching = deps.registry.onChange((change) => {
      if (change.op === "provisioned") return;
      for (const res of open)
        if ((res as ServerResponse & { device?: string }).device === change.device)
          res.end(
            `event: bye\ndata: ${JSON.stringify({ reason: change.op === "revoked" ? "revoked" : "token_rotated" })}\n\n`,
          );
    });
    app.addHook("onClose", async () => stopWatching());

    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/api/devices/:id/stream",
      tag: "devices",
      summary: "Server-sent events of a device's state and actions",
      description:
        "For apps that cannot speak MQTT: `event: state` at once and on every change, `event: action` for everything pending and then every new action (the event id is the action id). An action stays pending until acked with POST /api/ingest/acks.",
      auth: "device",
      params: idParams,
      responses: {
        200: {
          description: "a text/event-stream",
          types: {
            "text/event-stream": z
              .string()
              .meta({ example: 'retry: 2000\n\nevent: state\ndata: {"ui.theme":"cool"}\n\n' }),
          },
        },
      },
      async handler(request, reply) {
        const device = await deviceOf(request, (token) => deps.registry.authenticateBearer(token));
        if (device !== request.params.id)
          throw new AuthError("FORBIDDEN", "a device token streams its own device only");

        reply.hijack();
        const res = Object.assign(reply.raw, { device });
        res.writeHead(200, {
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-cache",
          "x-accel-buffering": "no",
        });
        const sent = new Set<string>();
        const action = (payload: string) => {
          const id = actionIdOf(payload);
          if (id === undefined || sent.has(id)) return;
          sent.add(id);
          res.write(`event: action\nid: ${id}\ndata: ${payload}\n\n`);
        };
        const state = (payload: string) => res.write(`event: state\ndata: ${payload}\n\n`);
        open.add(res);
        // Follow first, then send what is pending: nothing published in between is missed (repeats are skipped).
        const stops = await Promise.all([
          deps.follow(`devices/${device}/actions`, (p) => action(p.toString("utf8"))),
          deps.follow(`devices/${device}/state`, (p) => p.length > 0 && state(p.toString("utf8"))),
        ]);
        const heartbeat = setInterval(() => res.write(": keep-alive\n\n"), deps.heartbeatMs ?? 15_000);
        const done = () => {
          clearInterval(heartbeat);
          open.delete(res);
          for (const stop of stops) void stop();
        };
        res.once("close", done);
        if (res.writableEnded || res.destroyed) return done();
        res.write("retry: 2000\n\n");
        state(deps.stateOf(device));
        for (const pending of deps.pendingFor(device)) action(pending.payload);
        request.log.debug({ device }, "event stream opened");
      },
    });
  };
