import { createHash } from "node:crypto";
import type { Line } from "./lineprotocol.ts";

/**
 * The on-disk frame of one batch, shared by the spool and the commit log:
 * u32 body length, u32 line count, u32 checksum (first 4 bytes of the body's
 * SHA-256), then the body: the batch's lines as a JSON array (a line may hold
 * a newline inside a quoted string, so lines cannot simply be joined).
 */
export const HEADER = 12;

export const checksum = (body: Buffer) => createHash("sha256").update(body).digest().readUInt32BE(0);

export function encodeFrame(lines: readonly Line[]): Buffer {
  const body = Buffer.from(JSON.stringify(lines), "utf8");
  const header = Buffer.allocUnsafe(HEADER);
  header.writeUInt32BE(body.length, 0);
  header.writeUInt32BE(lines.length, 4);
  header.writeUInt32BE(checksum(body), 8);
  return Buffer.concat([header, body]);
}

/** The whole, undamaged frame at `offset`, or undefined (torn by a crash mid-append, or damaged). */
export function frameAt(data: Buffer, offset: number): { size: number; points: number; body: Buffer } | undefined {
  if (offset + HEADER > data.length) return undefined;
  const length = data.readUInt32BE(offset);
  if (offset + HEADER + length > data.length) return undefined;
  const body = data.subarray(offset + HEADER, offset + HEADER + length);
  if (checksum(body) !== data.readUInt32BE(offset + 8)) return undefined;
  return { size: HEADER + length, points: data.readUInt32BE(offset + 4), body };
}

export const decodeBody = (body: Buffer) => JSON.parse(body.toString("utf8")) as Line[];
