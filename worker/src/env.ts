/**
 * Everything the Worker is bound to (names from `BINDINGS` in core/api.ts; infra binds the same names).
 * Secrets and variables are optional in the type because a deployment can forget them: the Worker then
 * answers 500 naming the missing one instead of failing open.
 */
export interface Env {
  // Bindings
  /** The backup bucket. */
  BACKUP_BUCKET: R2Bucket;
  /** A second bucket in another location; when bound, the scheduled handler fills it (docs/design.md fact 4). */
  BACKUP_REPLICA_BUCKET?: R2Bucket;

  // Secrets
  /** The job's token: read and write, never delete. */
  SERVER_BYPASS_TOKEN?: string;
  /** During a rotation only: the job's previous token, accepted as the job's until the rotation ends. */
  SERVER_BYPASS_TOKEN_PREVIOUS?: string;
  /** The operator's token: everything, including deletes. */
  ADMIN_TOKEN?: string;

  // Variables
  /** The dead-man's switch: the newest complete full backup may be at most this old (hours). */
  MAX_BACKUP_AGE_HOURS?: string;
  /** Where the scheduled check posts an alert when backups are stale. */
  ALERT_WEBHOOK_URL?: string;
  /** The replica lag alarm: a complete set missing from the replica for longer than this (hours) alerts. */
  REPLICA_MAX_LAG_HOURS?: string;
  /** Replica copy tuning (worker/src/replicate.ts): part size (MiB), parts per cron run, time budget (s). */
  REPLICA_COPY_PART_MIB?: string;
  REPLICA_COPY_PARTS_PER_RUN?: string;
  REPLICA_COPY_TIME_BUDGET_SECONDS?: string;
}
