/**
 * The job's output on stderr: JSON lines when stderr is not a terminal (Render, cron, CI collect them),
 * readable lines and a one-line progress bar when it is. Every text that leaves the process (these lines,
 * stdout, the agent's stream, the webhook) goes through `redact`, which masks the secret values the process
 * knows (`addSecret`, `addSecretsFromEnv`) in every encoding they travel in, and token-looking values besides.
 */
export type Level = "debug" | "info" | "warn" | "error";

/** Progress and log events of a backup, also streamed by the agent as NDJSON. */
export type BackupEvent =
  | { type: "log"; level: Level; message: string; [field: string]: unknown }
  | { type: "progress"; phase: string; file?: string; bytes: number; total?: number };

/**
 * The library's closing "backup failed" event. A CLI command that reports the thrown error itself (with
 * its exit code) skips it, so a failure is printed once; library callers and the agent's stream keep it.
 */
export function isFailureEvent(event: BackupEvent): boolean {
  return event.type === "log" && event.outcome === "failed";
}

export interface Writer {
  write(text: string): unknown;
  isTTY?: boolean;
}

export interface Logger {
  log(level: Level, message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** Shows progress: a bar on a terminal, a JSON line at most every 2 s (and at the end) otherwise. */
  progress(event: Extract<BackupEvent, { type: "progress" }>): void;
  /** Routes any backup event to the right method. */
  event(event: BackupEvent): void;
}

const SECRET_RE = /(Bearer\s+|token=|X-Server-Token:\s*)[^\s&"']+/gi;
const MASK = "[redacted]";
/** Shorter values are not masked: they would blot out ordinary words (a token is far longer). */
const MIN_SECRET_LENGTH = 4;
/** Environment variables whose values are secrets. */
const SECRET_ENV = ["SERVER_BYPASS_TOKEN", "ADMIN_TOKEN", "BACKUP_AGENT_TOKEN", "BACKUP_AGENT_TOKEN_PREVIOUS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];
/** Environment variables holding URLs whose credentials (user:password@) are secrets. */
const URL_ENV = ["R2_WORKER_URL", "BACKUP_AGENT_URL", "BACKUP_WEBHOOK_URL", "ALERT_WEBHOOK_URL"];

// Process-wide on purpose: a secret known anywhere (a flag, the environment, a store's token) is masked on
// every output path, including the library's own (the webhook, the agent's stream), with no plumbing.
const secrets = new Set<string>();
let secretPattern: RegExp | undefined;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The forms a value takes in output: as is, URL-encoded (both flavours), JSON-escaped, and Basic auth. */
function encodings(value: string): string[] {
  const uri = encodeURIComponent(value);
  return [value, uri, uri.replaceAll("%20", "+"), encodeURI(value), JSON.stringify(value).slice(1, -1), JSON.stringify(JSON.stringify(value).slice(1, -1)).slice(1, -1)];
}

/** Registers a secret value: from now on `redact` masks it wherever it appears, in any encoding. */
export function addSecret(value: string | undefined): void {
  if (value === undefined || value.length < MIN_SECRET_LENGTH || secrets.has(value)) return;
  secrets.add(value);
  const forms = new Set<string>();
  for (const s of secrets) for (const form of encodings(s)) forms.add(form);
  // Longest first, so a value is masked whole rather than around a shorter secret inside it; percent-escapes
  // match in either case (%2F or %2f).
  const sources = [...forms]
    .sort((a, b) => b.length - a.length)
    .map((f) =>
      escapeRegExp(f).replace(
        /%[0-9A-F]{2}/g,
        (e) => `%(?:${e[1]}${e[2]}|${e[1]}${e[2]!.toLowerCase()}|${e[1]!.toLowerCase()}${e[2]}|${e[1]!.toLowerCase()}${e[2]!.toLowerCase()})`,
      ),
    );
  secretPattern = new RegExp(sources.join("|"), "g");
}

/** Registers the credentials of a URL (user, password, and their Basic-auth form). */
export function addUrlSecrets(url: string | undefined): void {
  if (!url) return;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return;
  }
  const user = decodeURIComponent(parsed.username);
  const password = decodeURIComponent(parsed.password);
  addSecret(password);
  if (password) {
    addSecret(user);
    addSecret(Buffer.from(`${user}:${password}`).toString("base64"));
  }
}

/** Registers every secret an environment holds (tokens, AWS keys, URL credentials). */
export function addSecretsFromEnv(env: Record<string, string | undefined>): void {
  for (const name of SECRET_ENV) addSecret(env[name]);
  for (const name of URL_ENV) addUrlSecrets(env[name]);
}

/** A URL as it may be shown: without its credentials. */
export function displayUrl(url: URL | string): string {
  const u = new URL(String(url));
  u.username = "";
  u.password = "";
  return u.href;
}

/** Masks every known secret value (in any encoding) and anything that looks like a token in a text. */
export function redact(text: string): string {
  const masked = secretPattern ? text.replace(secretPattern, MASK) : text;
  return masked.replace(SECRET_RE, `$1${MASK}`);
}

/** A writer that redacts everything written through it (the CLI wraps stdout and stderr in one). */
export function redactingWriter<W extends Writer>(out: W): Writer {
  return {
    write: (text: string) => out.write(redact(text)),
    ...(out.isTTY !== undefined ? { isTTY: out.isTTY } : {}),
  };
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** A logger on `out` (stderr); `json` defaults to "not a terminal". */
export function createLogger(target: Writer, options: { json?: boolean; quiet?: boolean } = {}): Logger {
  const json = options.json ?? !target.isTTY;
  // Whole lines are redacted, fields included: an error in a field is as likely to echo a token.
  const out = redactingWriter(target);
  let barShown = false;
  let lastJsonProgress = 0;
  const clearBar = () => {
    if (barShown) out.write("\r\x1b[2K");
    barShown = false;
  };
  const logger: Logger = {
    log(level, message, fields = {}) {
      if (options.quiet && level === "info") return;
      if (json) {
        out.write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`);
      } else {
        clearBar();
        const extra = Object.entries(fields)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
          .join(" ");
        out.write(`${level === "info" ? "" : `${level}: `}${message}${extra ? `  ${extra}` : ""}\n`);
      }
    },
    info: (m, f) => logger.log("info", m, f),
    warn: (m, f) => logger.log("warn", m, f),
    error: (m, f) => logger.log("error", m, f),
    progress(p) {
      if (options.quiet) return;
      const label = `${p.phase}${p.file ? ` ${p.file}` : ""}`;
      if (json) {
        const now = Date.now();
        const final = p.total !== undefined && p.bytes >= p.total;
        if (!final && now - lastJsonProgress < 2000) return;
        lastJsonProgress = now;
        out.write(`${JSON.stringify({ time: new Date().toISOString(), level: "info", message: "progress", ...p })}\n`);
        return;
      }
      const width = 30;
      const ratio = p.total ? Math.min(1, p.bytes / p.total) : 0;
      const bar = p.total ? `[${"#".repeat(Math.round(ratio * width)).padEnd(width, ".")}] ${Math.round(ratio * 100)}% ` : "";
      out.write(`\r\x1b[2K${label} ${bar}${formatBytes(p.bytes)}${p.total ? ` / ${formatBytes(p.total)}` : ""}`);
      barShown = true;
    },
    event(e) {
      if (e.type === "progress") logger.progress(e);
      else {
        const { type: _t, level, message, ...fields } = e;
        logger.log(level, message, fields);
      }
    },
  };
  return logger;
}

/** A logger that drops everything (library default). */
export const silentLogger: Logger = createLogger({ write: () => true }, { json: true, quiet: true });
