import { z } from "zod";

/** Schemas of answers that several route files give; each carries the example /docs shows. */

export const isoTime = z.string().meta({ format: "date-time", example: "2026-05-04T10:00:00.000Z" });
export const idParams = z.object({ id: z.string() });

export const participation = z
  .object({
    asks: z.number().int(),
    answers: z.number().int(),
    accepted: z.number().int(),
    declined: z.number().int(),
    rate: z.number().nullable(),
  })
  .meta({ example: { asks: 4, answers: 3, accepted: 2, declined: 1, rate: 0.75 } });

/** A personalization profile: dotted keys and the values set for them. */
export const profile = z
  .record(z.string(), z.unknown())
  .meta({ example: { "ui.theme": "cool", "ui.font_size": "large" } });

export const action = z
  .object({
    id: z.string(),
    rule: z.string(),
    kind: z.string(),
    key: z.string().nullable(),
    value: z.unknown(),
    why: z.string(),
    owner: z.string(),
    device: z.string(),
    targets: z.array(z.string()),
    status: z.string(),
    createdAt: isoTime,
  })
  .loose()
  .meta({
    example: {
      id: "act_01",
      rule: "cool-theme",
      kind: "set",
      key: "ui.theme",
      value: "cool",
      why: "temperature 31 > 30",
      owner: "device:tv-1",
      device: "tv-1",
      targets: ["tv-1"],
      status: "applied",
      createdAt: "2026-05-04T10:00:00.000Z",
      transitions: [],
    },
  });

export const deviceRow = z
  .object({
    id: z.string(),
    kind: z.string().nullable(),
    subject: z.string().nullable(),
    createdAt: isoTime,
    revoked: z.boolean(),
    revokedAt: isoTime.nullable(),
    rotatedAt: isoTime.nullable(),
    online: z.boolean(),
    connections: z.number().int(),
    lastSeen: isoTime.nullable(),
  })
  .meta({
    example: {
      id: "tv-livingroom",
      kind: "tv",
      subject: null,
      createdAt: "2026-05-04T10:00:00.000Z",
      revoked: false,
      revokedAt: null,
      rotatedAt: null,
      online: true,
      connections: 1,
      lastSeen: "2026-05-04T10:05:00.000Z",
    },
  });
