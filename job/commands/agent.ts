import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from "node:http";
import { backup, type BackupKind, type BackupResult } from "../backup.ts";
import { COMMON_OPTIONS, WORKER_OPTIONS, WORKER_USAGE, parseFlags, type Command } from "../config.ts";
import { EXIT, JobError, exitCodeOf } from "../errors.ts";
import { addSecret, redact, type BackupEvent } from "../log.ts";
import { BACKUP_OPTIONS, BACKUP_USAGE, backupOptionsFromFlags } from "./run.ts";

/**
 * `r2backup agent`: an authenticated HTTP trigger inside the service that owns the disk (DESIGN.md fact 1).
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

async function readBody(req: IncomingMessage, max = 64 * 1024): Promise<string> {
  let text = "";
  for await (const chunk of req) {
    text += chunk;
    if (text.length > max) throw new Error("body too large");
  }
  return text;
}

/** The agent's request handler: one backup at a time, progress streamed as NDJSON. */
export function createAgentHandler(options: { token: string; run: (kind: BackupKind, onEvent: (e: BackupEvent) => void) => Promise<BackupResult> }): RequestListener & { running(): boolean } {
  if (!options.token) throw new JobError("usage", "start agent: no token", { hint: "set BACKUP_AGENT_TOKEN (a secret only the agent and the trigger know)" });
  addSecret(options.token);
  let running = false;
  const handler = (async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://agent").pathname;
    try {
      if (path === "/health" && (req.method === "GET" || req.method === "HEAD")) return sendJson(res, 200, { ok: true, running });
      if (path !== "/backup") return sendJson(res, 404, { error: "not_found", message: `request '${path}': not found (POST /backup, GET /health)` });
      if (req.method !== "POST") return sendJson(res, 405, { error: "method_not_allowed", message: "POST /backup" });
      if (!tokenMatches(bearer(req), options.token)) return sendJson(res, 401, { error: "unauthorized", message: "POST /backup: missing or wrong agent token (BACKUP_AGENT_TOKEN)" });
      if (running) return sendJson(res, 409, { error: "busy", message: "POST /backup: a backup is already running" });
      running = true;
      try {
        let kind: BackupKind = "auto";
        const text = await readBody(req);
        if (text.trim()) {
          const body = JSON.parse(text) as { kind?: unknown };
          if (body.kind !== undefined && body.kind !== "full" && body.kind !== "incremental" && body.kind !== "auto") {
            return sendJson(res, 400, { error: "bad_request", message: `POST /backup: kind '${String(body.kind)}' is not full, incremental or auto` });
          }
          kind = (body.kind as BackupKind | undefined) ?? "auto";
        }
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
          result = { type: "result", ok: true, kind: r.kind, id: r.id, manifestKey: r.manifestKey, manifest: r.manifest, warnings: r.warnings, durationMs: r.durationMs, storedBytes: r.storedBytes };
        } catch (e) {
          result = { type: "result", ok: false, error: { kind: e instanceof JobError ? e.kind : "failed", message: (e as Error).message, exitCode: exitCodeOf(e) } };
        }
        line(result);
        res.end();
      } finally {
        running = false;
      }
    } catch (e) {
      if (!res.headersSent) sendJson(res, 400, { error: "bad_request", message: (e as Error).message });
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
  if (!m || !(port >= 0 && port <= 65535)) throw new JobError("usage", `parse flag '--listen': '${value}' is not host:port`, { hint: "e.g. --listen 0.0.0.0:8788 (Render's private network) or --listen 127.0.0.1:8788" });
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

export const agentCommand: Command = {
  summary: "serve POST /backup (token BACKUP_AGENT_TOKEN) inside the service that owns the database",
  usage: `r2backup agent --listen <host:port> --db <path> [backup options]\n\n  --listen <host:port>  where to listen (e.g. 0.0.0.0:8788 on Render's private network)\n  Token: BACKUP_AGENT_TOKEN (required; the trigger sends it)\n\n${BACKUP_USAGE}\n\n${WORKER_USAGE}`,
  async run(args, ctx) {
    const { values } = parseFlags(args, { ...BACKUP_OPTIONS, ...WORKER_OPTIONS, ...COMMON_OPTIONS, listen: { type: "string" } }, "agent");
    if (values.help) {
      ctx.io.stdout.write(`${this.usage}\n`);
      return 0;
    }
    const token = ctx.env.BACKUP_AGENT_TOKEN ?? "";
    if (!token) throw new JobError("usage", "start agent: BACKUP_AGENT_TOKEN is not set", { hint: "set BACKUP_AGENT_TOKEN to a long random secret shared with the trigger" });
    const { host, port } = parseListen(values.listen ?? "127.0.0.1:8788");
    const base = await backupOptionsFromFlags(values, ctx);
    const handler = createAgentHandler({
      token,
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
    const server = createServer(handler);
    const url = await listen(server, host, port);
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
