import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  DOCUMENTS_FILE,
  METRICS,
  NEVER_DRILLED_AGE_HOURS,
  assertSourceName,
  fileKey,
  formatBackupKey,
  formatTimestamp,
  requireFile,
  sourceOfFile,
  type DatabaseInfo,
  type FileEntry,
  type Manifest,
  type Watermark,
} from "../../core/index.ts";
import { LIVESTORE, decideDerived, sameHead, stateHeadOf, type DerivedDecision } from "../coverage.ts";
import { lastGoodDrillAgeHours } from "../drills.ts";
import { JobError, throwIfInterrupted } from "../errors.ts";
import type { MetricDatum, MetricsSink } from "../notify.ts";
import type { BackupStore } from "../store/types.ts";
import { ChangeApplier, advanceWatermarks, checkWatermarks, watermarkId } from "./apply.ts";
import { checkDocumentsTarget, documentsTemp, replaceDocuments, tarExtractor } from "./documents.ts";
import { ObjectIntegrityError, ObjectMissingError, downloadObject, type FileCheck } from "./download.ts";
import { loadPlan, olderCandidate, type LoadedPlan } from "./plan.ts";
import { checkTarget, discardTemp, existingAt, followLinks, makeDirectory, refuseHeld, removeStaleTemps, replaceAtomically, tempPathFor } from "./replace.ts";

/**
 * Restore and the restore drill (docs/design.md, "Job"): plan the newest complete full backup at or before a
 * time plus its incremental chain, stream each object into a temporary file beside the target while
 * checking its sha256, re-apply the changes, run `PRAGMA integrity_check` and the watermark check, and
 * only then replace the target atomically. Any failure leaves the target byte for byte as it was.
 */

export type RestorePhase = "plan" | "download" | "apply" | "check" | "replace" | "done";

export interface RestoreProgress {
  phase: RestorePhase;
  /** The object or target the phase works on. */
  key?: string;
  /** Stored bytes received of the current object. */
  bytes?: number;
  total?: number;
  message?: string;
}

export interface RestoreOptions {
  store: BackupStore;
  /**
   * The database file to restore to. When the backup holds several databases and no `source` is given,
   * a directory: every database is restored to `<to>/<source>.db` (created when missing).
   */
  to?: string;
  /**
   * Or: the app's data directory. Every database goes back to the path it had under the `run --data-dir` it
   * was taken from (`<dataDir>/<storeId>/eventlog@6.db`), so the app (LiveStore's `baseDirectory`) starts on it.
   */
  dataDir?: string;
  /** The point in time (default "latest"). */
  at?: Date | "latest";
  /** Restore only this database of a backup that holds several. */
  source?: string;
  /** Treat `to` as a directory even for a single database (the drill does). */
  intoDirectory?: boolean;
  /** Replace a target that exists. Without it an existing target is refused before anything is downloaded. */
  force?: boolean;
  /** Plan and check the targets, download nothing, change nothing. */
  dryRun?: boolean;
  /** `integrity_check` (default, as docs/design.md asks) or the faster `quick_check`. */
  check?: "integrity" | "quick";
  /** Interruptions survived per object, each resumed with `Range` (default 5). */
  resumes?: number;
  /** Also extract the full backup's `documents.tar.zst` into this directory (missing, empty, or --force). */
  documentsTo?: string;
  onProgress?: (p: RestoreProgress) => void;
  /**
   * Stops the restore between its steps (each object, each incremental, before the check and the replace): it
   * rejects with the `interrupted` JobError and the targets stay as they were. Give the same signal to the
   * HttpStore to stop a download in flight too.
   */
  signal?: AbortSignal;
}

export interface RestoreTarget {
  source: string;
  path: string;
  /** Whether something was at the path before (replaced, or would be with --force). */
  existed: boolean;
  /** The manifest's stored/uncompressed size of the snapshot. */
  size: number;
  uncompressedSize: number;
}

export interface RestoreStepInfo {
  kind: "full" | "daily" | "incremental";
  id: string;
  ts: string;
}

export interface RestoreResult {
  at: string;
  restoresTo: string;
  full: RestoreStepInfo;
  chain: RestoreStepInfo[];
  notes: string[];
  dryRun: boolean;
  targets: RestoreTarget[];
  /** Stored bytes downloaded (0 for a dry run). */
  bytes: number;
  /** Rows re-applied from incrementals, per `<source>/<table>`. */
  rows: Record<string, number>;
  /** Downloads resumed with `Range`. */
  resumes: number;
  integrity: "ok" | "not run";
  /** Temporary files of killed restores that were removed. */
  removedStale: string[];
  /** With `documentsTo`: where the documents went and how many files. */
  documents?: { path: string; files: number; existed: boolean };
  /**
   * LiveStore state DBs: kept only when they provably match the restored event log; a state DB left out is
   * absent at its path (an old one there is removed, with --force), so LiveStore rebuilds it on boot.
   */
  derived: (DerivedDecision & { path: string })[];
  durationMs: number;
}

function safeFileName(db: DatabaseInfo): string {
  // Not the manifest's fileName: it is informational (and may hold a relative path); the source name is
  // unique within a backup and limited to a safe charset by core.
  return `${assertSourceName(db.source)}.db`;
}

type PlannedTarget = Omit<RestoreTarget, "existed"> & { info: DatabaseInfo };

async function resolveTargets(full: Manifest, options: RestoreOptions): Promise<PlannedTarget[]> {
  const dbs = full.files.filter((f) => f.role === "database").map((f) => ({ file: f, info: full.databases.find((d) => d.source === (f.source ?? sourceOfFile(f.name)))! }));
  const describe = (f: { file: { source?: string } }) => f.file.source!;
  const target = (d: (typeof dbs)[number], path: string): PlannedTarget => ({
    source: d.file.source!,
    path: resolve(path),
    size: d.file.size,
    uncompressedSize: d.file.uncompressedSize,
    info: d.info,
  });
  if (options.dataDir !== undefined) {
    // Each back where it was under the data directory; a database recorded without a path (taken with --db) as <source>.db.
    const at = (d: (typeof dbs)[number]) => join(options.dataDir!, ...(d.info.path ?? safeFileName(d.info)).split("/"));
    if (options.source !== undefined) {
      const one = dbs.find((d) => d.file.source === options.source);
      if (!one)
        throw new JobError("notFound", `restore source '${options.source}': backup ${full.id} holds ${dbs.map(describe).join(", ")}`, { hint: "pick one of them with --source" });
      return [target(one, at(one))];
    }
    return dbs.map((d) => target(d, at(d)));
  }
  if (options.to === undefined)
    throw new JobError("usage", "restore: give --to <path> (a database file, or a directory for several) or --data-dir <dir> (the app's data directory)");
  if (options.source !== undefined) {
    const one = dbs.find((d) => d.file.source === options.source);
    if (!one) {
      throw new JobError("notFound", `restore source '${options.source}': backup ${full.id} holds ${dbs.map(describe).join(", ")}`, { hint: "pick one of them with --source" });
    }
    return [target(one, options.intoDirectory ? join(options.to, safeFileName(one.info)) : options.to)];
  }
  if (dbs.length === 1 && !options.intoDirectory) return [target(dbs[0]!, options.to)];
  const st = await stat(options.to).catch(() => undefined);
  // A file, or a new path named like a database file (app.db): meant for one database, not a directory of them.
  if ((st && !st.isDirectory()) || (!st && !options.intoDirectory && /\.(db|sqlite3?|db3)$/i.test(options.to))) {
    throw new JobError(
      "usage",
      `restore to '${options.to}': backup ${full.id} holds ${dbs.length} databases (${dbs.map(describe).join(", ")}) and this ${st ? "is a file" : "names a database file"}`,
      { hint: "give a directory to restore them all, or pick one with --source <name>" },
    );
  }
  const to = options.to;
  return dbs.map((d) => target(d, join(to, safeFileName(d.info))));
}

/** The chain's last watermark per `<source>/<table>`: the full backup's `to`, advanced by each incremental's. */
function finalWatermarks(full: Manifest, chain: readonly Manifest[]): Map<string, Watermark> {
  const out = new Map<string, Watermark>();
  for (const m of [full, ...chain]) for (const w of m.to) out.set(watermarkId(w), w);
  return out;
}

/** Rewraps a failure of one object with the next older restorable time, so the user never gets a silent substitute. */
function withOlderCandidate(e: unknown, loaded: LoadedPlan, stepTs: string): unknown {
  if (!(e instanceof ObjectIntegrityError || e instanceof ObjectMissingError || (e instanceof JobError && e.kind === "integrity"))) return e;
  const older = olderCandidate(loaded, stepTs);
  const hint = older ? `nothing was changed; the next older candidate is --at ${older}` : "nothing was changed; no older backup exists to restore instead";
  return new JobError(e.kind, e.detail, { hint: `${e.hint ? `${e.hint}; ` : ""}${hint}`, cause: e });
}

function runCheck(db: DatabaseSync, kind: "integrity" | "quick", where: string): void {
  const pragma = kind === "integrity" ? "integrity_check" : "quick_check";
  const rows = db.prepare(`PRAGMA ${pragma}`).all() as Record<string, unknown>[];
  const lines = rows.map((r) => String(Object.values(r)[0]));
  if (lines.length !== 1 || lines[0] !== "ok") {
    throw new JobError("integrity", `check database '${where}': PRAGMA ${pragma} reported ${lines.slice(0, 5).join("; ")}${lines.length > 5 ? "; ..." : ""}`, {
      hint: "the backup is damaged; restore an earlier time with --at",
    });
  }
}

/**
 * Restores a database (or every database of a backup) to a point in time. Refuses an existing target
 * without `force`; on any failure the target is untouched and no temporary file is left behind.
 */
export async function restore(options: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const { store, onProgress } = options;
  const at = options.at ?? "latest";
  onProgress?.({ phase: "plan", message: `planning a restore at ${at === "latest" ? "latest" : formatTimestamp(at)}` });
  // With --source, the newest sets holding that database (another may have been backed up into the bucket since).
  const loaded = await loadPlan(store, at, options.source);
  const { plan, full, chain } = loaded;
  const planned = await resolveTargets(full, options);
  for (const t of planned) t.path = await followLinks(t.path);
  if (new Set(planned.map((t) => t.path)).size !== planned.length) {
    throw new JobError("usage", `restore to '${options.to ?? options.dataDir}': two databases would land on the same file`, { hint: "restore them one at a time with --source" });
  }
  // LiveStore state DBs: decided from the manifests before anything is downloaded (a stale one is not fetched).
  const marks = finalWatermarks(full, chain);
  const derived: RestoreResult["derived"] = [];
  for (const t of planned) {
    if (t.info.coverage !== "derived" || t.info.derivedFrom === undefined) continue;
    derived.push({ ...decideDerived(t.info, marks.get(watermarkId({ source: t.info.derivedFrom, table: LIVESTORE.eventlogTable }))), path: t.path });
  }
  const leftOut = new Set(derived.filter((d) => !d.keep).map((d) => d.source));
  if (!options.dryRun) {
    if (options.dataDir !== undefined) for (const t of planned) await makeDirectory(dirname(t.path), "--data-dir");
    else if (planned.length > 1 || options.intoDirectory) await makeDirectory(resolve(options.to!), "--to (a directory for a backup of several databases)");
  }
  const targets: RestoreTarget[] = [];
  for (const { info: _info, ...t } of planned) {
    // A dry run reports what is there; the real run refuses it before downloading anything. A state DB left
    // out is checked too: with --force an old one at its path is removed, so the app cannot boot on it.
    const exists = options.dryRun ? (await existingAt(t.path)).length > 0 : (await checkTarget(t.path, !!options.force)).exists;
    if (!leftOut.has(t.source)) targets.push({ ...t, existed: exists });
  }
  let documents: { path: string; files: number; existed: boolean; entry: FileEntry } | undefined;
  if (options.documentsTo !== undefined) {
    const entry = full.files.find((f) => f.role === "documents");
    if (!entry) {
      throw new JobError("notFound", `restore documents of backup '${full.id}': it holds no ${DOCUMENTS_FILE}`, {
        hint: "documents are backed up with r2backup run --documents <dir>; restore without --documents-to",
      });
    }
    const path = resolve(options.documentsTo);
    const { exists } = options.dryRun ? { exists: (await stat(path).catch(() => undefined)) !== undefined } : await checkDocumentsTarget(path, !!options.force);
    documents = { path, files: 0, existed: exists, entry };
  }
  const base = {
    at: plan.at,
    restoresTo: plan.restoresTo,
    full: plan.full,
    chain: plan.chain,
    notes: plan.notes,
    targets,
    derived,
  };
  const documentsResult = () => (documents ? { documents: { path: documents.path, files: documents.files, existed: documents.existed } } : {});
  if (options.dryRun) {
    return {
      ...base,
      ...documentsResult(),
      dryRun: true,
      bytes: 0,
      rows: {},
      resumes: 0,
      integrity: "not run",
      removedStale: [],
      durationMs: Math.round(performance.now() - started),
    };
  }

  const removedStale: string[] = [];
  for (const t of targets) removedStale.push(...(await removeStaleTemps(t.path)));
  if (documents) removedStale.push(...(await removeStaleTemps(documents.path)));
  let docsTemp: string | undefined;
  const temps = new Map(targets.map((t) => [t.source, tempPathFor(t.path)]));
  const dbs = new Map<string, DatabaseSync>();
  const sources = new Set(targets.map((t) => t.source));
  let bytes = 0;
  let resumes = 0;
  const rows: Record<string, number> = {};
  const check = options.check ?? "integrity";
  const fullDir = plan.full.kind === "daily" ? ("daily" as const) : ("full" as const);
  // Each snapshot's decompressed sha256 is checked on a worker thread once its file is written, beside the
  // next download or the integrity check; every one is awaited before the file is changed or trusted.
  const fileChecks: FileCheck[] = [];
  const awaitFileChecks = async () => {
    try {
      for (const c of fileChecks) await c.done;
    } catch (e) {
      throw withOlderCandidate(e, loaded, plan.full.ts);
    }
    fileChecks.length = 0;
  };
  try {
    for (const t of targets) {
      throwIfInterrupted(options.signal, `restore '${t.path}'`);
      const entry = requireFile(full, `${t.source}.db.zst`);
      const key = fileKey(fullDir, plan.full.id, entry.name);
      onProgress?.({ phase: "download", key, bytes: 0, total: entry.size });
      try {
        const got = await downloadObject(store, key, entry, temps.get(t.source)!, {
          resumes: options.resumes ?? 5,
          deferFileHash: true,
          databaseFrames: true,
          onBytes: (n) => onProgress?.({ phase: "download", key, bytes: n, total: entry.size }),
        });
        bytes += got.bytes;
        resumes += got.resumes;
        if (got.fileCheck) fileChecks.push(got.fileCheck);
      } catch (e) {
        throw withOlderCandidate(e, loaded, plan.full.ts);
      }
    }
    // Re-applying changes writes to the files: their hashes must be settled first.
    if (chain.length > 0) await awaitFileChecks();
    for (const t of targets) {
      const db = new DatabaseSync(temps.get(t.source)!);
      dbs.set(t.source, db);
      // The file is thrown away on failure and fsynced before the rename: no need to sync each commit.
      // The page cache stays at SQLite's default (2 MiB): the check reads through the OS cache, and the
      // restore's memory must not grow with the database (bench: peak RSS <= 200 MiB at 1 GiB).
      db.exec("PRAGMA synchronous = OFF");
    }

    const running = new Map<string, Watermark>();
    for (const w of full.to) if (sources.has(w.source)) running.set(watermarkId(w), w);
    for (const m of chain) {
      throwIfInterrupted(options.signal, `apply incremental '${m.id}'`);
      const entry = requireFile(m, "changes.ndjson.zst");
      const key = fileKey("incremental", m.id, entry.name);
      const before = new Map(running);
      advanceWatermarks(running, m, sources);
      const applier = new ChangeApplier(dbs, before, key);
      onProgress?.({ phase: "apply", key, bytes: 0, total: entry.size });
      applier.begin();
      try {
        const got = await downloadObject(store, key, entry, applier.sink(), {
          resumes: options.resumes ?? 5,
          onBytes: (n) => onProgress?.({ phase: "apply", key, bytes: n, total: entry.size }),
        });
        applier.commit();
        bytes += got.bytes;
        resumes += got.resumes;
      } catch (e) {
        applier.rollback();
        throw withOlderCandidate(e, loaded, m.id);
      }
      for (const [id, n] of applier.rows) rows[id] = (rows[id] ?? 0) + n;
    }

    for (const t of targets) {
      throwIfInterrupted(options.signal, `check '${t.path}'`);
      onProgress?.({ phase: "check", key: t.path, message: `PRAGMA ${check}_check` });
      const db = dbs.get(t.source)!;
      // The check is synchronous and only reads: flush the file meanwhile on the libuv pool, so the fsync
      // before the rename finds (almost) nothing left to write. The fsync is issued before the check starts.
      const handle = await open(temps.get(t.source)!, "r");
      const flushing = handle.sync().catch(() => {});
      try {
        runCheck(db, check, `${t.source} (restoring to ${t.path})`);
        checkWatermarks(db, t.source, running.values());
        const decision = derived.find((d) => d.source === t.source);
        if (decision) {
          // The manifest said it matches; the file must say so too, or it is left out like a stale one.
          const head = stateHeadOf(db);
          if (!sameHead(head, decision.stateHead))
            Object.assign(decision, {
              keep: false,
              reason: `the file materialized up to ${JSON.stringify(head)}, not the ${JSON.stringify(decision.stateHead)} its manifest records`,
            });
        }
      } catch (e) {
        await awaitFileChecks(); // a checksum mismatch, when there is one, is the clearer diagnosis
        throw withOlderCandidate(e, loaded, plan.restoresTo);
      } finally {
        await flushing;
        await handle.close();
      }
      db.close();
      dbs.delete(t.source);
    }
    await awaitFileChecks();
    if (documents) {
      const key = fileKey(fullDir, plan.full.id, DOCUMENTS_FILE);
      docsTemp = await documentsTemp(documents.path);
      const extractor = tarExtractor(docsTemp);
      onProgress?.({ phase: "download", key, bytes: 0, total: documents.entry.size });
      try {
        const got = await downloadObject(store, key, documents.entry, extractor.sink, {
          resumes: options.resumes ?? 5,
          onBytes: (n) => onProgress?.({ phase: "download", key, bytes: n, total: documents!.entry.size }),
        });
        bytes += got.bytes;
        resumes += got.resumes;
      } catch (e) {
        throw withOlderCandidate(e, loaded, plan.full.ts);
      }
      documents.files = extractor.files();
    }
    throwIfInterrupted(options.signal, `restore to '${options.to ?? options.dataDir}'`);
    // Before the first file is changed, no process may hold any of them open (an app restarted during the
    // download): checked for all at once, so a refusal leaves every one as it was.
    const inPlace: string[] = [];
    for (const p of [...targets.map((t) => t.path), ...derived.map((d) => d.path)]) inPlace.push(...(await existingAt(p)));
    await refuseHeld(options.to ?? options.dataDir ?? "", inPlace);
    // LiveStore state DBs go last, and whatever sits at their paths goes first: at any point a kill stops this,
    // the data directory holds no state DB or one that matches its event log (never a new log beside an old state).
    for (const d of derived) {
      if (!d.keep) {
        const i = targets.findIndex((t) => t.source === d.source);
        if (i >= 0) targets.splice(i, 1);
        const temp = temps.get(d.source);
        if (temp) {
          await discardTemp(temp);
          temps.delete(d.source);
        }
      }
      // Left out, nothing may sit at its path or LiveStore would boot on it instead of rebuilding it. Without
      // --force, one that appeared since the start is refused (exit 10), as for any target.
      if ((await checkTarget(d.path, !!options.force)).exists) for (const f of await existingAt(d.path)) await rm(f, { force: true });
    }
    const isDerived = new Set(derived.map((d) => d.source));
    for (const t of [...targets.filter((x) => !isDerived.has(x.source)), ...targets.filter((x) => isDerived.has(x.source))]) {
      onProgress?.({ phase: "replace", key: t.path });
      await replaceAtomically(temps.get(t.source)!, t.path, { force: !!options.force });
      temps.delete(t.source);
    }
    if (documents && docsTemp) {
      await replaceDocuments(docsTemp, documents.path);
      docsTemp = undefined;
    }
  } catch (e) {
    for (const c of fileChecks) await c.cancel();
    for (const db of dbs.values()) if (db.isOpen) db.close();
    for (const temp of temps.values()) await discardTemp(temp);
    if (docsTemp) await rm(docsTemp, { recursive: true, force: true });
    throw e;
  }
  for (const t of targets) {
    // The bytes were checked in full before the rename, which does not change them; reopening proves the
    // file at the target is that database (schema readable, page count as checked).
    // Read-write: a read-only connection to a WAL database would leave its -wal and -shm behind.
    const db = new DatabaseSync(t.path);
    try {
      db.prepare("SELECT count(*) FROM sqlite_schema").get();
    } finally {
      db.close();
    }
  }
  onProgress?.({ phase: "done", message: `restored to ${plan.restoresTo}` });
  return { ...base, ...documentsResult(), dryRun: false, bytes, rows, resumes, integrity: "ok", removedStale, durationMs: Math.round(performance.now() - started) };
}

/** The record of one restore drill, stored as `backups/drills/<ts>.json`. */
export interface DrillRecord {
  ts: string;
  ok: boolean;
  at: string;
  restoresTo: string | null;
  full: string | null;
  chain: string[];
  sources: string[];
  durationMs: number;
  bytes: number;
  integrity: "ok" | "failed" | "not run";
  rows: Record<string, number>;
  error?: string;
}

/** The drill's metrics, beside core's `RestoreDrillAgeHours` that the "no drill for 35 days" alarm watches. */
export const DRILL_METRICS = {
  ageHours: METRICS.restoreDrillAgeHours,
  failed: METRICS.restoreDrillFailed,
  duration: METRICS.restoreDrillDurationSeconds,
} as const;

/** Reported as the drill age when no drill has ever succeeded: just over the alarm's 35 days. */
export const NEVER_SUCCEEDED_AGE_HOURS = NEVER_DRILLED_AGE_HOURS;
export { lastGoodDrillAgeHours };

export interface VerifyOptions {
  store: BackupStore;
  at?: Date | "latest";
  /** Where the drill's temporary directory is made (default: the OS temp dir). */
  tmpDir?: string;
  /** The clock (the drill's timestamp and the drill age); default the Worker's (`GET /api/chain`), like set ids. */
  now?: () => Date;
  check?: "integrity" | "quick";
  onProgress?: (p: RestoreProgress) => void;
  /** The job's metrics sink (CloudWatch); best effort, as for backups. */
  metrics?: MetricsSink;
  /** Stops the drill as `restore({ signal })` does; an interrupted drill records nothing and rejects. */
  signal?: AbortSignal;
}

export interface VerifyResult {
  record: DrillRecord;
  /** The restore's error when the drill failed (its JobError kind gives the exit code). */
  error?: unknown;
  /** The key the record was written to, or undefined when writing it failed (see `recordError`). */
  key?: string;
  recordError?: string;
  metrics: MetricDatum[];
  metricsError?: string;
}

/**
 * The restore drill: restores every database of the backup at `at` into a temporary directory, checks it,
 * records the outcome under `backups/drills/` (a failed drill too) and puts metrics. Nothing is replaced.
 */
export async function verify(options: VerifyOptions): Promise<VerifyResult> {
  const now = options.now ?? (await options.store.chain()).clock;
  const startedAt = now();
  const started = performance.now();
  const at = options.at ?? "latest";
  const ts = formatTimestamp(startedAt);
  const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), "r2backup-drill-"));
  let record: DrillRecord;
  let error: unknown;
  try {
    const r = await restore({
      store: options.store,
      to: dir,
      at,
      intoDirectory: true,
      ...(options.check ? { check: options.check } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    record = {
      ts,
      ok: true,
      at: r.at,
      restoresTo: r.restoresTo,
      full: r.full.ts,
      chain: r.chain.map((c) => c.ts),
      sources: r.targets.map((t) => t.source),
      durationMs: Math.round(performance.now() - started),
      bytes: r.bytes,
      integrity: r.integrity,
      rows: r.rows,
    };
  } catch (e) {
    // Stopped, not failed: a drill that did not finish says nothing about the backups.
    if (e instanceof JobError && e.kind === "interrupted") throw e;
    error = e;
    record = {
      ts,
      ok: false,
      at: at === "latest" ? "latest" : formatTimestamp(at),
      restoresTo: null,
      full: null,
      chain: [],
      sources: [],
      durationMs: Math.round(performance.now() - started),
      bytes: 0,
      integrity: e instanceof JobError && e.kind === "integrity" ? "failed" : "not run",
      rows: {},
      error: e instanceof Error ? e.message : String(e),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const result: VerifyResult = { record, metrics: [], ...(error === undefined ? {} : { error }) };
  const key = formatBackupKey(record.ok ? { kind: "drill", ts } : { kind: "drill", ts, failed: true });
  try {
    await options.store.put(key, `${JSON.stringify(record, null, 2)}\n`, { contentType: "application/json" });
    result.key = key;
  } catch (e) {
    result.recordError = e instanceof Error ? e.message : String(e);
  }
  try {
    // A failed drill reports the age of the last good one, so repeated failures still reach the alarm.
    const age = record.ok ? 0 : ((await lastGoodDrillAgeHours(options.store, startedAt)) ?? NEVER_SUCCEEDED_AGE_HOURS);
    result.metrics = [
      { name: DRILL_METRICS.ageHours, value: Math.round(age * 100) / 100, unit: "Count" },
      { name: DRILL_METRICS.failed, value: record.ok ? 0 : 1, unit: "Count" },
      { name: DRILL_METRICS.duration, value: record.durationMs / 1000, unit: "Seconds" },
    ];
    await options.metrics?.put(result.metrics);
  } catch (e) {
    result.metricsError = e instanceof Error ? e.message : String(e);
  }
  return result;
}
