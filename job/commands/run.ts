import type { ParseArgsOptionsConfig } from "node:util";
import { DEFAULT_FULL_EVERY_HOURS, DEFAULT_PART_BYTES, type ChangeTable } from "../../core/index.ts";
import { backup, databasesInDir, type BackupOptions, type BackupResult, type DatabaseInput } from "../backup.ts";
import { COMMON_OPTIONS, WORKER_OPTIONS, WORKER_USAGE, intFlag, parseFlags, prepareTmpDir, storeFromFlags, usageOf, type Command, type CommandContext } from "../config.ts";
import { JobError } from "../errors.ts";
import { addUrlSecrets, isFailureEvent, type BackupEvent } from "../log.ts";
import { metricsFromEnv } from "../notify.ts";
import { parseCpuShare } from "../stream.ts";
import { workerReplicaLag } from "../replica-lag.ts";
import { HttpStore } from "../store/http-store.ts";

/** `r2backup run`: one backup now, where the database file is (docs/design.md fact 1). */

export const BACKUP_OPTIONS = {
  db: { type: "string", multiple: true },
  "data-dir": { type: "string" },
  source: { type: "string", multiple: true },
  documents: { type: "string" },
  "documents-query": { type: "string" },
  "documents-source": { type: "string" },
  kind: { type: "string" },
  "changes-table": { type: "string", multiple: true },
  "tmp-dir": { type: "string" },
  "lock-file": { type: "string" },
  integrity: { type: "string" },
  cpu: { type: "string" },
  "part-mib": { type: "string" },
  "full-every-hours": { type: "string" },
  "no-promote": { type: "boolean" },
  "app-name": { type: "string" },
  "app-version": { type: "string" },
  "webhook-url": { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

/** The default and the bounds of --part-mib: parts are 5 MiB (R2's minimum) to 95 MiB (the Worker's limit). */
const DEFAULT_PART_MIB = DEFAULT_PART_BYTES / (1024 * 1024);
const MAX_PART_MIB = 95;

export const BACKUP_USAGE = `Backup:
${usageOf(BACKUP_OPTIONS, {
  db: { arg: "<path>", text: "a SQLite database (repeatable); never created when missing" },
  "data-dir": { arg: "<dir>", text: "or: every *.db under a data directory (LiveStore keeps several)" },
  source: { arg: "<name>", text: "the name of each --db in the backup, in order", fallback: "its file name" },
  documents: { arg: "<dir>", text: "archive a folder of markdown documents as documents.tar.zst (full backups)" },
  "documents-query": { arg: "<sql>", text: "rows (name, body) of this query on the snapshot, as query/<name>.md" },
  "documents-source": { arg: "<name>", text: "the database the query runs on", fallback: "the first" },
  kind: {
    arg: "full|incremental|auto",
    text: `auto: full when the newest full is >= --full-every-hours old, or when an incremental cannot carry a database (no change table, other tables changed, rows deleted below the watermark, other databases than the full backup's), else incremental; incremental exits 2 in those cases`,
    fallback: "auto",
  },
  "changes-table": { arg: "t:c1,c2", text: "a table exported by incrementals, keyed by c1,c2 (repeatable)", fallback: "eventlog:seqNumGlobal,seqNumClient" },
  "tmp-dir": { arg: "<dir>", text: "snapshots and compressed copies", env: "BACKUP_TMP_DIR", fallback: "the OS temp dir" },
  "lock-file": { arg: "<path>", text: "one run at a time", fallback: "<tmp-dir>/r2backup.lock" },
  integrity: { arg: "quick|full", text: "quick_check or integrity_check on the snapshot (restore's flag too)", fallback: "quick" },
  cpu: { arg: "<cores>", text: "cap the average CPU share while compressing, e.g. 0.5 (half a core)", fallback: "no cap" },
  "part-mib": { arg: "<n>", text: `multipart part size in MiB (5..${MAX_PART_MIB})`, fallback: DEFAULT_PART_MIB },
  "full-every-hours": { arg: "<h>", text: "the age of the newest full at which auto takes a full backup", fallback: DEFAULT_FULL_EVERY_HOURS },
  "no-promote": { text: "skip the daily copy" },
  "app-name": { arg: "<name>", text: "recorded in the manifest", env: "APP_NAME" },
  "app-version": { arg: "<version>", text: "recorded in the manifest", env: "APP_VERSION" },
  "webhook-url": { arg: "<url>", text: "POST the outcome here", env: "BACKUP_WEBHOOK_URL" },
})}
Metrics: set CLOUDWATCH_NAMESPACE (+ AWS_REGION and AWS credentials) to put CloudWatch metrics.`;

/** Parses `table:col1,col2`. */
export function parseChangeTable(spec: string): ChangeTable {
  const m = /^([A-Za-z_][A-Za-z0-9_@$]*):([A-Za-z_][A-Za-z0-9_$]*(?:,[A-Za-z_][A-Za-z0-9_$]*)*)$/.exec(spec);
  if (!m)
    throw new JobError("usage", `parse flag '--changes-table': '${spec}' is not <table>:<col1>[,<col2>...]`, { hint: "e.g. --changes-table eventlog:seqNumGlobal,seqNumClient" });
  return { table: m[1]!, columns: m[2]!.split(",") };
}

type BackupFlags = {
  [K in keyof typeof BACKUP_OPTIONS]?: (typeof BACKUP_OPTIONS)[K] extends { multiple: true } ? string[] : (typeof BACKUP_OPTIONS)[K] extends { type: "boolean" } ? boolean : string;
};

/** The library options of a backup from flags and environment (shared by `run` and `agent`). */
export async function backupOptionsFromFlags(
  values: BackupFlags & { "worker-url"?: string; token?: string },
  ctx: CommandContext,
): Promise<Omit<BackupOptions, "kind"> & { kind: "full" | "incremental" | "auto" }> {
  const env = ctx.env;
  const dbs = values.db ?? [];
  if (dbs.length > 0 && values["data-dir"]) throw new JobError("usage", "parse flags of 'run': give --db or --data-dir, not both");
  let databases: DatabaseInput[];
  if (values["data-dir"]) databases = await databasesInDir(values["data-dir"]);
  else {
    const names = values.source ?? [];
    if (names.length > dbs.length) throw new JobError("usage", "parse flags of 'run': more --source than --db");
    databases = dbs.map((path, i) => ({ path, ...(names[i] ? { source: names[i] } : {}) }));
  }
  if (databases.length === 0) throw new JobError("usage", "parse flags of 'run': no database given", { hint: "pass --db <path> (repeatable) or --data-dir <dir>" });
  const kind = values.kind ?? "auto";
  if (kind !== "full" && kind !== "incremental" && kind !== "auto") throw new JobError("usage", `parse flag '--kind': '${kind}' is not full, incremental or auto`);
  const integrity = values.integrity ?? "quick";
  if (integrity !== "quick" && integrity !== "full") throw new JobError("usage", `parse flag '--integrity': '${integrity}' is not quick or full`);
  const cpu = values.cpu === undefined ? undefined : parseCpuShare(values.cpu, "flag '--cpu'");
  const partMiB = values["part-mib"] === undefined ? undefined : intFlag(values["part-mib"], "part-mib", DEFAULT_PART_MIB, 5);
  if (partMiB !== undefined && partMiB > MAX_PART_MIB) throw new JobError("usage", `parse flag '--part-mib': ${partMiB} is over 95 (the Worker's request limit)`);
  const metrics = metricsFromEnv(env);
  const webhookUrl = values["webhook-url"] ?? env.BACKUP_WEBHOOK_URL;
  addUrlSecrets(webhookUrl);
  const tmpDir = values["tmp-dir"] ?? env.BACKUP_TMP_DIR;
  await prepareTmpDir(tmpDir);
  const appName = values["app-name"] ?? env.APP_NAME;
  const docs =
    values.documents || values["documents-query"]
      ? {
          ...(values.documents ? { dir: values.documents } : {}),
          ...(values["documents-query"] ? { query: values["documents-query"] } : {}),
          ...(values["documents-source"] ? { querySource: values["documents-source"] } : {}),
        }
      : undefined;
  const store = storeFromFlags(values, env, ctx.logger, ctx.io.signal);
  return {
    store,
    databases,
    kind,
    integrity,
    ...(cpu !== undefined ? { cpu } : {}),
    ...(docs ? { documents: docs } : {}),
    ...(values["changes-table"]?.length ? { changeTables: values["changes-table"].map(parseChangeTable) } : {}),
    ...(tmpDir ? { tmpDir } : {}),
    ...(values["lock-file"] ? { lockFile: values["lock-file"] } : {}),
    ...(partMiB ? { partBytes: partMiB * 1024 * 1024 } : {}),
    fullEveryHours: intFlag(values["full-every-hours"], "full-every-hours", DEFAULT_FULL_EVERY_HOURS, 1),
    ...(values["no-promote"] ? { promote: false } : {}),
    ...(appName ? { app: { name: appName, version: values["app-version"] ?? env.APP_VERSION ?? "unknown" } } : {}),
    ...(metrics ? { metrics, ...(store instanceof HttpStore ? { replicaLag: workerReplicaLag(store.url, (values.token ?? env.SERVER_BYPASS_TOKEN)!) } : {}) } : {}),
    ...(webhookUrl ? { webhookUrl } : {}),
    onEvent: (e) => ctx.logger.event(e),
    ...(ctx.io.signal ? { signal: ctx.io.signal } : {}),
  };
}

function formatBytes(n: number): string {
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** One line a human reads after a backup. */
export function summarize(r: BackupResult): string {
  const rows = r.manifest.changes ? `, ${Object.values(r.manifest.changes).reduce((a, b) => a + b, 0)} changed rows` : "";
  return (
    `${r.kind} backup ${r.id} complete: ${r.manifest.files.length} file(s), ${formatBytes(r.uncompressedBytes)} -> ${formatBytes(r.storedBytes)}${rows} in ${(r.durationMs / 1000).toFixed(1)} s\n` +
    `  manifest ${r.manifestKey}${r.promoted ? `\n  promoted to backups/daily/${r.promoted.day}/` : ""}${r.warnings.map((w) => `\n  warning: ${w}`).join("")}\n`
  );
}

export const runCommand: Command = {
  usage: `r2backup run --db <path> [--db <path>...] | --data-dir <dir> [options]\n\n${BACKUP_USAGE}\n\n${WORKER_USAGE}\n  --json                    print the result (with the manifest) as JSON on stdout`,
  async run(args, ctx) {
    const { values } = parseFlags(args, { ...BACKUP_OPTIONS, ...WORKER_OPTIONS, ...COMMON_OPTIONS }, "run");
    if (values.help) {
      ctx.io.stdout.write(`${this.usage}\n`);
      return 0;
    }
    const options = await backupOptionsFromFlags(values, ctx);
    let failure: BackupEvent | undefined;
    const result = await backup({
      ...options,
      onEvent: (e) => {
        // main() prints the thrown error with its exit code; only the id of the set left behind is news.
        if (isFailureEvent(e)) failure = e;
        else ctx.logger.event(e);
      },
    }).catch((e: unknown) => {
      if (failure?.type === "log" && typeof failure.id === "string") {
        ctx.logger.warn(`${failure.kind} backup ${failure.id} did not complete: without its manifest, nothing under that id is listed or restored`, { id: failure.id });
      }
      throw e;
    });
    ctx.io.stdout.write(values.json ? `${JSON.stringify(result, null, 2)}\n` : summarize(result));
    return 0;
  },
};
