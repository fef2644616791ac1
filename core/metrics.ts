/**
 * The monitoring contract (docs/design.md, "Monitoring"): the CloudWatch metrics the job emits and the alarms
 * in infra watch, and the environment variables through which infra hands the job its configuration.
 * Metrics are published without dimensions, so the alarms match them.
 */
export const METRICS = {
  /** 1 per completed backup (Sum). The "no successful backup for 7 hours" alarm watches it. */
  backupSucceeded: "BackupSucceeded",
  /** 1 per failed backup (Sum). Any datapoint above 0 alarms. */
  backupFailed: "BackupFailed",
  /** Bytes uploaded by a backup. */
  backupBytes: "BackupBytes",
  /** Wall time of a backup, in seconds. */
  backupDurationSeconds: "BackupDurationSeconds",
  /** Bytes a backup stored in the bucket (compressed; its daily copy not counted). */
  storedBytes: "StoredBytes",
  /** Hours since the newest successful restore drill, emitted with every backup and drill (alarms look back 7 days at most). */
  restoreDrillAgeHours: "RestoreDrillAgeHours",
  /** 1 per failed restore drill, 0 per passed one. */
  restoreDrillFailed: "RestoreDrillFailed",
  /** Wall time of a restore drill, in seconds. */
  restoreDrillDurationSeconds: "RestoreDrillDurationSeconds",
  /** With a replica bucket: complete sets the replica lacks, from the Worker's /api/status, after each backup. */
  replicaLagSets: "ReplicaLagSets",
  /** With a replica bucket: hours since the oldest set the replica lacks was taken (0 when none); alarmed. */
  replicaLagHours: "ReplicaLagHours",
} as const;

/** The alarm fires when the newest successful restore drill is older than this (docs/design.md: 35 days). */
export const RESTORE_DRILL_ALARM_HOURS = 35 * 24;
/** Reported as the drill age when no drill has ever succeeded: just over the alarm's threshold. */
export const NEVER_DRILLED_AGE_HOURS = RESTORE_DRILL_ALARM_HOURS + 1;

/** The default CloudWatch namespace of those metrics. */
export const DEFAULT_METRICS_NAMESPACE = "R2SqliteBackup";

/** Environment variables the job reads (the seed's two, the agent's token, the webhook, the metrics settings). */
export const JOB_ENV = {
  workerUrl: "R2_WORKER_URL",
  serverToken: "SERVER_BYPASS_TOKEN",
  agentToken: "BACKUP_AGENT_TOKEN",
  webhookUrl: "BACKUP_WEBHOOK_URL",
  metricsNamespace: "CLOUDWATCH_NAMESPACE",
  awsRegion: "AWS_REGION",
  awsAccessKeyId: "AWS_ACCESS_KEY_ID",
  awsSecretAccessKey: "AWS_SECRET_ACCESS_KEY",
} as const;
