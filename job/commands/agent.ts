import { createHash, timingSafeEqual } from "node:crypto";
import { MIN_TOKEN_LENGTH } from "../../core/index.ts";
import { existsSync } from "node:fs";
import type { IncomingMessage, RequestListener, Server, ServerResponse } from "node:http";
import { backup, type BackupKind, type BackupResult } from "../backup.ts";
import { COMMON_OPTIONS, WORKER_OPTIONS, WORKER_USAGE, parseFlags, usageOf, type Command } from "../config.ts";
import { EXIT, JobError, toJobError } from "../errors.ts";
import { addSecret, redact, type BackupEvent } from "../log.ts";
import { createServer } from "../node-http.ts";
import { BACKUP_OPTIONS, BACKUP_USAGE, backupOptionsFromFlags } from "./run.ts";

/**
 * `r2backup agent`: an authenticated HTTP trigger inside the service that owns the disk (docs/design.md fact 1).
 * `POST /backup` (token `BACKUP_AGENT_TOKEN`, its own, never the Worker's) runs one backup and streams its
 * progress as NDJSON, ending with `{"type":"result","ok":...}`; a second POST while one runs gets 409.
 * `GET /health` needs no token. An app server can mount `createAgentHandler` itself (the LiveStore case).
 */

/** The final NDJSON line of `POST /backup`. */
export type AgentResult =
  | { type: "result"; ok: true; kind: string; id: string; manifestKey: string; manifest: BackupResult["manifest"]; warnings: string[]; durationMs: number; storedBytes: number }
  | { type: "result"; ok: false; error: { kind: string; message: string; exitCode: number } };

/** Constant-time token check (hashing first makes the lengths equal). */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (!given || !expected) return false;
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b) && given.length === expected.length;
}

function bearer(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (auth?.startsWith("Bearer ")) return auth.slice(7).trim();
  const header = req.headers["x-agent-token"];
  return typeof header === "string" ? header : undefined;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** A request the agent refuses before it takes the lock: its status and the API's JSON error. */
class AgentRequestError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const KINDS = new Set(["full", "incremental", "auto"]);
const MAX_REQUEST_BODY_BYTES = 64 * 1024;

/**
 * Reads and checks `POST /backup` within `timeoutMs` and 64 KiB: the kind from `?kind=` or the JSON body
 * (`{}` or `{"kind": ...}`; both must agree), `auto` when neither says. Done before the lock is taken, so a
 * slow or malformed client never holds it.
 */
async function readBackupRequest(req: IncomingMessage, url: URL, timeoutMs: number): Promise<BackupKind> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new AgentRequestError(408, "request_timeout", `POST /backup: the request body did not arrive within ${timeoutMs} ms`)), timeoutMs);
  });
  const read = (async () => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.byteLength;
      if (size > MAX_REQUEST_BODY_BYTES)
        throw new AgentRequestError(
          413,
          "payload_too_large",
          `POST /backup: the body is over ${MAX_REQUEST_BODY_BYTES} bytes (expected {"kind": "full" | "incremental" | "auto"})`,
        );
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString("utf8");
  })();
  let text: string;
  try {
    text = await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer);
    read.catch(() => undefined);
  }
  const bad = (reason: string) => new AgentRequestError(400, "bad_request", `POST /backup: ${reason}`);
  let bodyKind: unknown;
  if (text.trim()) {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw bad(`the body is not JSON (expected {"kind": "full" | "incremental" | "auto"} or nothing)`);
    }
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw bad(`the body is ${body === null ? "null" : Array.isArray(body) ? "an array" : `a ${typeof body}`}, expected an object like {"kind": "full"}`);
    bodyKind = (body as { kind?: unknown }).kind;
  }
  const queryKind = url.searchParams.get("kind") ?? undefined;
  for (const k of [queryKind, bodyKind]) {
    if (k !== undefined && !(typeof k === "string" && KINDS.has(k))) throw bad(`kind '${String(k).slice(0, 40)}' is not full, incremental or auto`);
  }
  if (queryKind !== undefined && bodyKind !== undefined && queryKind !== bodyKind) throw bad(`?kind=${queryKind} and the body's kind '${String(bodyKind)}' disagree`);
  return ((queryKind ?? bodyKind) as BackupKind | undefined) ?? "auto";
}

/**
 * The agent's request handler: one backup at a time, progress streamed as NDJSON. The request is
 * authenticated, read and checked (within `requestTimeoutMs`, default 10 s) before the lock is taken.
 */
export function createAgentHandler(options: {
  token: string;
  previousToken?: string;
  requestTimeoutMs?: number;
  run: (kind: BackupKind, onEvent: (e: BackupEvent) => void) => Promise<BackupResult>;
}): RequestListener & { running(): boolean } {
  if (!options.token) throw new JobError("usage", "start agent: no token", { hint: "set BACKUP_AGENT_TOKEN (a secret only the agent and the trigger know)" });
  addSecret(options.token);
  addSecret(options.previousToken);
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  let running = false;
  const handler = (async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://agent");
    const path = url.pathname;
    try {
      if (path === "/health" && (req.method === "GET" || req.method === "HEAD")) return sendJson(res, 200, { ok: true, running });
      if (path !== "/backup") return sendJson(res, 404, { error: "not_found", message: `request '${path}': not found (POST /backup, GET /health)` });
      if (req.method !== "POST") return sendJson(res, 405, { error: "method_not_allowed", message: "POST /backup" });
      // During a rotation (BACKUP_AGENT_TOKEN_PREVIOUS set) the old token is accepted too, so a cron job not
      // yet redeployed keeps working; the deploy removes the old one once every trigger has the new one.
      const given = bearer(req);
      if (!tokenMatches(given, options.token) && !(options.previousToken && tokenMatches(given, options.previousToken)))
        return sendJson(res, 401, { error: "unauthorized", message: "POST /backup: missing or wrong agent token (BACKUP_AGENT_TOKEN)" });
      let kind: BackupKind;
      try {
        kind = await readBackupRequest(req, url, requestTimeoutMs);
      } catch (e) {
        if (!(e instanceof AgentRequestError)) throw e;
        // The rest of a refused body is not worth reading: answer, then close the connection.
        res.setHeader("connection", "close");
        res.once("finish", () => req.destroy());
        return sendJson(res, e.status, { error: e.code, message: e.message });
      }
      if (running) return sendJson(res, 409, { error: "busy", message: "POST /backup: a backup is already running" });
      running = true;
      try {
        res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
        const line = (value: unknown) => {
          // The stream leaves the process: whatever a Worker or proxy echoed, no secret goes with it.
          if (!res.destroyed) res.write(`${redact(JSON.stringify(value))}\n`);
        };
        let last = 0;
        let result: AgentResult;
        try {
          const r = await options.run(kind, (e) => {
            // Progress is throttled to a line a second; log lines always go through.
            if (e.type === "progress" && !(e.total !== undefined && e.bytes >= e.total) && Date.now() - last < 1000) return;
            if (e.type === "progress") last = Date.now();
            line(e);
          });
          result = {
            type: "result",
            ok: true,
            kind: r.kind,
            id: r.id,
            manifestKey: r.manifestKey,
            manifest: r.manifest,
            warnings: r.warnings,
            durationMs: r.durationMs,
            storedBytes: r.storedBytes,
          };
        } catch (e) {
          const error = toJobError(e, "run");
          result = { type: "result", ok: false, error: { kind: error.kind, message: error.kind === "failed" ? (e as Error).message : error.message, exitCode: error.exitCode } };
        }
        line(result);
        res.end();
      } finally {
        running = false;
      }
    } catch (e) {
      // Client mistakes were answered above: what is left is the agent's own failure.
      if (!res.headersSent) sendJson(res, 500, { error: "internal_error", message: redact(`POST /backup: ${(e as Error).message}`) });
      else res.end();
    }
  }) as unknown as RequestListener & { running(): boolean };
  handler.running = () => running;
  return handler;
}

/** Parses `--listen`: `host:port`, `:port` or `port` (host defaults to 127.0.0.1). */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]*):)?(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535))
    throw new JobError("usage", `parse flag '--listen': '${value}' is not host:port`, { hint: "e.g. --listen 0.0.0.0:8788 (Render's private network) or --listen 127.0.0.1:8788" });
  const host = m[1] ? m[1].replace(/^\[|\]$/g, "") : "127.0.0.1";
  return { host, port };
}

/** Starts a server and resolves with its URL once listening. */
export async function listen(server: Server, host: string, port: number): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const actual = typeof addr === "object" && addr ? addr.port : port;
  return `http://${host.includes(":") ? `[${host}]` : host}:${actual}`;
}

const AGENT_OPTIONS = { listen: { type: "string" } } as const;
/** Loopback unless told otherwise: the agent is reachable only where it is meant to be. */
const DEFAULT_LISTEN = "127.0.0.1:8788";

export const agentCommand: Command = {
  usage: `r2backup agent --listen <host:port> --db <path> [backup options]\n\n${usageOf(AGENT_OPTIONS, {
    listen: { arg: "<host:port>", text: "where to listen (e.g. 0.0.0.0:8788 on Render's private network)", fallback: DEFAULT_LISTEN },
  })}\n  Token: BACKUP_AGENT_TOKEN (required; the trigger sends it); during a rotation BACKUP_AGENT_TOKEN_PREVIOUS too\n\n${BACKUP_USAGE}\n\n${WORKER_USAGE}`,
  async run(args, ctx) {
    const { values } = parseFlags(args, { ...BACKUP_OPTIONS, ...WORKER_OPTIONS, ...COMMON_OPTIONS, ...AGENT_OPTIONS }, "agent");
    if (values.help) {
      ctx.io.stdout.write(`${this.usage}\n`);
      return 0;
    }
    const token = ctx.env.BACKUP_AGENT_TOKEN ?? "";
    if (!token) throw new JobError("usage", "start agent: BACKUP_AGENT_TOKEN is not set", { hint: "set BACKUP_AGENT_TOKEN to a long random secret shared with the trigger" });
    const previousToken = ctx.env.BACKUP_AGENT_TOKEN_PREVIOUS || undefined;
    // The token is all that stands between the network and a backup run (and short ones are not masked in logs).
    if (token.length < MIN_TOKEN_LENGTH) {
      throw new JobError("usage", `start agent: BACKUP_AGENT_TOKEN is ${token.length} characters`, {
        hint: `use at least ${MIN_TOKEN_LENGTH} random characters, e.g. openssl rand -hex 32 (pulumi up generates 48)`,
      });
    }
    const { host, port } = parseListen(values.listen ?? DEFAULT_LISTEN);
    const base = await backupOptionsFromFlags(values, ctx);
    // The previous token only lives through a rotation, which is what replaces a short one: a warning.
    if (previousToken !== undefined && previousToken.length < MIN_TOKEN_LENGTH) {
      ctx.logger.warn(`agent: BACKUP_AGENT_TOKEN_PREVIOUS is ${previousToken.length} characters; it is accepted until the rotation ends`);
    }
    for (const d of base.databases ?? []) {
      if (d.path !== undefined && !existsSync(d.path))
        ctx.logger.warn(`agent: database '${d.path}' does not exist yet; a backup fails with exit 3 until it does`, { path: d.path });
    }
    const handler = createAgentHandler({
      token,
      ...(previousToken ? { previousToken } : {}),
      run: (kind, onEvent) =>
        backup({
          ...base,
          kind,
          onEvent: (e) => {
            ctx.logger.event(e);
            onEvent(e);
          },
        }),
    });
    // Node's own limits on a request's arrival (60 s headers, 300 s whole request) are far longer than the
    // agent needs; the handler reads the body within 10 s, these bound the headers and the socket.
    const server = createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, handler);
    const url = await listen(server, host, port).catch((e: unknown) => {
      const code = (e as NodeJS.ErrnoException).code;
      const why =
        code === "EADDRINUSE"
          ? ["is already in use", "another process listens there (an agent already running?); stop it or pick another --listen port"]
          : code === "EADDRNOTAVAIL"
            ? ["is not an address of this machine", "use 0.0.0.0:<port> (every interface) or 127.0.0.1:<port>"]
            : code === "EACCES"
              ? ["needs privileges this process lacks", "use a port above 1023"]
              : undefined;
      if (!why) throw e;
      throw new JobError("usage", `start agent: --listen ${host}:${port} ${why[0]} (${code})`, { hint: why[1]! });
    });
    ctx.logger.info(`agent listening on ${url}`, { url });
    ctx.io.stdout.write(`agent listening on ${url}\n`);
    await new Promise<void>((resolve) => {
      if (ctx.io.signal?.aborted) return resolve();
      ctx.io.signal?.addEventListener("abort", () => resolve(), { once: true });
      server.once("close", () => resolve());
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return EXIT.ok;
  },
};
