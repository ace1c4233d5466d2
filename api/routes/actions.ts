import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { ActionError, type ActionRecord, type Actions } from "../../actions/index.ts";
import { ownsSubject, requireRole, type Authenticator } from "../../auth/index.ts";
import { isAbout, publicAction } from "./subjects.ts";
import { doc } from "../openapi.ts";

/**
 * Actions with their lifecycle, answers, undo, and how much customers take
 * part. A subject token reaches the actions about its own subject only; any
 * other action is "not found" to it, so ids of others' actions reveal nothing.
 */
export const actionRoutes =
  (deps: { actions: Actions; auth: Authenticator }): FastifyPluginAsync =>
  async (app) => {
    /** The action, if the caller may see it (`change`: may act on it); otherwise the reply is sent. */
    const find = (
      request: FastifyRequest<{ Params: { id: string } }>,
      reply: FastifyReply,
      change: boolean,
    ): ActionRecord | undefined => {
      const record = deps.actions.get(request.params.id);
      const principal = request.principal;
      const mine =
        record && principal?.role === "subject"
          ? change
            ? record.owner === `subject:${principal.subject}`
            : isAbout(record, principal.subject)
          : true;
      if (!record || !mine) {
        void reply.code(404).send({ error: "action_not_found", message: `no action '${request.params.id}'` });
        return undefined;
      }
      return record;
    };
    const failed = (reply: FastifyReply, err: unknown) => {
      if (err instanceof ActionError)
        return reply
          .code(err.code === "ACTION_NOT_FOUND" ? 404 : 409)
          .send({ error: err.code.toLowerCase(), message: err.message });
      throw err;
    };
    const by = (request: FastifyRequest) => request.principal?.name ?? "unknown";

    app.get<{ Params: { id: string } }>(
      "/api/actions/:id",
      {
        onRequest: requireRole(deps.auth, "product", "support", "subject"),
        ...doc({
          tag: "actions",
          summary: "An action with its lifecycle and why",
          description: "A subject token sees actions about its own subject only; any other id is 404.",
          auth: ["product", "support", "subject"],
          responses: { 200: "OK", 404: "no such action (or not the caller's)" },
        }),
      },
      async (request, reply) => {
        const record = find(request, reply, false);
        return record ? publicAction(record, request.principal) : reply;
      },
    );
    for (const [verb, status] of [
      ["accept", "accepted"],
      ["decline", "declined"],
    ] as const) {
      app.post<{ Params: { id: string } }>(
        `/api/actions/:id/${verb}`,
        {
          onRequest: requireRole(deps.auth, "subject"),
          ...doc({
            tag: "actions",
            summary: `${verb === "accept" ? "Accept" : "Decline"} a suggestion`,
            description:
              "The customer's answer, as if given on the device; an accepted suggestion is applied on every touchpoint.",
            auth: ["subject"],
            responses: {
              200: "`{id, status}`",
              404: "no such action (or not the caller's)",
              409: "the action is not an open suggestion",
            },
          }),
        },
        async (request, reply) => {
          const record = find(request, reply, true);
          if (!record) return reply;
          try {
            const answered = await deps.actions.answer(record.id, status, by(request));
            return { id: answered.id, status: answered.status };
          } catch (err) {
            return failed(reply, err);
          }
        },
      );
    }
    app.post<{ Params: { id: string } }>(
      "/api/actions/:id/undo",
      {
        onRequest: requireRole(deps.auth, "subject"),
        ...doc({
          tag: "actions",
          summary: "Undo an action",
          description: "Restores the previous value everywhere the action set it.",
          auth: ["subject"],
          responses: {
            200: "`{id, status}`",
            404: "no such action (or not the caller's)",
            409: "the action is not in effect",
          },
        }),
      },
      async (request, reply) => {
        const record = find(request, reply, true);
        if (!record) return reply;
        try {
          const undone = await deps.actions.undo(record.id, by(request));
          return { id: undone.id, status: undone.status };
        } catch (err) {
          return failed(reply, err);
        }
      },
    );

    app.get<{ Params: { id: string } }>(
      "/api/subjects/:id/participation",
      {
        onRequest: requireRole(deps.auth, "product", "support", "subject"),
        ...doc({
          tag: "actions",
          summary: "A customer's participation: answers / asks",
          auth: ["product", "support", "subject"],
        }),
      },
      async (request, reply) => {
        if (!ownsSubject(request.principal, request.params.id))
          return reply.code(403).send({ error: "forbidden", message: "a subject token acts on its own subject only" });
        return deps.actions.participation(`subject:${request.params.id}`);
      },
    );
    app.get<{ Params: { id: string } }>(
      "/api/devices/:id/participation",
      {
        onRequest: requireRole(deps.auth, "product", "support"),
        ...doc({ tag: "actions", summary: "A device's participation: answers / asks", auth: ["product", "support"] }),
      },
      async (request) => deps.actions.participation(`device:${request.params.id}`),
    );
  };
