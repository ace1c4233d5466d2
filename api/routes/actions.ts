import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { z } from "zod";
import { AuthError, ownsSubject, type Authenticator } from "../../auth/index.ts";
import { ActionError, type ActionRecord, type Actions } from "../../actions/index.ts";
import { errorBody } from "../errors.ts";
import { defineRoute } from "../route.ts";
import { action, idParams, participation } from "../schemas.ts";
import { isAbout, publicAction } from "./subjects.ts";

const answered = z
  .object({ id: z.string(), status: z.string() })
  .meta({ example: { id: "act_01", status: "accepted" } });
const noAction = { description: "no such action (or not the caller's)", schema: errorBody };

/**
 * Actions with their lifecycle, answers, undo, and how much customers take
 * part. A subject token reaches the actions about its own subject only; any
 * other action is "not found" to it, so ids of others' actions reveal nothing.
 */
export const actionRoutes =
  (deps: { actions: Actions; auth: Authenticator }): FastifyPluginAsync =>
  (app) => {
    /** The action, if the caller may see it (`change`: may act on it). */
    const find = (request: FastifyRequest<{ Params: { id: string } }>, change: boolean): ActionRecord => {
      const record = deps.actions.get(request.params.id);
      const principal = request.principal;
      const mine =
        record && principal?.role === "subject"
          ? change
            ? record.owner === `subject:${principal.subject}`
            : isAbout(record, principal.subject)
          : true;
      if (!record || !mine) throw new ActionError("ACTION_NOT_FOUND", `no action '${request.params.id}'`);
      return record;
    };
    const by = (request: FastifyRequest) => request.principal?.name ?? "unknown";

    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/api/actions/:id",
      tag: "actions",
      summary: "An action with its lifecycle and why",
      description: "A subject token sees actions about its own subject only; any other id is 404.",
      auth: ["product", "support", "subject"],
      params: idParams,
      responses: { 200: { description: "the action", schema: action }, 404: noAction },
      handler: (request) => publicAction(find(request, false), request.principal),
    });
    for (const [verb, status] of [
      ["accept", "accepted"],
      ["decline", "declined"],
    ] as const) {
      defineRoute(app, deps.auth, {
        method: "POST",
        url: `/api/actions/:id/${verb}`,
        tag: "actions",
        summary: `${verb === "accept" ? "Accept" : "Decline"} a suggestion`,
        description:
          "The customer's answer, as if given on the device; an accepted suggestion is applied on every touchpoint.",
        auth: ["subject"],
        params: idParams,
        responses: {
          200: { description: "`{id, status}`", schema: answered },
          404: noAction,
          409: { description: "the action is not an open suggestion", schema: errorBody },
        },
        async handler(request) {
          const record = find(request, true);
          const done = await deps.actions.answer(record.id, status, by(request));
          return { id: done.id, status: done.status };
        },
      });
    }
    defineRoute(app, deps.auth, {
      method: "POST",
      url: "/api/actions/:id/undo",
      tag: "actions",
      summary: "Undo an action",
      description: "Restores the previous value everywhere the action set it.",
      auth: ["subject"],
      params: idParams,
      responses: {
        200: { description: "`{id, status}`", schema: answered },
        404: noAction,
        409: { description: "the action is not in effect", schema: errorBody },
      },
      async handler(request) {
        const record = find(request, true);
        const undone = await deps.actions.undo(record.id, by(request));
        return { id: undone.id, status: undone.status };
      },
    });

    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/api/subjects/:id/participation",
      tag: "actions",
      summary: "A customer's participation: answers / asks",
      auth: ["product", "support", "subject"],
      params: idParams,
      responses: { 200: { description: "answers, asks and their rate", schema: participation } },
      handler(request) {
        if (!ownsSubject(request.principal, request.params.id))
          throw new AuthError("FORBIDDEN", "a subject token acts on its own subject only");
        return deps.actions.participation(`subject:${request.params.id}`);
      },
    });
    defineRoute(app, deps.auth, {
      method: "GET",
      url: "/api/devices/:id/participation",
      tag: "actions",
      summary: "A device's participation: answers / asks",
      auth: ["product", "support"],
      params: idParams,
      responses: { 200: { description: "answers, asks and their rate", schema: participation } },
      handler: (request) => deps.actions.participation(`device:${request.params.id}`),
    });
    return Promise.resolve();
  };
