/**
 * The job's output on stderr: JSON lines when stderr is not a terminal (Render, cron, CI collect them),
 * readable lines and a one-line progress bar when it is. Tokens are never passed here; `redact` removes
 * anything that looks like one from free text anyway.
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

/** Removes token-looking values from a message. */
export function redact(text: string): string {
  return text.replace(SECRET_RE, "$1[redacted]");
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
export function createLogger(out: Writer, options: { json?: boolean; quiet?: boolean } = {}): Logger {
  const json = options.json ?? !out.isTTY;
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
        out.write(`${JSON.stringify({ time: new Date().toISOString(), level, message: redact(message), ...fields })}\n`);
      } else {
        clearBar();
        const extra = Object.entries(fields)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
          .join(" ");
        out.write(`${level === "info" ? "" : `${level}: `}${redact(message)}${extra ? `  ${extra}` : ""}\n`);
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
