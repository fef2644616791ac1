import { EXIT, JobError } from "../job/errors.ts";

/**
 * The one error type of `dr/`. Every failure names the step it happened in, says what went wrong as
 * `<operation> <thing> '<id>': <reason>`, and carries a hint with the command that fixes it.
 */

/** The steps of a disaster recovery, in order. */
export const STEPS = ["preflight", "stack", "deploy", "outputs", "health", "restore"] as const;
export type StepName = (typeof STEPS)[number];

/**
 * Exit codes of `npm run dr`. 3 to 10 are the restore's own (job/errors.ts), passed through so a script
 * can tell a corrupt backup (8) from an empty bucket (9); the DR steps before it have codes of their own.
 */
export const DR_EXIT = {
  ok: EXIT.ok,
  failed: EXIT.failed,
  usage: EXIT.usage,
  targetExists: EXIT.targetExists,
  /** The stack could not be selected or created (login, backend, project). */
  stack: 20,
  /** `pulumi up` or `pulumi refresh` failed. */
  deploy: 21,
  /** The stack has no usable Worker URL or token among its outputs. */
  outputs: 22,
  /** The Worker did not answer its health check in time. */
  health: 23,
  /** The restore failed for a reason the restore engine did not classify. */
  restore: 24,
} as const;

export type DrExitCode = number;

export class DrError extends Error {
  readonly step: StepName;
  readonly hint: string | undefined;
  readonly exitCode: DrExitCode;

  constructor(step: StepName, message: string, options: { hint?: string; exitCode?: DrExitCode; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "DrError";
    this.step = step;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? defaultExitCode(step);
  }
}

function defaultExitCode(step: StepName): DrExitCode {
  switch (step) {
    case "preflight":
      return DR_EXIT.usage;
    case "stack":
      return DR_EXIT.stack;
    case "deploy":
      return DR_EXIT.deploy;
    case "outputs":
      return DR_EXIT.outputs;
    case "health":
      return DR_EXIT.health;
    case "restore":
      return DR_EXIT.restore;
  }
}

/**
 * The line of an error's message that says what went wrong. Pulumi's CommandError carries the whole CLI
 * run as `code: 255\n stdout: ...\n stderr: error: ...`; its `error:` diagnostic is the line that matters.
 */
export function summarize(error: unknown, maxLength = 400): string {
  const text = error instanceof Error ? error.message : String(error);
  const lines = text
    .split("\n")
    .map((l) => l.trim().replace(/^(stdout|stderr|err\?):\s*/i, ""))
    .filter((l) => l.length > 0 && l !== "undefined" && !/^code: -?\d+$/.test(l));
  const diagnostic = lines.find((l) => /^error:/i.test(l)) ?? lines[0] ?? "unknown error";
  return diagnostic.length > maxLength ? `${diagnostic.slice(0, maxLength - 3)}...` : diagnostic;
}

/** The exit code of a restore failure: the restore engine's own when it classified it, else `restore`. */
export function restoreExitCode(error: unknown): DrExitCode {
  if (error instanceof JobError && error.exitCode !== EXIT.failed) return error.exitCode;
  return DR_EXIT.restore;
}
