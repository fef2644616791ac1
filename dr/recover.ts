import { stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { formatTimestamp } from "../core/index.ts";
import { DR_EXIT, DrError, restoreExitCode, summarize, type StepName } from "./errors.ts";
import type { HealthResult, WaitForWorker } from "./health.ts";
import type { RestoreOutcome, Restorer } from "./restore.ts";
import type { DeploySummary, StackDriver, StackOutput, StackSession } from "./stack.ts";

/**
 * The disaster-recovery orchestrator: bring up (or refresh) a stack of this repository, wait for its
 * Worker to answer, restore the newest complete backup (or the one at a time) to a target path, and
 * report each step. A failed step stops the run before anything later happens, so a restore is never
 * attempted on a half-deployed stack; the restore itself replaces the target atomically or not at all.
 */

/** The stack outputs the recovery reads (infra/index.ts exports them). */
export const OUTPUTS = {
  workerUrl: "workerUrl",
  /** Optional: the job's token as a secret output; `SERVER_BYPASS_TOKEN` in the environment wins. */
  serverToken: "serverToken",
} as const;

export interface RecoveryOptions {
  /** The Pulumi stack, e.g. `prod` or `org/prod`. */
  stack: string;
  /** Database file (or directory) to restore to. */
  to: string;
  /** `to` is the app's data directory (LiveStore's baseDirectory): `restore --data-dir`. */
  dataDir?: boolean;
  /** Point in time (default: the newest complete backup). */
  at?: Date | "latest";
  /** Show the plan only: create nothing, deploy nothing, restore nothing. */
  dryRun?: boolean;
  /** Replace an existing target (atomically, after the backup checks out). */
  force?: boolean;
  /** `pulumi refresh` instead of `pulumi up`: the stack is deployed and only its state is re-read. */
  refreshOnly?: boolean;
  /** The Pulumi project directory (the repository root). */
  workDir: string;
  /** `SERVER_BYPASS_TOKEN`, when set in the environment. */
  token?: string;
  /** How long to wait for the Worker (default 300 s). */
  healthTimeoutMs?: number;
  /** Progress lines (the CLI writes them to stderr). */
  log?: (line: string) => void;
}

export interface RecoveryDeps {
  stacks: StackDriver;
  waitForWorker: WaitForWorker;
  restorer: Restorer;
}

export type StepStatus = "ok" | "failed" | "skipped" | "planned";

export interface StepRecord {
  step: StepName;
  status: StepStatus;
  detail: string;
  durationMs: number;
}

/** What the recovery did, or (dry run) would do. Holds no secret: the token is never copied in. */
export interface RecoveryReport {
  ok: boolean;
  dryRun: boolean;
  stack: string;
  action: "up" | "refresh";
  to: string;
  at: string;
  steps: StepRecord[];
  /** The stack did not exist and was (or would be) created. */
  stackCreated?: boolean;
  deploy?: DeploySummary;
  workerUrl?: string;
  health?: HealthResult;
  restore?: RestoreOutcome;
  error?: { step: StepName; message: string; hint?: string };
  exitCode: number;
  durationMs: number;
}

/** The config key of the job's token (infra/config.ts), read when neither the environment nor an output has it. */
export const SERVER_TOKEN_CONFIG = "r2-sqlite-backup:serverToken";

const STACK_NAME = /^([A-Za-z0-9_.-]+\/){0,2}[A-Za-z0-9_.-]+$/;
const CLI_MISSING = /ENOENT|command not found|Failed to find|could not find.*pulumi|PulumiCommand/i;

/** Runs a disaster recovery. Never throws: every outcome, failures included, is a report with an exit code. */
export async function runDisasterRecovery(options: RecoveryOptions, deps: RecoveryDeps): Promise<RecoveryReport> {
  const started = performance.now();
  const log = options.log ?? (() => {});
  const action = options.refreshOnly ? "refresh" : "up";
  const at = options.at ?? "latest";
  const report: RecoveryReport = {
    ok: false,
    dryRun: !!options.dryRun,
    stack: options.stack,
    action,
    to: resolve(options.to || "."),
    at: at === "latest" ? "latest" : formatTimestamp(at),
    steps: [],
    exitCode: DR_EXIT.failed,
    durationMs: 0,
  };

  /** Runs one step, recording it; a thrown DrError ends the recovery. */
  const step = async <T>(name: StepName, run: () => Promise<{ value: T; detail: string; status?: StepStatus }>): Promise<T> => {
    const t0 = performance.now();
    log(`[${name}] ...`);
    try {
      const { value, detail, status = "ok" } = await run();
      report.steps.push({ step: name, status, detail, durationMs: Math.round(performance.now() - t0) });
      log(`[${name}] ${status}: ${detail}`);
      return value;
    } catch (error) {
      const e = error instanceof DrError ? error : new DrError(name, `${name} failed: ${summarize(error)}`, { cause: error });
      report.steps.push({ step: name, status: "failed", detail: e.message, durationMs: Math.round(performance.now() - t0) });
      throw e;
    }
  };

  try {
    if (options.dryRun) await planRecovery(options, deps, report, step, log);
    else await recover(options, deps, report, step, log);
    report.ok = true;
    report.exitCode = DR_EXIT.ok;
  } catch (error) {
    const e = error instanceof DrError ? error : new DrError("preflight", summarize(error), { exitCode: DR_EXIT.failed, cause: error });
    report.error = { step: e.step, message: e.message, ...(e.hint ? { hint: e.hint } : {}) };
    report.exitCode = e.exitCode;
    const done = new Set(report.steps.map((s) => s.step));
    for (const name of ["preflight", "stack", "deploy", "outputs", "health", "restore"] as const) {
      if (!done.has(name)) report.steps.push({ step: name, status: "skipped", detail: `not run: the ${e.step} step failed`, durationMs: 0 });
    }
  }
  report.durationMs = Math.round(performance.now() - started);
  return report;
}

type StepRunner = <T>(name: StepName, run: () => Promise<{ value: T; detail: string; status?: StepStatus }>) => Promise<T>;

async function recover(options: RecoveryOptions, deps: RecoveryDeps, report: RecoveryReport, step: StepRunner, log: (line: string) => void): Promise<void> {
  await step("preflight", async () => ({ value: undefined, detail: await preflight(options) }));

  const session = await step("stack", async () => {
    // --refresh-only re-reads a deployed stack: creating an empty one there would hide a typo in the name.
    const s = await openStack(deps.stacks, options, !options.refreshOnly);
    if (!s) {
      throw new DrError("stack", `select stack '${options.stack}': it does not exist, and --refresh-only does not create stacks`, {
        hint: "check the name with `pulumi stack ls`, or run without --refresh-only to create and deploy it",
      });
    }
    return { value: s, detail: `selected '${s.name}' in ${options.workDir}` };
  });

  report.deploy = await step("deploy", async () => {
    const summary = await deploy(session, report.action, options.stack, log);
    return { value: summary, detail: `pulumi ${report.action}: ${describeChanges(summary)}` };
  });

  const { workerUrl, token } = await step("outputs", async () => {
    const found = await readOutputs(session, options, true);
    return { value: found, detail: `workerUrl ${found.workerUrl}; token from ${found.tokenSource}` };
  });
  report.workerUrl = workerUrl;

  report.health = await step("health", async () => {
    const health = await waitHealthy(deps.waitForWorker, workerUrl, options, log);
    return { value: health, detail: `${health.url} answered ${health.status} after ${health.attempts} attempt(s), ${health.elapsedMs} ms` };
  });

  report.restore = await step("restore", async () => {
    const outcome = await runRestore(deps.restorer, { workerUrl, token: token!, options, dryRun: false, log });
    return { value: outcome, detail: describeRestore(outcome) };
  });
}

async function planRecovery(options: RecoveryOptions, deps: RecoveryDeps, report: RecoveryReport, step: StepRunner, log: (line: string) => void): Promise<void> {
  await step("preflight", async () => ({ value: undefined, detail: await preflight(options) }));

  const session = await step("stack", async () => {
    const s = await openStack(deps.stacks, options, false);
    report.stackCreated = s === undefined;
    if (!s) return { value: undefined, status: "planned", detail: `stack '${options.stack}' does not exist: it would be created (pulumi stack init ${options.stack})` };
    return { value: s, detail: `stack '${s.name}' exists` };
  });

  report.deploy = await step("deploy", async () => {
    if (!session) {
      if (options.refreshOnly) {
        throw new DrError("deploy", `refresh stack '${options.stack}': the stack does not exist, so there is nothing to refresh`, {
          hint: `run without --refresh-only to create and deploy it`,
        });
      }
      return { value: undefined, status: "planned", detail: "pulumi up of the new stack: every resource would be created" };
    }
    const summary = await previewDeploy(session, report.action, options.stack, log);
    return { value: summary, status: "planned", detail: `pulumi ${report.action} would: ${describeChanges(summary)}` };
  });

  const found = await step("outputs", async () => {
    if (!session) return { value: undefined, status: "planned", detail: `read ${OUTPUTS.workerUrl} once the stack is deployed` };
    const f = await readOutputs(session, options, false);
    if (!f.workerUrl) return { value: undefined, status: "planned", detail: `the stack has no ${OUTPUTS.workerUrl} yet: it will after pulumi up` };
    return { value: f, detail: `workerUrl ${f.workerUrl}; token ${f.token ? `from ${f.tokenSource}` : "not found yet"}` };
  });
  if (found?.workerUrl) report.workerUrl = found.workerUrl;

  const healthy = await step("health", async () => {
    const limit = options.healthTimeoutMs ?? 300_000;
    if (!found?.workerUrl) return { value: false, status: "planned", detail: `wait up to ${limit / 1000} s for GET /api/health` };
    try {
      report.health = await deps.waitForWorker(found.workerUrl, { timeoutMs: Math.min(limit, 10_000) });
      return { value: true, detail: `${report.health.url} answers ${report.health.status} now` };
    } catch (error) {
      return { value: false, status: "planned", detail: `not answering now (${summarize(error)}); a real run waits up to ${limit / 1000} s after the deploy` };
    }
  });

  report.restore = await step("restore", async () => {
    const what = `restore ${report.at === "latest" ? "the newest complete backup" : `the backup at ${report.at}`} to ${report.to}`;
    if (!healthy || !found?.token) {
      const missing = !healthy ? "the Worker answers" : "a token is known (set SERVER_BYPASS_TOKEN)";
      return { value: undefined, status: "planned", detail: `${what}; the exact backup is known once ${missing}` };
    }
    const outcome = await runRestore(deps.restorer, { workerUrl: found.workerUrl!, token: found.token, options, dryRun: true, log });
    return { value: outcome, status: "planned", detail: describeRestore(outcome) };
  });
}

/** Checks that need no network: the stack name and the target. Nothing is created or changed. */
async function preflight(options: RecoveryOptions): Promise<string> {
  if (!STACK_NAME.test(options.stack)) {
    throw new DrError("preflight", `check stack name '${options.stack}': not a Pulumi stack name`, { hint: "use letters, digits, '-', '_' or '.', optionally as org/stack" });
  }
  if (!options.to) throw new DrError("preflight", "check target '': no target path given", { hint: "pass --to <path>, e.g. --to /data/app.db" });
  const target = resolve(options.to);
  const existing = await stat(target).catch(() => undefined);
  if (existing && !existing.isDirectory() && !options.force) {
    throw new DrError("preflight", `check target '${target}': the file exists`, {
      hint: "move it away, or pass --force to replace it (atomically, only after the backup has been checked)",
      exitCode: DR_EXIT.targetExists,
    });
  }
  if (!existing) {
    const parent = await stat(dirname(target)).catch(() => undefined);
    if (!parent?.isDirectory()) {
      throw new DrError("preflight", `check target '${target}': its directory '${dirname(target)}' does not exist`, { hint: `create it first: mkdir -p ${dirname(target)}` });
    }
  }
  const what = existing ? (existing.isDirectory() ? "an existing directory (each database lands inside)" : "an existing file, replaced with --force") : "a new file";
  return `stack name ok; target ${target} is ${what}`;
}

async function openStack(driver: StackDriver, options: RecoveryOptions, create: boolean): Promise<StackSession | undefined> {
  try {
    return await driver.open({ stackName: options.stack, workDir: options.workDir, create });
  } catch (error) {
    const reason = summarize(error);
    const hint = CLI_MISSING.test(reason)
      ? "install the Pulumi CLI (curl -fsSL https://get.pulumi.com | sh) and run again"
      : `log in to the state backend (pulumi login, or set PULUMI_ACCESS_TOKEN), check the name with \`pulumi stack ls\`, and run again`;
    throw new DrError("stack", `select stack '${options.stack}': ${reason}`, { hint, cause: error });
  }
}

function deployHint(action: "up" | "refresh", stack: string, error: unknown): string {
  const name = (error as { name?: string } | undefined)?.name;
  if (name === "ConcurrentUpdateError")
    return `nothing was restored. Another update of '${stack}' is running: wait for it, or if it died, \`pulumi cancel --stack ${stack}\`, then run again`;
  return `nothing was restored. Fix the error (full log above), then run the same command again: pulumi ${action} continues from where it stopped. If it reports pending operations: pulumi refresh --stack ${stack}`;
}

async function deploy(session: StackSession, action: "up" | "refresh", stack: string, log: (line: string) => void): Promise<DeploySummary> {
  const onOutput = (text: string) => {
    for (const line of text.split("\n")) if (line.trim()) log(`  ${line.trimEnd()}`);
  };
  let summary: DeploySummary;
  try {
    summary = action === "up" ? await session.up(onOutput) : await session.refresh(onOutput);
  } catch (error) {
    throw new DrError("deploy", `pulumi ${action} stack '${stack}': ${summarize(error)}`, { hint: deployHint(action, stack, error), cause: error });
  }
  if (summary.result !== "succeeded") {
    throw new DrError("deploy", `pulumi ${action} stack '${stack}': finished as '${summary.result}'`, { hint: deployHint(action, stack, undefined) });
  }
  return summary;
}

async function previewDeploy(session: StackSession, action: "up" | "refresh", stack: string, log: (line: string) => void): Promise<DeploySummary> {
  try {
    return await session.preview(action, (text) => {
      for (const line of text.split("\n")) if (line.trim()) log(`  ${line.trimEnd()}`);
    });
  } catch (error) {
    throw new DrError("deploy", `preview ${action} of stack '${stack}': ${summarize(error)}`, {
      hint: `a real run would fail here too; run \`pulumi preview --stack ${stack}\` for the full error`,
      cause: error,
    });
  }
}

async function readOutputs(session: StackSession, options: RecoveryOptions, required: boolean): Promise<{ workerUrl: string; token: string | undefined; tokenSource: string }> {
  let outputs: Record<string, StackOutput>;
  try {
    outputs = await session.outputs();
  } catch (error) {
    throw new DrError("outputs", `read outputs of stack '${options.stack}': ${summarize(error)}`, {
      hint: `check them with \`pulumi stack output --stack ${options.stack}\``,
      cause: error,
    });
  }
  const raw = outputs[OUTPUTS.workerUrl]?.value;
  const url = typeof raw === "string" && URL.canParse(raw) && /^https?:$/.test(new URL(raw).protocol) ? raw : "";
  if (!url && required) {
    const names = Object.keys(outputs);
    throw new DrError(
      "outputs",
      `read output '${OUTPUTS.workerUrl}' of stack '${options.stack}': ${raw === undefined ? "missing" : `not an http(s) URL: ${JSON.stringify(raw)}`} (outputs: ${names.length ? names.join(", ") : "none"})`,
      {
        hint: options.refreshOnly
          ? "the stack may never have been deployed: run again without --refresh-only"
          : `the program (infra/index.ts) must export ${OUTPUTS.workerUrl}; check \`pulumi stack output --stack ${options.stack}\``,
      },
    );
  }
  // The token: the environment, else a serverToken output, else the stack's serverToken config (a secret
  // the CLI decrypts). A generated token is only in the state, so the hint says how to find it there.
  let token = options.token || undefined;
  let tokenSource = token ? "SERVER_BYPASS_TOKEN" : "nowhere";
  const fromOutput = outputs[OUTPUTS.serverToken]?.value;
  if (!token && typeof fromOutput === "string" && fromOutput) {
    token = fromOutput;
    tokenSource = `the stack's ${OUTPUTS.serverToken} output`;
  }
  if (!token) {
    const fromConfig = await session.config(SERVER_TOKEN_CONFIG).catch(() => undefined);
    if (fromConfig) {
      token = fromConfig;
      tokenSource = `the stack's ${SERVER_TOKEN_CONFIG} config`;
    }
  }
  if (!token && required) {
    throw new DrError(
      "outputs",
      `find the job's token for stack '${options.stack}': SERVER_BYPASS_TOKEN is not set, and the stack has no ${OUTPUTS.serverToken} output and no ${SERVER_TOKEN_CONFIG} config`,
      {
        hint: `export SERVER_BYPASS_TOKEN=... (a stack deployed before the serverToken output existed has it as tokens-server in \`pulumi stack export --show-secrets --stack ${options.stack}\`) and run again with --refresh-only`,
      },
    );
  }
  return { workerUrl: url, token, tokenSource };
}

async function waitHealthy(wait: WaitForWorker, url: string, options: RecoveryOptions, log: (line: string) => void): Promise<HealthResult> {
  const timeoutMs = options.healthTimeoutMs ?? 300_000;
  try {
    return await wait(url, {
      timeoutMs,
      onAttempt: ({ attempt, reason, nextDelayMs }) => log(`  attempt ${attempt}: ${reason}; next in ${nextDelayMs} ms`),
    });
  } catch (error) {
    throw new DrError("health", `wait for worker '${url}': no healthy answer within ${Math.round(timeoutMs / 1000)} s: ${summarize(error)}`, {
      hint: `nothing was restored. Check the Worker and its route or workers.dev subdomain in the Cloudflare dashboard, then run again with --refresh-only (the stack is deployed)`,
      cause: error,
    });
  }
}

async function runRestore(
  restorer: Restorer,
  args: { workerUrl: string; token: string; options: RecoveryOptions; dryRun: boolean; log: (line: string) => void },
): Promise<RestoreOutcome> {
  const { options } = args;
  try {
    return await restorer.restore({
      workerUrl: args.workerUrl,
      token: args.token,
      to: resolve(options.to),
      ...(options.dataDir ? { dataDir: true } : {}),
      at: options.at ?? "latest",
      force: !!options.force,
      dryRun: args.dryRun,
      onProgress: (line) => args.log(`  ${line}`),
    });
  } catch (error) {
    const hint = (error as { hint?: string }).hint;
    const message = hint && error instanceof Error && error.message.endsWith(` (${hint})`) ? error.message.slice(0, -hint.length - 3) : summarize(error);
    throw new DrError("restore", `restore to '${resolve(options.to)}': ${message}`, {
      hint: hint ?? "the target was left as it was; see the message, then run again with --refresh-only (the stack is deployed)",
      exitCode: restoreExitCode(error),
      cause: error,
    });
  }
}

/** `3 create, 2 update` (or `no changes`). */
export function describeChanges(summary: DeploySummary): string {
  const parts = Object.entries(summary.changes)
    .filter(([k]) => k !== "same")
    .map(([k, n]) => `${n} ${k}`);
  const same = summary.changes.same ? `${summary.changes.same} unchanged` : "";
  return [parts.length ? parts.join(", ") : "no changes", same].filter(Boolean).join("; ");
}

/** `restored 20260131T060000Z (full 20260131T000000Z + 3 incrementals) to /data/app.db, 12.3 MB, integrity ok`. */
export function describeRestore(outcome: RestoreOutcome): string {
  const chain = outcome.chain.length ? ` + ${outcome.chain.length} incremental${outcome.chain.length === 1 ? "" : "s"}` : "";
  const targets = outcome.targets.map((t) => `${t.path}${t.existed ? " (replacing)" : ""}`).join(", ");
  if (outcome.dryRun) return `would restore ${outcome.restoresTo} (${outcome.full.kind} ${outcome.full.id}${chain}) to ${targets}; nothing downloaded`;
  return `restored ${outcome.restoresTo} (${outcome.full.kind} ${outcome.full.id}${chain}) to ${targets}, ${outcome.bytes} bytes, integrity ${outcome.integrity}`;
}
