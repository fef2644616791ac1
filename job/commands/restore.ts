import { ContractError, parsePointInTime } from "../../core/index.ts";
import { COMMON_OPTIONS, WORKER_OPTIONS, WORKER_USAGE, intFlag, parseFlags, storeFromFlags, usageOf, type Command, type CommandContext } from "../config.ts";
import { JobError } from "../errors.ts";
import { restore, type RestoreProgress, type RestoreResult } from "../restore/index.ts";

/**
 * `r2backup restore`: a database at a point in time, from the newest complete full backup at or before it
 * plus the incremental chain. Never overwrites by surprise: an existing target needs `--force`, and a
 * failed restore leaves it byte for byte as it was.
 */

/** Interruptions of one object's download resumed with Range before the restore gives up. */
const DEFAULT_RESUMES = 5;

export const RESTORE_OPTIONS = {
  to: { type: "string" },
  "data-dir": { type: "string" },
  at: { type: "string" },
  source: { type: "string" },
  "dry-run": { type: "boolean" },
  force: { type: "boolean" },
  integrity: { type: "string" },
  resumes: { type: "string" },
  "documents-to": { type: "string" },
} as const;

/** `--at`: `latest`, a backup timestamp or an ISO time with a zone. */
export function parseAtFlag(value: string | undefined): Date | "latest" {
  if (value === undefined) return "latest";
  try {
    return parsePointInTime(value);
  } catch (e) {
    if (e instanceof ContractError) throw new JobError("usage", `parse flag '--at': ${e.message}`);
    throw e;
  }
}

/** `--integrity full|quick` (the name `run` uses too): integrity_check (default) or quick_check. */
export function parseIntegrityFlag(value: string | undefined): "integrity" | "quick" {
  if (value === undefined || value === "full") return "integrity";
  if (value === "quick") return "quick";
  throw new JobError("usage", `parse flag '--integrity': '${value}' is not full or quick`);
}

/** Progress events of a restore, as the job's logger shows them. */
export function progressTo(ctx: CommandContext): (p: RestoreProgress) => void {
  return (p) => {
    if (p.bytes !== undefined)
      ctx.logger.progress({ type: "progress", phase: p.phase, ...(p.key ? { file: p.key } : {}), bytes: p.bytes, ...(p.total === undefined ? {} : { total: p.total }) });
    else if (p.message) ctx.logger.info(p.message, p.key ? { file: p.key } : {});
  };
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

/** The plan and outcome, for people. */
export function summarizeRestore(r: RestoreResult): string {
  const lines = [
    `${r.dryRun ? "plan" : "restored"} at ${r.at}: restores to ${r.restoresTo}`,
    `  full         ${r.full.ts}${r.full.kind === "daily" ? ` (daily copy ${r.full.id})` : ""}`,
    ...r.chain.map((c) => `  incremental  ${c.ts}`),
    ...r.targets.map(
      (t) => `  ${t.source} -> ${t.path}  (${mib(t.size)} stored, ${mib(t.uncompressedSize)} restored)${t.existed ? (r.dryRun ? "  EXISTS: needs --force" : "  replaced") : ""}`,
    ),
    ...r.derived.map((d) => `  ${d.source} -> ${d.keep ? "kept" : "LEFT OUT"}: ${d.reason}${d.keep ? "" : `; LiveStore rebuilds it from ${d.derivedFrom} on boot`}`),
    ...(r.documents
      ? [
          `  documents -> ${r.documents.path}${r.dryRun ? "" : `  (${r.documents.files} files)`}${r.documents.existed ? (r.dryRun ? "  NOT EMPTY: needs --force" : "  replaced") : ""}`,
        ]
      : []),
    ...r.notes.map((n) => `  note: ${n}`),
  ];
  if (r.dryRun) lines.push("dry run: nothing was downloaded or changed");
  else {
    const rows = Object.entries(r.rows)
      .map(([k, v]) => `${v} ${k}`)
      .join(", ");
    lines.push(
      `  downloaded ${mib(r.bytes)}${r.resumes ? ` (${r.resumes} resumed)` : ""}; re-applied ${rows || "no rows"}; ${r.integrity === "ok" ? "integrity ok" : "not checked"}; ${(r.durationMs / 1000).toFixed(1)} s`,
    );
    if (r.removedStale.length) lines.push(`  removed ${r.removedStale.length} temporary file(s) of an interrupted restore`);
  }
  return `${lines.join("\n")}\n`;
}

export const restoreCommand: Command = {
  usage: `r2backup restore --to <path> | --data-dir <dir> [--at <time>|latest] [--source <name>] [--dry-run] [--force] [--json]

${usageOf(RESTORE_OPTIONS, {
  to: { arg: "<path>", text: "the database file to write; when the backup holds several databases and --source is not given, a directory: each goes to <path>/<source>.db" },
  "data-dir": {
    arg: "<dir>",
    text: "or: the app's data directory. Each database goes back to the path it had under the 'run --data-dir' it came from (<dir>/<storeId>/eventlog@6.db), so the app starts on <dir> as it is (LiveStore: baseDirectory). A LiveStore state DB comes back only when it provably matches the restored event log; otherwise it is left out (an old one at its path is removed) and LiveStore rebuilds it on boot",
  },
  at: {
    arg: "<time>",
    text: "latest, a backup timestamp (20260131T060000Z) or an ISO time with a zone (2026-01-31T06:30:00Z): the newest full at or before it, then the incrementals up to it",
    fallback: "latest",
  },
  source: { arg: "<name>", text: "restore only this database, from the newest sets holding it (another database may have been backed up into the bucket since)" },
  "dry-run": { text: "print the plan and change nothing" },
  force: { text: "replace an existing target, unless a process holds it open (stop the app first); its stale -wal, -shm and -journal are removed" },
  integrity: { arg: "full|quick", text: "PRAGMA integrity_check or quick_check before the replace (run's flag too)", fallback: "full" },
  resumes: { arg: "<n>", text: "interrupted downloads resumed with Range per object", fallback: DEFAULT_RESUMES },
  "documents-to": {
    arg: "<dir>",
    text: "also extract the backup's documents.tar.zst here (a missing or empty directory, or any with --force; moved into place only after the restore succeeded)",
  },
})}
${WORKER_USAGE}
  --json                    print the result as JSON

Exit codes: 0 restored, 8 a checksum or integrity check failed (the object is named, with the next
older --at), 9 no backup matches the time or the chain has a gap, 10 the target exists (use --force) or a process holds it open.`,
  async run(args, ctx) {
    const { values } = parseFlags(args, { ...WORKER_OPTIONS, ...COMMON_OPTIONS, ...RESTORE_OPTIONS }, "restore");
    if (values.help) {
      ctx.io.stdout.write(`${this.usage}\n`);
      return 0;
    }
    if (!values.to === !values["data-dir"])
      throw new JobError("usage", "parse flags of 'restore': give --to <path> or --data-dir <dir> (one of them)", {
        hint: "e.g. r2backup restore --to ./restored.db --at latest, or r2backup restore --data-dir ./data",
      });
    const store = storeFromFlags(values, ctx.env, ctx.logger, ctx.io.signal);
    const result = await restore({
      store,
      ...(values.to ? { to: values.to } : { dataDir: values["data-dir"]! }),
      at: parseAtFlag(values.at),
      ...(values.source ? { source: values.source } : {}),
      force: !!values.force,
      dryRun: !!values["dry-run"],
      check: parseIntegrityFlag(values.integrity),
      resumes: intFlag(values.resumes, "resumes", DEFAULT_RESUMES),
      ...(values["documents-to"] ? { documentsTo: values["documents-to"] } : {}),
      onProgress: progressTo(ctx),
      ...(ctx.io.signal ? { signal: ctx.io.signal } : {}),
    });
    ctx.io.stdout.write(values.json ? `${JSON.stringify(result, null, 2)}\n` : summarizeRestore(result));
    return 0;
  },
};
