import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parsePointInTime } from "../core/index.ts";
import { stackNameProblem } from "../infra/naming.ts";
import { DR_EXIT } from "./errors.ts";
import { waitForWorker } from "./health.ts";
import { runDisasterRecovery, type RecoveryDeps } from "./recover.ts";
import { formatReport } from "./report.ts";
import { jobRestorer } from "./restore.ts";
import { automationStacks } from "./stack.ts";

/**
 * `npm run dr -- ...`: parses the flags, runs the recovery, prints the report. `main(argv)` returns the
 * exit code; only scripts/dr.ts exits.
 */

/** The repository root: the Pulumi project (Pulumi.yaml, main infra/index.ts). */
export const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));

export const USAGE = `Usage: npm run dr -- --stack <name> --to <path> | --data-dir <dir> [options]

Rebuilds after a disaster: brings up (or refreshes) the Pulumi stack from this repository with the
Automation API, waits for its Worker to answer GET /api/health, restores the newest complete backup (or
the one at --at) to --to, and reports each step. A failed step stops the run: nothing after it happens,
and the restore replaces the target atomically or not at all.

Options:
  --stack <name>        Pulumi stack to bring up, e.g. prod (or org/prod). Required.
  --to <path>           Database file to restore to (a directory for a backup of several databases).
  --data-dir <dir>      Or: the app's data directory (LiveStore's baseDirectory); each database goes back to
                        its path under it, and a LiveStore state DB only when it matches the event log.
  --at <time>           Restore the backup at this time: latest (default), 20260131T060000Z, or an ISO
                        time with a zone (2026-01-31T06:00:00Z).
  --force               Replace an existing target (after the backup has been checked).
  --refresh-only        pulumi refresh instead of pulumi up: the stack is deployed, only re-read it.
  --dry-run             Show the plan (stack, pulumi preview, Worker health, restore plan); change nothing.
  --health-timeout <s>  Seconds to wait for the Worker (default 300).
  --json                Print the report as JSON (progress still goes to stderr).
  -h, --help            Show this help.

Environment:
  SERVER_BYPASS_TOKEN   The job's token for the restore (else the stack's serverToken output or config).
  PULUMI_ACCESS_TOKEN, CLOUDFLARE_API_TOKEN, RENDER_API_KEY, AWS_* as for pulumi up.

Exit codes:
  0   recovered (or, with --dry-run, planned)
  1   unexpected failure
  2   wrong flags
  3-9 the restore failed (3 database, 4 auth, 5 unreachable, 6 disk full, 8 integrity, 9 no backup)
  10  the target exists and --force was not given
  20  the stack could not be selected or created (CLI, login, name)
  21  pulumi up / refresh failed
  22  the stack has no workerUrl output, or no token was found
  23  the Worker did not answer in time
  24  the restore failed otherwise
`;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
}

const defaultIo: CliIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
};

export async function main(argv: string[], deps?: Partial<RecoveryDeps>, io: CliIo = defaultIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        stack: { type: "string" },
        to: { type: "string" },
        "data-dir": { type: "string" },
        at: { type: "string" },
        "dry-run": { type: "boolean" },
        force: { type: "boolean" },
        "refresh-only": { type: "boolean" },
        "health-timeout": { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    io.stderr(`npm run dr: ${(error as Error).message}\n\n${USAGE}`);
    return DR_EXIT.usage;
  }
  if (values.help) {
    io.stdout(USAGE);
    return DR_EXIT.ok;
  }
  const usage = (message: string) => {
    io.stderr(`npm run dr: ${message}\nRun npm run dr -- --help for the options.\n`);
    return DR_EXIT.usage;
  };
  if (!values.stack) return usage("missing --stack <name> (the Pulumi stack to bring up, e.g. --stack prod)");
  // org/prod: the stack's own name is what the cloud names carry.
  const badName = stackNameProblem(values.stack.split("/").at(-1)!);
  if (badName) return usage(`--stack '${values.stack}' ${badName}`);
  if (values.to && values["data-dir"]) return usage("give --to or --data-dir, not both");
  if (!values.to && !values["data-dir"]) return usage("missing --to <path> (where to restore the database, e.g. --to /data/app.db) or --data-dir <dir> (the app's data directory)");
  let at: Date | "latest" = "latest";
  if (values.at !== undefined) {
    try {
      at = parsePointInTime(values.at);
    } catch (error) {
      return usage(`--at: ${(error as Error).message}`);
    }
  }
  let healthTimeoutMs: number | undefined;
  if (values["health-timeout"] !== undefined) {
    const seconds = Number(values["health-timeout"]);
    if (!Number.isFinite(seconds) || seconds <= 0) return usage(`--health-timeout: expected a number of seconds, got '${values["health-timeout"]}'`);
    healthTimeoutMs = seconds * 1000;
  }

  const token = io.env.SERVER_BYPASS_TOKEN;
  const report = await runDisasterRecovery(
    {
      stack: values.stack,
      to: (values.to ?? values["data-dir"])!,
      ...(values["data-dir"] ? { dataDir: true } : {}),
      at,
      dryRun: !!values["dry-run"],
      force: !!values.force,
      refreshOnly: !!values["refresh-only"],
      workDir: REPO_ROOT,
      ...(token ? { token } : {}),
      ...(healthTimeoutMs !== undefined ? { healthTimeoutMs } : {}),
      log: (line) => io.stderr(`${line}\n`),
    },
    {
      stacks: deps?.stacks ?? automationStacks(),
      waitForWorker: deps?.waitForWorker ?? waitForWorker,
      restorer: deps?.restorer ?? jobRestorer(),
    },
  );
  io.stdout(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.exitCode;
}
