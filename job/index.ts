/**
 * The job as a library: an app server takes backups in-process (`backup({ store, databases: [{ db }] })`,
 * the LiveStore case of docs/design.md fact 7) or mounts the agent's handler on its own server.
 */
export { backup, chooseKind, databasesInDir, findPrevious, readCatalog, readManifest, resolveSources, sourceNameFor, LATEST_KEY } from "./backup.ts";
export type { BackupKind, BackupOptions, BackupResult, DatabaseInput } from "./backup.ts";
export { createAgentHandler, tokenMatches } from "./commands/agent.ts";
export type { AgentResult } from "./commands/agent.ts";
export { triggerBackup } from "./commands/trigger.ts";
export { main } from "./cli.ts";
export { EXIT, JobError, exitCodeOf } from "./errors.ts";
export { createLogger } from "./log.ts";
export type { BackupEvent, Logger } from "./log.ts";
export { backupMetrics, cloudWatchSink, metricsFromEnv, postWebhook, METRICS } from "./notify.ts";
export type { MetricDatum, MetricsSink } from "./notify.ts";
export { HttpStore } from "./store/http-store.ts";
export type { BackupStore } from "./store/types.ts";

import { backup, type BackupOptions, type BackupResult } from "./backup.ts";
import { HttpStore } from "./store/http-store.ts";

/** Convenience: a backup through the Worker at `workerUrl` with `token` (defaults: R2_WORKER_URL, SERVER_BYPASS_TOKEN). */
export async function backupToWorker(options: Omit<BackupOptions, "store"> & { workerUrl?: string; token?: string }): Promise<BackupResult> {
  const { workerUrl, token, ...rest } = options;
  const store = new HttpStore({ url: workerUrl ?? process.env.R2_WORKER_URL ?? "", token: token ?? process.env.SERVER_BYPASS_TOKEN ?? "" });
  return backup({ ...rest, store });
}
