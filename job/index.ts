/**
 * The package's public API (`import { backup } from "r2-sqlite-backup"`; the `exports` map lets nothing
 * else in). An app server takes backups in-process (`backup({ store, databases: [{ db }] })`, the LiveStore
 * case of docs/design.md fact 7), mounts the agent's handler on its own server, restores, or runs the drill.
 * Everything here is covered by semver (CHANGELOG.md); the modules behind it are not.
 */
export { backup, databasesInDir } from "./backup.ts";
export type { BackupKind, BackupOptions, BackupResult, DatabaseInput } from "./backup.ts";
export { liveStoreDatabases, liveStoreFiles } from "./livestore.ts";
export type { LiveStoreLike } from "./livestore.ts";
export { restore, verify } from "./restore/index.ts";
export type { DrillRecord, RestoreOptions, RestoreProgress, RestoreResult, RestoreStepInfo, RestoreTarget, VerifyOptions, VerifyResult } from "./restore/index.ts";
export { createAgentHandler } from "./commands/agent.ts";
export type { AgentResult } from "./commands/agent.ts";
export { triggerBackup } from "./commands/trigger.ts";
export type { TriggerOutcome } from "./commands/trigger.ts";
export { HttpStore, HttpStatusError } from "./store/http-store.ts";
export { DirStore } from "./store/dir-store.ts";
export type { DirStoreOptions } from "./store/dir-store.ts";
export type { HttpStoreOptions } from "./store/http-store.ts";
export type { BackupStore, ChainView, CommitOutcome, GetResult, ListPage, PutOptions, StoredObject } from "./store/types.ts";
export { allEntries, chainPosition, rebuildChain } from "./chain.ts";
export type { ChainPosition } from "./chain.ts";
export type { ChainEntry, ChainHead } from "../core/chain.ts";
export { EXIT, JobError, exitCodeOf } from "./errors.ts";
export type { ErrorKind, ExitCode } from "./errors.ts";
export { createLogger } from "./log.ts";
export type { BackupEvent, Logger } from "./log.ts";
export { cloudWatchSink, metricsFromEnv } from "./notify.ts";
export type { MetricDatum, MetricsSink } from "./notify.ts";
export { main } from "./cli.ts";
export { MANIFEST_FORMAT } from "../core/manifest.ts";
export type { Manifest } from "../core/manifest.ts";

import { backup, type BackupOptions, type BackupResult } from "./backup.ts";
import { HttpStore } from "./store/http-store.ts";

/** Convenience: a backup through the Worker at `workerUrl` with `token` (defaults: R2_WORKER_URL, SERVER_BYPASS_TOKEN). */
export async function backupToWorker(options: Omit<BackupOptions, "store"> & { workerUrl?: string; token?: string }): Promise<BackupResult> {
  const { workerUrl, token, ...rest } = options;
  const store = new HttpStore({ url: workerUrl ?? process.env.R2_WORKER_URL ?? "", token: token ?? process.env.SERVER_BYPASS_TOKEN ?? "" });
  return backup({ ...rest, store });
}
