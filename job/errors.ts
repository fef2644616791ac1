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
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
export type ErrorKind = keyof typeof EXIT;

export class JobError extends Error {
  readonly kind: ErrorKind;
  readonly hint: string | undefined;

  constructor(kind: ErrorKind, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(options.hint ? `${message} (${options.hint})` : message, { cause: options.cause });
    this.name = "JobError";
    this.kind = kind;
    this.hint = options.hint;
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

/** True for a full disk (ENOSPC, or EDQUOT) anywhere in the cause chain. */
export function isNoSpace(error: unknown): boolean {
  for (let e: unknown = error; e; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (code === "ENOSPC" || code === "EDQUOT") return true;
  }
  return false;
}
