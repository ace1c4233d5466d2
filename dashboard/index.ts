import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";

/**
 * The page may only load its own files and talk to its own API: a support key
 * sits in sessionStorage, so no script, style or connection from elsewhere.
 */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const HEADERS: Array<[string, string]> = [
  ["content-security-policy", CSP],
  ["x-content-type-options", "nosniff"],
  ["referrer-policy", "no-referrer"],
  ["x-frame-options", "DENY"],
];
const secure = (reply: FastifyReply) => {
  for (const [name, value] of HEADERS) reply.header(name, value);
};

/** `/dashboard` sends the browser to the page's folder, where relative URLs resolve. */
export const redirectToDashboard = (_request: FastifyRequest, reply: FastifyReply) => reply.redirect("dashboard/", 301);

/**
 * The support dashboard's files (api/ registers and documents `/dashboard` itself, so this part needs nothing of it): plain HTML, CSS and ES modules from dashboard/public,
 * and uPlot straight from its npm package, so nothing is built and nothing
 * built is committed. Files are answered with ETags and revalidated, so a new
 * version is picked up at once and an unchanged one costs a 304.
 */
export const dashboardRoutes = (): FastifyPluginAsync => async (app) => {
  const root = fileURLToPath(new URL("./public/", import.meta.url));
  const uplot = path.dirname(createRequire(import.meta.url).resolve("uplot/dist/uPlot.iife.min.js"));
  await app.register(fastifyStatic, {
    root,
    prefix: "/dashboard/",
    index: "index.html",
    wildcard: false,
    cacheControl: true,
    maxAge: 0,
    setHeaders: secure,
  });
  await app.register(fastifyStatic, {
    root: uplot,
    prefix: "/dashboard/vendor/",
    wildcard: false,
    decorateReply: false,
    index: false,
    maxAge: 0,
    setHeaders: secure,
  });
};
