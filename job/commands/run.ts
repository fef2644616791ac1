import type { ParseArgsOptionsConfig } from "node:util";
import type { ChangeTable } from "../../core/index.ts";
import { backup, databasesInDir, type BackupOptions, type BackupResult, type DatabaseInput } from "../backup.ts";
import { COMMON_OPTIONS, WORKER_OPTIONS, WORKER_USAGE, intFlag, parseFlags, storeFromFlags, type Command, type CommandContext } from "../config.ts";
import { JobError } from "../errors.ts";
import { isFailureEvent, type BackupEvent } from "../log.ts";
import { metricsFromEnv } from "../notify.ts";
import { workerReplicaLag } from "../replica-lag.ts";

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
  "part-mib": { type: "string" },
  "full-every-hours": { type: "string" },
  "no-promote": { type: "boolean" },
  "app-name": { type: "string" },
  "app-version": { type: "string" },
  "webhook-url": { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

export const BACKUP_USAGE = `Backup:
  --db <path>                 a SQLite database (repeatable); never created when missing
  --data-dir <dir>            or: every *.db under a data directory (LiveStore keeps several)
  --source <name>             the name of each --db in the backup, in order (default: its file name)
  --kind full|incremental|auto  auto (default): full when the newest full is >= 6 h old, else incremental
  --documents <dir>           archive a folder of markdown documents as documents.tar.zst (full backups)
  --documents-query <sql>     rows (name, body) of this query on the snapshot, as query/<name>.md
  --documents-source <name>   the database the query runs on (default: the first)
  --changes-table t:c1,c2     a table exported by incrementals, keyed by c1,c2 (repeatable;
                              default eventlog:seqNumGlobal,seqNumClient)
  --tmp-dir <dir>             snapshots and compressed copies (env BACKUP_TMP_DIR; default the OS temp dir)
  --lock-file <path>          one run at a time (default <tmp-dir>/r2backup.lock)
  --integrity quick|full      quick_check (default) or integrity_check on the snapshot
  --part-mib <n>              multipart part size in MiB (5..95, default 8)
  --full-every-hours <h>      the age at which auto takes a full backup (default 6)
  --no-promote                skip the daily copy
  --app-name, --app-version   recorded in the manifest (env APP_NAME, APP_VERSION)
  --webhook-url <url>         POST the outcome here (env BACKUP_WEBHOOK_URL)
Metrics: set CLOUDWATCH_NAMESPACE (+ AWS_REGION and AWS credentials) to put CloudWatch metrics.`;

/** Parses `table:col1,col2`. */
export function parseChangeTable(spec: string): ChangeTable {
  const m = /^([A-Za-z_][A-Za-z0-9_@$]*):([A-Za-z_][A-Za-z0-9_$]*(?:,[A-Za-z_][A-Za-z0-9_$]*)*)$/.exec(spec);
  if (!m) throw new JobError("usage", `parse flag '--changes-table': '${spec}' is not <table>:<col1>[,<col2>...]`, { hint: "e.g. --changes-table eventlog:seqNumGlobal,seqNumClient" });
  return { table: m[1]!, columns: m[2]!.split(",") };
}

type BackupFlags = { [K in keyof typeof BACKUP_OPTIONS]?: (typeof BACKUP_OPTIONS)[K] extends { multiple: true } ? string[] : (typeof BACKUP_OPTIONS)[K] extends { type: "boolean" } ? boolean : string };

/** The library options of a backup from flags and environment (shared by `run` and `agent`). */
export async function backupOptionsFromFlags(values: BackupFlags & { "worker-url"?: string; token?: string }, ctx: CommandContext): Promise<Omit<BackupOptions, "kind"> & { kind: "full" | "incremental" | "auto" }> {
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
  const partMiB = values["part-mib"] === undefined ? undefined : intFlag(values["part-mib"], "part-mib", 16, 5);
  if (partMiB !== undefined && partMiB > 95) throw new JobError("usage", `parse flag '--part-mib': ${partMiB} is over 95 (the Worker's request limit)`);
  const metrics = metricsFromEnv(env);
  const webhookUrl = values["webhook-url"] ?? env.BACKUP_WEBHOOK_URL;
  const tmpDir = values["tmp-dir"] ?? env.BACKUP_TMP_DIR;
  const appName = values["app-name"] ?? env.APP_NAME;
  const docs = values.documents || values["documents-query"]
    ? { ...(values.documents ? { dir: values.documents } : {}), ...(values["documents-query"] ? { query: values["documents-query"] } : {}), ...(values["documents-source"] ? { querySource: values["documents-source"] } : {}) }
    : undefined;
  const store = storeFromFlags(values, env, ctx.logger);
  return {
    store,
    databases,
    kind,
    integrity,
    ...(docs ? { documents: docs } : {}),
    ...(values["changes-table"]?.length ? { changeTables: values["changes-table"].map(parseChangeTable) } : {}),
    ...(tmpDir ? { tmpDir } : {}),
    ...(values["lock-file"] ? { lockFile: values["lock-file"] } : {}),
    ...(partMiB ? { partBytes: partMiB * 1024 * 1024 } : {}),
    ...(values["full-every-hours"] ? { fullEveryHours: intFlag(values["full-every-hours"], "full-every-hours", 6, 1) } : {}),
    ...(values["no-promote"] ? { promote: false } : {}),
    ...(appName ? { app: { name: appName, version: values["app-version"] ?? env.APP_VERSION ?? "unknown" } } : {}),
    ...(metrics ? { metrics, replicaLag: workerReplicaLag(store.url, (values.token ?? env.SERVER_BYPASS_TOKEN)!) } : {}),
    ...(webhookUrl ? { webhookUrl } : {}),
    onEvent: (e) => ctx.logger.event(e),
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
  summary: "take a backup now (full, incremental or auto) and upload it through the Worker",
  usage: `r2backup run --db <path> [--db <path>...] | --data-dir <dir> [options]\n\n${BACKUP_USAGE}\n\n${WORKER_USAGE}\n  --json                print the result (with the manifest) as JSON on stdout`,
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
