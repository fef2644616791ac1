import { setTimeout as sleep } from "node:timers/promises";
import { COMMON_OPTIONS, intFlag, parseFlags, usageOf, type Command } from "../config.ts";
import { EXIT, JobError } from "../errors.ts";
import { send, type Answer } from "../http.ts";
import { addUrlSecrets, isFailureEvent, type BackupEvent } from "../log.ts";
import type { AgentResult } from "./agent.ts";

/**
 * `r2backup trigger`: what the Render cron job runs (docs/design.md fact 1). It POSTs to the agent over the
 * private network, relays its NDJSON progress, and exits 0 only when the result line says the backup is
 * complete: 4 on a rejected token, 7 when a backup is already running, 5 when the agent cannot be
 * reached, and the backup's own exit code (1 when unknown) when it failed.
 */
export interface TriggerOutcome {
  exitCode: number;
  result?: AgentResult;
}

/** Runs one triggered backup; `onEvent` sees each progress or log line. */
export async function triggerBackup(options: {
  agentUrl: string;
  token: string;
  kind?: string;
  attempts?: number;
  onEvent?: (e: BackupEvent) => void;
  onRetry?: (reason: string) => void;
}): Promise<TriggerOutcome> {
  const url = new URL("/backup", options.agentUrl);
  const attempts = options.attempts ?? 3;
  let res: Answer | undefined;
  let lastError = "";
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      res = await send(url, {
        method: "POST",
        headers: { authorization: `Bearer ${options.token}`, "content-type": "application/json" },
        body: JSON.stringify({ kind: options.kind ?? "auto" }),
      });
      break;
    } catch (e) {
      if (e instanceof JobError) throw e; // a redirect: sending again goes to the same place
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      lastError = cause?.code ?? cause?.message ?? (e as Error).message;
      if (attempt < attempts) {
        options.onRetry?.(lastError);
        await sleep(500 * 2 ** (attempt - 1));
      }
    }
  }
  if (!res)
    throw new JobError("unreachable", `trigger backup at '${url.origin}': the agent could not be reached after ${attempts} attempts (${lastError})`, {
      hint: "check --agent-url (Render private network: http://<service>:<port>) and that the agent runs",
    });
  if (res.status === 401 || res.status === 403) {
    res.discard();
    throw new JobError("auth", `trigger backup at '${url.origin}': the agent rejected the token (${res.status})`, { hint: "set BACKUP_AGENT_TOKEN to the agent's token" });
  }
  if (res.status === 409) {
    res.discard();
    throw new JobError("busy", `trigger backup at '${url.origin}': a backup is already running`, { hint: "wait for it; the next schedule will run again" });
  }
  if (!res.ok || !res.body) {
    const text = await res.text().catch(() => "");
    throw new JobError("failed", `trigger backup at '${url.origin}': ${res.status} ${text.slice(0, 200)}`);
  }
  let result: AgentResult | undefined;
  let buffer = "";
  const decoder = new TextDecoder();
  const handle = (line: string) => {
    if (!line.trim()) return;
    let value: { type?: string };
    try {
      value = JSON.parse(line) as { type?: string };
    } catch {
      return;
    }
    if (value.type === "result") result = value as AgentResult;
    else options.onEvent?.(value as BackupEvent);
  };
  try {
    for await (const chunk of res.body) {
      buffer += decoder.decode(chunk, { stream: true });
      let i;
      while ((i = buffer.indexOf("\n")) >= 0) {
        handle(buffer.slice(0, i));
        buffer = buffer.slice(i + 1);
      }
    }
    handle(buffer);
  } catch (e) {
    throw new JobError("failed", `trigger backup at '${url.origin}': the agent's stream broke before the result (${(e as Error).message})`, {
      hint: "check the agent's logs; the backup may have failed or still be running",
    });
  }
  if (!result) throw new JobError("failed", `trigger backup at '${url.origin}': the agent ended without a result`, { hint: "check the agent's logs" });
  if (result.ok) return { exitCode: EXIT.ok, result };
  return { exitCode: result.error.exitCode > 0 ? result.error.exitCode : EXIT.failed, result };
}

const TRIGGER_OPTIONS = {
  "agent-url": { type: "string" },
  kind: { type: "string" },
  retries: { type: "string" },
} as const;
/** Connection retries of the trigger: the agent may be restarting (a deploy) when the schedule fires. */
const DEFAULT_TRIGGER_RETRIES = 2;

export const triggerCommand: Command = {
  usage: `r2backup trigger --agent-url <url> [--kind full|incremental|auto] [--json]\n\n${usageOf(TRIGGER_OPTIONS, {
    "agent-url": { arg: "<url>", text: "the agent, e.g. http://app:8788", env: "BACKUP_AGENT_URL" },
    kind: { arg: "full|incremental|auto", text: "passed to the agent", fallback: "auto" },
    retries: { arg: "<n>", text: "connection retries after the first attempt", fallback: DEFAULT_TRIGGER_RETRIES },
  })}\n  Token: BACKUP_AGENT_TOKEN\n  --json                    print the result line as JSON on stdout`,
  async run(args, ctx) {
    const { values } = parseFlags(args, { ...COMMON_OPTIONS, ...TRIGGER_OPTIONS }, "trigger");
    if (values.help) {
      ctx.io.stdout.write(`${this.usage}\n`);
      return 0;
    }
    const agentUrl = values["agent-url"] ?? ctx.env.BACKUP_AGENT_URL;
    if (!agentUrl) throw new JobError("usage", "trigger backup: no agent URL", { hint: "pass --agent-url http://<agent host>:<port> or set BACKUP_AGENT_URL" });
    try {
      new URL(agentUrl);
    } catch {
      throw new JobError("usage", `trigger backup: '${agentUrl}' is not a URL`);
    }
    addUrlSecrets(agentUrl);
    const token = ctx.env.BACKUP_AGENT_TOKEN;
    if (!token) throw new JobError("usage", "trigger backup: BACKUP_AGENT_TOKEN is not set", { hint: "set it to the agent's token" });
    let failure: BackupEvent | undefined;
    const outcome = await triggerBackup({
      agentUrl,
      token,
      kind: values.kind ?? "auto",
      attempts: intFlag(values.retries, "retries", DEFAULT_TRIGGER_RETRIES, 0) + 1,
      onEvent: (e) => {
        // The result line below says it, with the exit code; kept in case the stream breaks before it.
        if (isFailureEvent(e)) failure = e;
        else ctx.logger.event(e);
      },
      onRetry: (reason) => ctx.logger.warn(`agent not reachable (${reason}); retrying`),
    }).catch((e: unknown) => {
      if (failure) ctx.logger.event(failure);
      throw e;
    });
    const r = outcome.result!;
    if (values.json) ctx.io.stdout.write(`${JSON.stringify(r)}\n`);
    else if (r.ok) ctx.io.stdout.write(`${r.kind} backup ${r.id} complete (${r.manifestKey})\n`);
    else ctx.logger.error(`backup failed on the agent: ${r.error.message}`, { kind: r.error.kind, exitCode: outcome.exitCode });
    return outcome.exitCode;
  },
};
