import { mkdir, mkdtemp, rmdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { JobError } from "./errors.ts";
import { addSecret, type Logger, type Writer } from "./log.ts";
import { DirStore } from "./store/dir-store.ts";
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
  /** Aborted on SIGINT/SIGTERM by the bin file: the store stops every request on it, the agent its server. */
  signal?: AbortSignal;
}

/** What every command gets. */
export interface CommandContext {
  io: Io;
  env: Record<string, string | undefined>;
  logger: Logger;
}

/** A command of the CLI (its one-line summary is in commands/index.ts, which loads it). */
export interface Command {
  /** Usage text shown by `r2backup <command> --help`. */
  usage: string;
  run(args: string[], ctx: CommandContext): Promise<number>;
}

export const WORKER_OPTIONS = {
  "worker-url": { type: "string" },
  dir: { type: "string" },
  token: { type: "string" },
  retries: { type: "string" },
  "backoff-ms": { type: "string" },
  "timeout-ms": { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

export const COMMON_OPTIONS = {
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

/** The help of one flag: `--help` is generated from these and the defaults the code itself uses. */
export interface FlagHelp {
  /** The argument's placeholder, e.g. `<url>` or `full|quick` (none for a boolean). */
  arg?: string;
  text: string;
  env?: string;
  fallback?: string | number;
}

/**
 * The help lines of a set of flags, in the options' order. Typed so that every flag has its help: a flag
 * added without one does not compile, and a default is written once, where the code reads it.
 */
export function usageOf<T extends ParseArgsOptionsConfig>(options: T, help: { [K in keyof T]: FlagHelp }): string {
  return Object.keys(options)
    .map((name) => {
      const h = help[name as keyof T];
      const flag = `  --${name}${h.arg ? ` ${h.arg}` : ""}`;
      const extra = [h.env ? `env ${h.env}` : "", h.fallback !== undefined ? `default ${h.fallback}` : ""].filter(Boolean).join("; ");
      return wrap(`${h.text}${extra ? ` (${extra})` : ""}`, flag);
    })
    .join("\n");
}

const HELP_INDENT = 28;
const HELP_WIDTH = 110;

/** A flag and its text, the text wrapped at word boundaries in a column of its own. */
function wrap(text: string, flag: string): string {
  const lines: string[] = [];
  let line = flag.length >= HELP_INDENT ? `${flag}\n${" ".repeat(HELP_INDENT)}` : flag.padEnd(HELP_INDENT);
  let width = line.length - line.lastIndexOf("\n") - 1;
  for (const word of text.split(" ")) {
    if (width > HELP_INDENT && width + 1 + word.length > HELP_WIDTH) {
      lines.push(line);
      line = " ".repeat(HELP_INDENT);
      width = HELP_INDENT;
    }
    line += width > HELP_INDENT ? ` ${word}` : word;
    width += (width > HELP_INDENT ? 1 : 0) + word.length;
  }
  lines.push(line);
  return lines.join("\n");
}

/** Retries after the first attempt of a request to the Worker (--retries), and the waits between them. */
export const DEFAULT_RETRIES = 4;
export const DEFAULT_BACKOFF_MS = 250;
/** Per-request timeout: a 95 MiB part on a slow link. */
export const DEFAULT_TIMEOUT_MS = 300_000;

export const WORKER_USAGE = `Worker:\n${usageOf(WORKER_OPTIONS, {
  "worker-url": { arg: "<url>", text: "the backup Worker", env: "R2_WORKER_URL" },
  dir: {
    arg: "<path>",
    text: "a local directory laid out as the bucket (backups/...) instead of the Worker: a copy of the bucket to restore from (rclone sync), or a volume to back up to",
    env: "R2BACKUP_DIR",
  },
  token: { arg: "<token>", text: "its token (prefer the env: flags show in ps)", env: "SERVER_BYPASS_TOKEN" },
  retries: { arg: "<n>", text: "retries after a request's first attempt, on network errors, 5xx and answers cut off mid-body", env: "R2BACKUP_RETRIES", fallback: DEFAULT_RETRIES },
  "backoff-ms": { arg: "<ms>", text: "first retry delay, doubled each time", env: "R2BACKUP_BACKOFF_MS", fallback: DEFAULT_BACKOFF_MS },
  "timeout-ms": { arg: "<ms>", text: "per-request timeout", fallback: DEFAULT_TIMEOUT_MS },
})}`;

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

/**
 * The store from flags, then environment: a directory (`--dir` / `R2BACKUP_DIR`) or the Worker (`--worker-url` /
 * `R2_WORKER_URL`); a flag beats the environment, and two flags naming both are a usage error. A directory's
 * owner can delete its files anyway, so it is opened with the admin role. Never logs the token.
 */
export function storeFromFlags(
  values: { "worker-url"?: string; dir?: string; token?: string; retries?: string; "backoff-ms"?: string; "timeout-ms"?: string },
  env: Record<string, string | undefined>,
  logger?: Logger,
  signal?: AbortSignal,
): HttpStore | DirStore {
  if (values.dir !== undefined && values["worker-url"] !== undefined) {
    throw new JobError("usage", "configure store: both --dir and --worker-url given", { hint: "pass one: --dir <directory> or --worker-url <url>" });
  }
  const dir = values.dir ?? (values["worker-url"] === undefined ? env.R2BACKUP_DIR : undefined);
  if (dir !== undefined) return new DirStore({ root: dir, admin: true, ...(signal ? { signal } : {}) });
  const url = values["worker-url"] ?? env.R2_WORKER_URL;
  const token = values.token ?? env.SERVER_BYPASS_TOKEN;
  if (!url)
    throw new JobError("usage", "configure worker url: none given", {
      hint: "set R2_WORKER_URL or pass --worker-url https://<your worker> (or --dir <directory> for a local copy of the bucket)",
    });
  if (!token) throw new JobError("usage", "configure worker token: none given", { hint: "set SERVER_BYPASS_TOKEN (the Worker's job token)" });
  addSecret(token);
  return new HttpStore({
    url,
    token,
    // --retries counts retries, as trigger's does: --retries 0 is one attempt.
    attempts: intFlag(values.retries ?? env.R2BACKUP_RETRIES, "retries", DEFAULT_RETRIES, 0) + 1,
    backoffMs: intFlag(values["backoff-ms"] ?? env.R2BACKUP_BACKOFF_MS, "backoff-ms", DEFAULT_BACKOFF_MS),
    timeoutMs: intFlag(values["timeout-ms"], "timeout-ms", DEFAULT_TIMEOUT_MS, 1),
    ...(signal ? { signal } : {}),
    ...(logger ? { onRetry: (r) => logger.warn(`retrying ${r.operation} (attempt ${r.attempt} failed: ${r.reason})`, { delayMs: r.delayMs }) } : {}),
  });
}

/**
 * Makes sure the temporary directory exists and can be written, before any work: a clear usage error
 * (exit 2) instead of a stack trace later. Missing levels are created one at a time: Node's recursive
 * mkdir never returns under /proc (it retries without end).
 */
export async function prepareTmpDir(dir: string | undefined): Promise<void> {
  const abs = resolve(dir ?? tmpdir());
  const fail = (reason: string) =>
    new JobError("usage", `prepare temporary directory '${abs}': ${reason}`, { hint: "pass --tmp-dir <a writable directory> or set BACKUP_TMP_DIR" });
  const missing: string[] = [];
  for (let at = abs; ; ) {
    const st = await stat(at).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw fail(`cannot inspect '${at}' (${e.code ?? e.message})`);
    });
    if (st) {
      if (!st.isDirectory()) throw fail(`'${at}' is not a directory`);
      break;
    }
    missing.unshift(at);
    const parent = dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const level of missing) {
    await mkdir(level).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "EEXIST") throw fail(`cannot create '${level}' (${e.code ?? e.message})`);
    });
  }
  try {
    await rmdir(await mkdtemp(join(abs, ".r2backup-probe-")));
  } catch (e) {
    throw fail(`it cannot be written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}
