import type { ApiStatus } from "../../core/api.ts";
import { DEFAULT_REPLICA_MAX_LAG_HOURS, summarizeReplica, summarizeStatus } from "../../core/status.ts";
import { catalogInChain } from "../../core/chain.ts";
import { readHead } from "./chain.ts";
import type { Env } from "./env.ts";
import { HttpError, describeError } from "./errors.ts";
import { missingFromReplica } from "../../core/catalog.ts";
import { catalogOf, copyBudget, replicate, type ReplicationRun } from "./replicate.ts";

export { catalogOf } from "./replicate.ts";

/** The freshness limit when `MAX_BACKUP_AGE_HOURS` is not set: one missed 6-hourly run, as the alarms. */
export const DEFAULT_MAX_BACKUP_AGE_HOURS = 7;

/** An hours variable as a number, `fallback` when unset; a value that is set but not a positive number is a 500. */
function hoursVariable(env: Env, name: "MAX_BACKUP_AGE_HOURS" | "REPLICA_MAX_LAG_HOURS", fallback: number): number {
  const raw = env[name];
  if (raw === undefined || String(raw).trim() === "") return fallback;
  const hours = Number(raw);
  if (!Number.isFinite(hours) || hours <= 0) {
    throw new HttpError(500, "misconfigured", `read variable '${name}' '${String(raw).slice(0, 40)}': expected a positive number of hours`);
  }
  return hours;
}

/** `MAX_BACKUP_AGE_HOURS` as a number; a value that is set but not a positive number is a 500. */
export function maxBackupAgeHours(env: Env): number {
  return hoursVariable(env, "MAX_BACKUP_AGE_HOURS", DEFAULT_MAX_BACKUP_AGE_HOURS);
}

/** `REPLICA_MAX_LAG_HOURS` as a number (default 12); a value that is set but not a positive number is a 500. */
export function replicaMaxLagHours(env: Env): number {
  return hoursVariable(env, "REPLICA_MAX_LAG_HOURS", DEFAULT_REPLICA_MAX_LAG_HOURS);
}

/**
 * `GET /api/status`: the newest complete full, incremental, daily and drill, their ages and `healthy`
 * (from core's `summarizeStatus`), plus the replica's lag when a replica bucket is bound: a replica that
 * stays behind longer than `REPLICA_MAX_LAG_HOURS` is a problem, so the cron check alerts on it.
 */
export async function backupStatus(env: Env, now: Date): Promise<ApiStatus> {
  const hours = maxBackupAgeHours(env);
  // The newest backups are the chain's: a complete set outside it (a commit that lost) is not the freshest.
  const catalog = catalogInChain(await catalogOf(env.BACKUP_BUCKET), (await readHead(env.BACKUP_BUCKET))?.head ?? null);
  const status = summarizeStatus(catalog, now, hours);
  if (env.BACKUP_REPLICA_BUCKET) {
    const missing = missingFromReplica(catalog, await catalogOf(env.BACKUP_REPLICA_BUCKET));
    const replica = summarizeReplica(missing, now, replicaMaxLagHours(env));
    status.replica = replica;
    if (replica.behind) {
      status.problems.push(
        `the replica bucket lacks ${replica.lag} complete set(s); the oldest, ${replica.missing[0]}, is ${replica.oldestMissingAgeHours} hours old (limit ${replica.maxLagHours})`,
      );
      status.healthy = false;
    }
  }
  return status;
}

/** The alert the dead-man's switch posts: `text` for chat webhooks (Slack, Mattermost), `status` for machines. */
export function alertPayload(status: ApiStatus): { text: string; status: ApiStatus } {
  return { text: `r2-sqlite-backup: backups need attention: ${status.problems.join("; ")}`, status };
}

/**
 * The cron trigger: copies what the replica lacks (when bound), then checks freshness and, when the
 * newest complete full backup is older than `MAX_BACKUP_AGE_HOURS` (or there is none), posts an alert to
 * `ALERT_WEBHOOK_URL`. Healthy: it posts nothing. Failures are thrown so the cron run shows as failed.
 */
export async function runScheduled(env: Env, now: Date): Promise<{ status: ApiStatus; alerted: boolean; replication?: ReplicationRun }> {
  let replication: ReplicationRun | undefined;
  let replicaError: unknown;
  if (env.BACKUP_REPLICA_BUCKET) {
    try {
      replication = await replicate(env.BACKUP_BUCKET, env.BACKUP_REPLICA_BUCKET, copyBudget(env, Date.now()));
      if (replication.resumeAt) {
        const r = replication.resumeAt;
        console.log(`replica copy: budget used up in '${r.key}' (${r.partsDone}/${r.partsTotal} parts); the next run resumes it`);
      }
    } catch (error) {
      replicaError = error;
    }
  }
  const status = await backupStatus(env, now);
  let alerted = false;
  if (!status.healthy) {
    const url = env.ALERT_WEBHOOK_URL;
    if (url) {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(alertPayload(status)),
      });
      await response.body?.cancel();
      if (!response.ok) throw new Error(`post alert to ALERT_WEBHOOK_URL: the webhook answered ${response.status}`);
      alerted = true;
    } else {
      console.warn(`backups are stale and ALERT_WEBHOOK_URL is not set: ${status.problems.join("; ")}`);
    }
  }
  if (replicaError !== undefined) throw new Error(`replicate backups: ${describeError(replicaError)}`);
  return { status, alerted, ...(replication ? { replication } : {}) };
}
