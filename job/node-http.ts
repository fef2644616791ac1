/**
 * What the job uses of `node:http`, for every module of job/ (`import ... from "./node-http.ts"`; types may still
 * come from `node:http`). Not an `import` of `node:http` itself: an ESM import of a builtin reads every export,
 * and node:http's lazy `WebSocket` export then loads Node's bundled undici, 13 MiB of RSS at start-up that the
 * job never uses (issue 16). `process.getBuiltinModule` reads only these.
 */
export const { Agent, IncomingMessage, createServer, request } = process.getBuiltinModule("node:http");
