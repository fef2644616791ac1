/**
 * The job's one error type and its exit codes. The CLI's `main(argv)` maps a JobError to its code; only the
 * bin file exits. Messages read `<operation> <thing> '<id>': <reason>` and carry a hint that says what to do.
 */
export const EXIT = {
  ok: 0,
  /** Anything unexpected: a bug, or an error this table does not name. */
  failed: 1,
  /** Wrong flags or arguments. */
  usage: 2,
  /** The database is missing, unreadable, or not SQLite. */
  database: 3,
  /** The Worker or agent rejected the token (401/403). */
  auth: 4,
  /** The Worker or agent could not be reached, or kept failing, after the retries. */
  unreachable: 5,
  /** The temporary disk is full (ENOSPC). */
  diskFull: 6,
  /** Another backup is already running (the agent's 409, or the local lock). */
  busy: 7,
  /** A checksum or integrity check failed: a backup or download is corrupt. */
  integrity: 8,
  /** No backup matches (empty bucket, unknown time, a gap in the chain). */
  notFound: 9,
  /** The restore target exists and --force was not given. */
  targetExists: 10,
  /** Other runs kept committing first: the chain moved under every attempt, and nothing of this run is in it. */
  chainMoved: 11,
  /** The Worker refused the set's time: this machine's clock is ahead of the Worker's beyond the allowed skew. */
  clockSkew: 12,
  /** Stopped by SIGINT (130; the process exits 143 for SIGTERM): temporary files removed, nothing complete-looking left. */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
export type ErrorKind = keyof typeof EXIT;

export class JobError extends Error {
  readonly kind: ErrorKind;
  readonly hint: string | undefined;
  /** The message without its hint (`<operation> <thing> '<id>': <reason>`), for an error that rewraps it. */
  readonly detail: string;

  constructor(kind: ErrorKind, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(options.hint ? `${message} (${options.hint})` : message, { cause: options.cause });
    this.name = "JobError";
    this.kind = kind;
    this.hint = options.hint;
    this.detail = message;
  }

  get exitCode(): ExitCode {
    return EXIT[this.kind];
  }
}

/** The exit code for any thrown value: a JobError's own, ENOSPC as diskFull, else `failed`. */
export function exitCodeOf(error: unknown): ExitCode {
  if (error instanceof JobError) return error.exitCode;
  if (isNoSpace(error)) return EXIT.diskFull;
  return EXIT.failed;
}

/** SQLite's SQLITE_FULL: node:sqlite reports a full disk as `errcode` 13, not as ENOSPC. */
const SQLITE_FULL = 13;

/** True for a full disk (ENOSPC, EDQUOT, or SQLite's SQLITE_FULL) anywhere in the cause chain. */
export function isNoSpace(error: unknown): boolean {
  for (let e: unknown = error; e; e = (e as { cause?: unknown }).cause) {
    const { code, errcode } = e as { code?: unknown; errcode?: unknown };
    if (code === "ENOSPC" || code === "EDQUOT") return true;
    if (code === "ERR_SQLITE_ERROR" && typeof errcode === "number" && (errcode & 0xff) === SQLITE_FULL) return true;
  }
  return false;
}

const NOT_WRITABLE: Record<string, string> = { EROFS: "the filesystem is read-only", EACCES: "permission denied", EPERM: "operation not permitted" };

/**
 * Any failure as a JobError with its exit code and a hint that fits the command: a full disk (6) names the
 * disk the command writes to (`restore` writes beside its target, the others in --tmp-dir), a path that
 * cannot be written (2) names the path. Anything else stays `failed` (1) and keeps its stack for the log.
 */
export function toJobError(error: unknown, command: string): JobError {
  if (error instanceof JobError) return error;
  if (isAbort(error)) return new JobError("interrupted", `${command}: stopped by a signal`, { hint: "nothing complete-looking was left; run it again", cause: error });
  const e = error as NodeJS.ErrnoException | undefined;
  const reason = e?.message ?? String(error);
  if (isNoSpace(error)) {
    const hint =
      command === "restore" ? "free space on the target's filesystem: the restore writes its temporary file beside --to" : "free space or point --tmp-dir at a larger disk";
    return new JobError("diskFull", `${command}: a disk is full (${reason})`, { hint, cause: error });
  }
  const why = e?.code ? NOT_WRITABLE[e.code] : undefined;
  if (why && e?.path) {
    const hint =
      command === "restore"
        ? "restore to a writable path (--to), or run as a user that may write there"
        : "choose a writable directory (--tmp-dir or BACKUP_TMP_DIR), or run as a user that may write there";
    return new JobError("usage", `${command}: write '${e.path}': ${why}`, { hint, cause: error });
  }
  return new JobError("failed", e?.stack ?? reason, { cause: error });
}

/**
 * Throws the job's `interrupted` error (exit 130) when `signal` has fired: the library's checkpoints between
 * phases, so an aborted backup never reaches its manifest and an aborted restore never replaces its target.
 */
export function throwIfInterrupted(signal: AbortSignal | undefined, operation: string): void {
  if (signal?.aborted) throw new JobError("interrupted", `${operation}: stopped by a signal`, { hint: "nothing complete-looking was left; run it again", cause: signal.reason });
}

/** True for an AbortSignal's rejection (SIGINT/SIGTERM reach the job through one). */
export function isAbort(error: unknown): boolean {
  const name = (error as { name?: unknown } | undefined)?.name;
  return name === "AbortError" || (error as { code?: unknown } | undefined)?.code === "ABORT_ERR";
}
