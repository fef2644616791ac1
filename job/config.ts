import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { JobError } from "./errors.ts";
import { addSecret, createLogger, type Logger, type Writer } from "./log.ts";
import { HttpStore } from "./store/http-store.ts";

/**
 * Flags and environment shared by every command: the Worker (`--worker-url` / `R2_WORKER_URL`), its token
 * (`--token` / `SERVER_BYPASS_TOKEN`, the seed's names), `--json`, and the retry knobs. Parsed with
 * node:util `parseArgs` in strict mode, so a typo is a usage error (exit 2), not a silent default.
 */
export interface Io {
  stdout: Writer;
  stderr: Writer;
  env: Record<string, string | undefined>;
  /** Aborted on SIGINT/SIGTERM by the bin file; long-running commands (agent) stop on it. */
  signal?: AbortSignal;
}

/** What every command gets. */
export interface CommandContext {
  io: Io;
  env: Record<string, string | undefined>;
  logger: Logger;
}

export interface Command {
  summary: string;
  /** Usage text shown by `r2backup <command> --help`. */
  usage: string;
  run(args: string[], ctx: CommandContext): Promise<number>;
}

export const WORKER_OPTIONS = {
  "worker-url": { type: "string" },
  token: { type: "string" },
  retries: { type: "string" },
  "backoff-ms": { type: "string" },
  "timeout-ms": { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

export const COMMON_OPTIONS = {
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

export const WORKER_USAGE = `Worker:
  --worker-url <url>    the backup Worker (env R2_WORKER_URL)
  --token <token>       its token (env SERVER_BYPASS_TOKEN; prefer the env: flags show in ps)
  --retries <n>         attempts per request on network errors and 5xx (default 5)
  --backoff-ms <ms>     first retry delay, doubled each time (default 250)
  --timeout-ms <ms>     per-request timeout (default 300000)`;

/** parseArgs in strict mode; unknown flags and missing values become usage errors. */
export function parseFlags<T extends ParseArgsOptionsConfig>(args: string[], options: T, command: string) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (e) {
    throw new JobError("usage", `parse flags of '${command}': ${(e as Error).message}`, { hint: `see r2backup ${command} --help` });
  }
}

/** A whole number flag, or the default. */
export function intFlag(value: string | undefined, name: string, fallback: number, min = 0): number {
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new JobError("usage", `parse flag '--${name}': '${value}' is not a whole number >= ${min}`);
  return n;
}

/** The Worker store from flags, then environment. Never logs the token. */
export function storeFromFlags(values: { "worker-url"?: string; token?: string; retries?: string; "backoff-ms"?: string; "timeout-ms"?: string }, env: Record<string, string | undefined>, logger?: Logger): HttpStore {
  const url = values["worker-url"] ?? env.R2_WORKER_URL;
  const token = values.token ?? env.SERVER_BYPASS_TOKEN;
  if (!url) throw new JobError("usage", "configure worker url: none given", { hint: "set R2_WORKER_URL or pass --worker-url https://<your worker>" });
  if (!token) throw new JobError("usage", "configure worker token: none given", { hint: "set SERVER_BYPASS_TOKEN (the Worker's job token)" });
  addSecret(token);
  return new HttpStore({
    url,
    token,
    attempts: intFlag(values.retries ?? env.R2BACKUP_RETRIES, "retries", 5, 1),
    backoffMs: intFlag(values["backoff-ms"] ?? env.R2BACKUP_BACKOFF_MS, "backoff-ms", 250),
    timeoutMs: intFlag(values["timeout-ms"], "timeout-ms", 300_000, 1),
    ...(logger ? { onRetry: (r) => logger.warn(`retrying ${r.operation} (attempt ${r.attempt} failed: ${r.reason})`, { delayMs: r.delayMs }) } : {}),
  });
}

/** The logger of a CLI run: JSON lines unless stderr is a terminal. */
export function loggerFor(io: Io): Logger {
  return createLogger(io.stderr);
}
