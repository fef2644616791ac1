import { commands } from "./commands/index.ts";
import type { Io } from "./config.ts";
import { EXIT, JobError, toJobError } from "./errors.ts";
import { addSecretsFromEnv, createLogger, redactingWriter } from "./log.ts";
import { TOOL_VERSION } from "./version.ts";

/**
 * The `r2backup` CLI: `main(argv)` dispatches to a command of `commands/index.ts` and returns the exit code;
 * only `cli-process.ts` exits. Every failure is one line saying what failed and what to do, with its exit code.
 */

const EXIT_HELP: Record<keyof typeof EXIT, string> = {
  ok: "success (for trigger: the backup completed)",
  failed: "unexpected failure",
  usage: "wrong flags or configuration",
  database: "the database is missing, unreadable or not SQLite",
  auth: "the Worker or the agent rejected the token",
  unreachable: "the Worker or the agent could not be reached, after retries",
  diskFull: "a disk is full: the temporary disk (--tmp-dir), or the target's for restore",
  busy: "another backup is already running",
  integrity: "a checksum or integrity check failed",
  notFound: "no backup matches (e.g. an incremental without a full backup)",
  targetExists: "the restore target exists (use --force), or a process holds it open (stop it)",
  chainMoved: "other runs kept committing first; nothing of this run is in the chain",
  clockSkew: "the Worker refused the set's time (a clock ahead)",
  interrupted: "stopped by SIGINT (130) or SIGTERM (143)",
};

/** The top-level help: commands and exit codes. */
export function helpText(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const cmds = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  const codes = Object.entries(EXIT).map(([k, v]) => `  ${String(v).padStart(2)}  ${EXIT_HELP[k as keyof typeof EXIT]}`);
  return [
    "r2backup: back up live SQLite databases to Cloudflare R2 through the backup Worker",
    "",
    "Usage: r2backup <command> [options]   (r2backup <command> --help for its options)",
    "",
    "Commands:",
    ...cmds,
    "",
    "Environment: R2_WORKER_URL, SERVER_BYPASS_TOKEN (Worker); BACKUP_AGENT_TOKEN (agent/trigger);",
    "  BACKUP_WEBHOOK_URL; CLOUDWATCH_NAMESPACE + AWS_REGION (metrics); BACKUP_TMP_DIR",
    "",
    "Exit codes:",
    ...codes,
    "",
  ].join("\n");
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[], io?: Partial<Io>): Promise<number> {
  const env = io?.env ?? process.env;
  // Every secret of the environment is masked in everything the CLI writes, whatever echoed it.
  addSecretsFromEnv(env);
  const full: Io = {
    stdout: redactingWriter(io?.stdout ?? process.stdout),
    stderr: redactingWriter(io?.stderr ?? process.stderr),
    env,
    ...(io?.signal ? { signal: io.signal } : {}),
  };
  const logger = createLogger(full.stderr);
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    full.stdout.write(helpText());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === "--version") {
    full.stdout.write(`r2backup ${TOOL_VERSION}\n`);
    return EXIT.ok;
  }
  const entry = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!entry) {
    const error = new JobError("usage", `run command '${name}': unknown command`, { hint: `commands: ${Object.keys(commands).join(", ")}; see r2backup --help` });
    logger.error(error.message, { exitCode: error.exitCode, kind: error.kind });
    return error.exitCode;
  }
  try {
    const command = await entry.load();
    return await command.run(rest, { io: full, env: full.env, logger });
  } catch (e) {
    const error = toJobError(e, name);
    logger.error(`${name}: ${error.message}`, { exitCode: error.exitCode, kind: error.kind });
    // With --json a script reads stdout: a failure is JSON there too, as a result is.
    if (rest.includes("--json")) {
      full.stdout.write(`${JSON.stringify({ ok: false, command: name, error: { kind: error.kind, exitCode: error.exitCode, message: `${name}: ${error.message}` } })}\n`);
    }
    return error.exitCode;
  }
}
