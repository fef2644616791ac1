import { setTimeout as sleep } from "node:timers/promises";
import { mkdir, mkdtemp, readdir, rm, stat, unlink } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { basename, join, relative, resolve, sep } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  NEVER_DRILLED_AGE_HOURS,
  CHANGES_FILE,
  DEFAULT_CHANGE_TABLES,
  DEFAULT_FULL_EVERY_HOURS,
  fullDueHours,
  DOCUMENTS_FILE,
  PREFIXES,
  assertSourceName,
  buildManifest,
  CONTENT_CHECKSUM,
  databaseFile,
  fileKey,
  formatBackupKey,
  manifestKey,
  planDailyPromotion,
  serializeManifest,
  type CatalogSet,
  type ChainEntry,
  type PromotionDecision,
  entryTime,
  formatTimestamp,
  parseTimestamp,
  nextSetId,
  type ChangeTable,
  type DatabaseInfo,
  type FileEntry,
  type Manifest,
  type Watermark,
} from "../core/index.ts";
import { chainPosition, readCatalog, readEntryManifest, readManifestAt } from "./chain.ts";
import { exportChanges, type ChangeSource } from "./changes.ts";
import { CoverageError, coverageOf, sameHead, uncoveredReason } from "./coverage.ts";
import { documentsTar } from "./documents.ts";
import { JobError, isNoSpace, throwIfInterrupted } from "./errors.ts";
import { acquireLock, type Lock } from "./lock.ts";
import { promoteToDaily, unfinishedPromotion } from "./promote.ts";
import type { BackupEvent } from "./log.ts";
import { lastGoodDrillAgeHours } from "./drills.ts";
import { backupMetrics, postWebhook, type MetricsSink } from "./notify.ts";
import { Pins } from "./pinned.ts";
import { assertSqliteFile, checkSnapshot, isUnlockedLiveStoreFile, materializeSnapshot, snapshotDatabase, type IntegrityLevel, type SnapshotInfo } from "./sqlite.ts";
import { HttpStatusError } from "./store/http-store.ts";
import type { BackupStore } from "./store/types.ts";
import { compressFile, compressStream, type Digest } from "./stream.ts";
import { KeyTaken, StreamUpload, partSizeFor } from "./upload.ts";
import { TOOL_VERSION } from "./version.ts";
import { removeStaleWorkDirs, workDirPrefix } from "./workdir.ts";

/**
 * The backup engine (docs/design.md, "Job"): snapshot and check each database, compress and hash while
 * uploading, write `metadata.json` LAST, promote the day's first full backup to `daily/`, then move the
 * `latest` pointer. A run that fails before its manifest leaves no manifest, so nothing lists it as
 * restorable. Used by `r2backup run`, the agent, and an app server in-process.
 */

/** One database to back up: a path, the app's open connection (in-process, fact 7), or a snapshot producer. */
export interface DatabaseInput {
  /** Its name in the backup (`<source>.db.zst`); derived from the path when omitted. */
  source?: string;
  path?: string;
  /** An open node:sqlite connection: snapshots and change exports go through it (no second connection). */
  db?: DatabaseSync;
  /** Writes a consistent SQLite copy to `destPath` (e.g. the app's own backup call). Checked like any other. */
  snapshot?: (destPath: string) => Promise<void>;
  /**
   * Its path under the app's data directory ('/'-separated, e.g. `todo/eventlog@6.db`), recorded in the manifest
   * so `restore --data-dir` puts it back there. Set by `--data-dir` and by `liveStoreDatabases()`.
   */
  relativePath?: string;
}

export type BackupKind = "full" | "incremental" | "auto";

export interface BackupOptions {
  store: BackupStore;
  databases: DatabaseInput[];
  kind?: BackupKind;
  /** Markdown documents: a folder, and/or a query run on the snapshot of `querySource` (default: the first). */
  documents?: { dir?: string; query?: string; querySource?: string };
  /** Tables exported by incrementals (default: LiveStore's eventlog keyed by seqNumGlobal, seqNumClient). */
  changeTables?: readonly ChangeTable[];
  /** Where snapshots and compressed copies are written (default: os.tmpdir()). */
  tmpDir?: string;
  /** The lock file (default `<tmpDir>/r2backup.lock`); false when the caller serialises runs itself. */
  lockFile?: string | false;
  integrity?: IntegrityLevel;
  /** A cap on the backup's average CPU share while it compresses, in cores (e.g. 0.5; job/stream.ts CpuPacer). */
  cpu?: number;
  /** `auto` takes a full backup when the newest complete full is at least this old (default 6). */
  fullEveryHours?: number;
  /** Preferred multipart part size (5 MiB..95 MiB; default 16 MiB, grown for huge objects). */
  partBytes?: number;
  /** Copy the day's first complete full backup to `daily/` (default true). */
  promote?: boolean;
  app?: { name: string; version: string };
  onEvent?: (event: BackupEvent) => void;
  metrics?: MetricsSink;
  /** With metrics: reads the replica's lag after the run (job/replica-lag.ts), reported as metrics too. */
  replicaLag?: () => Promise<{ lag: number; oldestMissingAgeHours: number } | undefined>;
  webhookUrl?: string;
  /**
   * Stops the backup between its steps (each snapshot, each compressed chunk, each part, before the manifest): it then
   * rejects with the `interrupted` JobError, having aborted its uploads and written no manifest. Give the same
   * signal to the HttpStore (`new HttpStore({ signal })`) to stop a request in flight too.
   */
  signal?: AbortSignal;
}

export interface BackupResult {
  ok: true;
  kind: "full" | "incremental";
  id: string;
  manifestKey: string;
  manifest: Manifest;
  /** The daily copy made by this run, if any. */
  promoted: { day: string; reason: string } | null;
  /** Problems after the manifest (promotion, pointer, monitoring): the backup itself is complete. */
  warnings: string[];
  durationMs: number;
  storedBytes: number;
  uncompressedBytes: number;
}

/** The latest pointer (overwritable, under backups/state/). */
export const LATEST_KEY = formatBackupKey({ kind: "state", name: "latest.json" });

/** A source name from a relative path: core's charset, '/' as '.', without the `.db` suffix. */
export function sourceNameFor(relPath: string): string {
  const withoutExt = relPath.replace(/\.(db|sqlite3?)$/i, "");
  let name = withoutExt
    .split(/[\\/]+/)
    .filter(Boolean)
    .join(".")
    .replace(/[^A-Za-z0-9._@-]/g, "_")
    .replace(/\.{2,}/g, ".")
    .replace(/^[^A-Za-z0-9]+/, "");
  if (name === "") name = "db";
  return name.slice(0, 120);
}

/** Every `*.db` under a data directory (LiveStore keeps several per store), sources named by relative path. */
export async function databasesInDir(dir: string): Promise<DatabaseInput[]> {
  let entries;
  try {
    entries = await readdir(dir, { recursive: true, withFileTypes: true });
  } catch {
    throw new JobError("database", `read data directory '${dir}': no such directory`, { hint: "check --data-dir" });
  }
  const files = entries
    .filter((e) => e.isFile() && e.name.endsWith(".db"))
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join("/"))
    .sort();
  if (files.length === 0) throw new JobError("database", `read data directory '${dir}': no *.db file under it`, { hint: "check --data-dir" });
  return files.map((f) => ({ path: join(dir, f), source: sourceNameFor(f), relativePath: f }));
}

/** Gives every database a valid, unique source name. */
export function resolveSources(inputs: readonly DatabaseInput[]): (DatabaseInput & { source: string })[] {
  if (inputs.length === 0) throw new JobError("usage", "back up: no database given", { hint: "pass --db <path> (repeatable) or --data-dir <dir>" });
  const paths = new Map<string, number>();
  const named = new Set<string>();
  for (const [i, input] of inputs.entries()) {
    // The same file twice would be backed up twice, under two names; one name given twice, it is unclear which.
    const path = input.path === undefined ? undefined : resolve(input.path);
    if (path !== undefined && paths.has(path)) {
      throw new JobError("usage", `back up '${input.path}': it is given twice (databases ${paths.get(path)! + 1} and ${i + 1})`, { hint: "pass each --db once" });
    }
    if (path !== undefined) paths.set(path, i);
    if (input.source !== undefined && named.has(input.source)) {
      throw new JobError("usage", `back up '${input.path ?? `database ${i + 1}`}': the source name '${input.source}' is given to two databases`, {
        hint: "give each database its own --source name",
      });
    }
    if (input.source !== undefined) named.add(input.source);
  }
  const used = new Set<string>();
  return inputs.map((input, i) => {
    let base = input.source ?? (input.path ? sourceNameFor(basename(input.path)) : `db${i + 1}`);
    try {
      assertSourceName(base);
    } catch (e) {
      if (input.source) throw new JobError("usage", (e as Error).message);
      base = sourceNameFor(base);
    }
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base}-${n}`;
    used.add(name);
    return { ...input, source: name };
  });
}

/**
 * Decides `auto` from the chain's newest full backup and the Worker's clock: full when there is none or it is at
 * least `hours` old. An age is never negative: the chain holds no set from the Worker's future.
 */
export function chooseKind(kind: BackupKind, full: ChainEntry | undefined, now: Date, hours = DEFAULT_FULL_EVERY_HOURS): { kind: "full" | "incremental"; reason: string } {
  if (kind !== "auto") return { kind, reason: `--kind ${kind}` };
  if (!full) return { kind: "full", reason: "the chain holds no full backup yet" };
  const age = Math.max(0, now.getTime() - entryTime(full)) / 3_600_000;
  if (age >= fullDueHours(hours)) return { kind: "full", reason: `the newest full ${full.id} is ${age.toFixed(1)} h old (a full is due every ${hours} h)` };
  return { kind: "incremental", reason: `the newest full ${full.id} is ${age.toFixed(1)} h old (a full is due every ${hours} h)` };
}

/** Turns low-level failures into the job's error kinds (a full disk is exit 6). */
function classify(error: unknown, operation: string): unknown {
  if (error instanceof JobError) return error;
  if (isNoSpace(error)) return new JobError("diskFull", `${operation}: the temporary disk is full`, { hint: "free space or point --tmp-dir at a larger disk", cause: error });
  return error;
}

interface Stored extends Digest {
  tmpFile: string | undefined;
  contentType: string;
}

interface Snap {
  input: DatabaseInput & { source: string };
  path: string;
  info: SnapshotInfo;
  relativePath?: string;
  /** For a LiveStore state DB: the source of the event log beside it. */
  derivedFrom?: string;
}

/** Attempts at a copy that fails its check or tears a LiveStore pair, before the run fails or warns. */
const SNAPSHOT_ATTEMPTS = 4;

/** What shows a lock-free writer at work on a file: its size, its mtime, and a rollback journal beside it. */
async function writerTrace(path: string): Promise<string> {
  const st = await stat(path, { bigint: true }).catch(() => undefined);
  const journal = await stat(`${path}-journal`).then(
    () => "journal",
    () => "",
  );
  return `${st?.size}:${st?.mtimeNs}:${journal}`;
}

async function snapshotOne(
  input: DatabaseInput & { source: string },
  path: string,
  pins: Pins,
  changeTables: readonly ChangeTable[],
  integrity: IntegrityLevel | undefined,
  warn?: (message: string) => void,
): Promise<SnapshotInfo> {
  const lockFree = input.path !== undefined && !input.snapshot && !input.db && (await isUnlockedLiveStoreFile(input.path).catch(() => false));
  for (let attempt = 1; ; attempt++) {
    await unlink(path).catch(() => {});
    let pages: number | undefined;
    const before = lockFree ? await writerTrace(input.path!) : "";
    try {
      pages = await snapshotOnce(input, path, lockFree, pins);
      // A lock-free writer that wrote during the copy (or was mid-transaction) may have torn it: take it again.
      // After the last attempt a copy that passes integrity_check is kept, with a warning.
      if (lockFree) {
        const after = await writerTrace(input.path!);
        if (before !== after || after.endsWith("journal")) {
          if (attempt < SNAPSHOT_ATTEMPTS) {
            await sleep(50 * attempt);
            continue;
          }
          warn?.(
            `${input.source}: the app wrote to '${input.path}' during every copy; the last copy is kept only if it passes integrity_check (stop the app, or back it up in-process, for a copy at a quiet moment)`,
          );
        }
      }
    } catch (e) {
      const error = classify(e, `snapshot database '${input.source}'`);
      if (!lockFree || attempt >= SNAPSHOT_ATTEMPTS || (error instanceof JobError && error.kind !== "database")) throw error;
      await sleep(50 * attempt);
      continue;
    }
    try {
      let info = await checkSnapshot(path, changeTables, { ...(pages !== undefined ? { pagesCopied: pages } : {}), ...(integrity ? { integrity } : {}), pins });
      // LiveStore's SQLite takes no file locks (docs/design.md fact 7): a copy of its file can interleave with a
      // write. integrity_check (not quick_check) sees a row whose index entries are missing, so it is retaken.
      if (lockFree && info.inspection.livestore && integrity !== "full") info = await checkSnapshot(path, changeTables, { integrity: "full", pins });
      return info;
    } catch (e) {
      if (!(e instanceof JobError && e.kind === "integrity") || attempt >= SNAPSHOT_ATTEMPTS) throw e;
      await sleep(50 * attempt);
    }
  }
}

/** One copy of a database into `path`: through its snapshot function, its open connection, or its file (immutable when lock-free). */
async function snapshotOnce(input: DatabaseInput & { source: string }, path: string, lockFree: boolean, pins: Pins): Promise<number | undefined> {
  if (input.snapshot) {
    await input.snapshot(path);
    return undefined;
  }
  if (input.db) return snapshotDatabase(input.db, path);
  if (input.path) return snapshotDatabase(input.path, path, { lockFree, pins });
  throw new JobError("usage", `back up '${input.source}': give a path, an open database or a snapshot function`);
}

/** The directory a database sits in, for pairing a LiveStore state DB with its event log. */
function dirKey(input: DatabaseInput): string | undefined {
  if (input.relativePath !== undefined) return `rel:${input.relativePath.split("/").slice(0, -1).join("/")}`;
  if (input.path) return `abs:${resolve(input.path, "..")}`;
  return undefined;
}

/**
 * Snapshots and checks every database of a full backup. A LiveStore state DB is paired with the event log in
 * its directory; when their heads differ (copied at different moments) both are taken again, and if they still
 * differ the pair is uploaded as it is: restore then leaves the state out and LiveStore rebuilds it.
 */
async function snapshotAll(
  databases: readonly (DatabaseInput & { source: string })[],
  work: Work,
  changeTables: readonly ChangeTable[],
  integrity: IntegrityLevel | undefined,
  log: (level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>) => void,
  signal?: AbortSignal,
): Promise<Snap[]> {
  const snaps: Snap[] = [];
  for (const input of databases) {
    throwIfInterrupted(signal, `snapshot '${input.source}'`);
    const path = join(work.dir, `${input.source}.db`);
    log("info", `snapshot ${input.source}`, { source: input.source });
    const info = await snapshotOne(input, path, work.pins, changeTables, integrity, (m) => log("warn", m, { source: input.source }));
    snaps.push({ input, path, info, ...(input.relativePath !== undefined ? { relativePath: input.relativePath } : {}) });
  }
  for (const state of snaps.filter((s) => s.info.inspection.livestore?.role === "state")) {
    const key = dirKey(state.input);
    const log_ = key === undefined ? undefined : snaps.find((s) => s !== state && s.info.inspection.livestore?.role === "eventlog" && dirKey(s.input) === key);
    if (!log_) continue;
    state.derivedFrom = log_.input.source;
    for (let attempt = 1; !sameHead(state.info.inspection.livestore!.head, log_.info.inspection.livestore!.head); attempt++) {
      const heads = `state at ${JSON.stringify(state.info.inspection.livestore!.head)}, event log at ${JSON.stringify(log_.info.inspection.livestore!.head)}`;
      if (attempt >= SNAPSHOT_ATTEMPTS) {
        log("warn", `${state.input.source}: its copy does not match ${log_.input.source} (${heads}); a restore leaves it out and LiveStore rebuilds it from the event log`, {
          source: state.input.source,
        });
        break;
      }
      log("info", `${state.input.source} and ${log_.input.source} were copied at different moments (${heads}); taking both again`, { source: state.input.source, attempt });
      await sleep(20 * attempt);
      log_.info = await snapshotOne(log_.input, log_.path, work.pins, changeTables, integrity);
      state.info = await snapshotOne(state.input, state.path, work.pins, changeTables, integrity);
    }
  }
  return snaps;
}

/** Attempts at committing before a run gives up to the runs that keep committing first (each retakes the set). */
const COMMIT_ATTEMPTS = 10;
const TOO_MANY_RUNS = "nothing of this run is in the chain; too many runs share this bucket at once, space out their schedules";

type Log = (level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>) => void;

/** Another run took the same set id (same head, same second) and wrote under it first: plan again after it. */
class SetIdTaken extends Error {
  readonly id: string;
  constructor(id: string) {
    super(`set id ${id} is taken by another run`);
    this.id = id;
  }
}

/** A run's work directory (snapshots, the spooled output) and the pins standing in for its snapshots: the run ends both. */
interface Work {
  dir: string;
  pins: Pins;
}

/** What every phase of a run shares: its options, databases, and where it writes. */
interface RunContext {
  options: BackupOptions;
  store: BackupStore;
  databases: (DatabaseInput & { source: string })[];
  changeTables: readonly ChangeTable[];
  tmpDir: string;
  started: number;
  log: Log;
  emit: (e: BackupEvent) => void;
}

/** The plan of one set: its kind and id, the chain position it continues, and whether it is promoted to daily. */
interface SetPlan {
  kind: "full" | "incremental";
  reason: string;
  id: string;
  /** The chain's length this set commits on (compare-and-swap). */
  expect: number;
  clock: () => Date;
  tip: ChainEntry | undefined;
  /** Incremental: the manifest of the set it continues, and of its base full backup. */
  previous?: Manifest;
  baseFull?: Manifest;
  promotion: PromotionDecision | undefined;
  dailies: CatalogSet[];
}

/** What a set's capture uploaded, ready for its manifest. */
interface CapturedSet {
  files: FileEntry[];
  stored: Map<string, Stored>;
  databases: DatabaseInfo[];
  to: Watermark[];
  changes?: Record<string, number>;
  sqliteVersion: string;
  timings: Record<string, number>;
  /** When the data was read, on the Worker's clock: an upper bound. */
  capturedAt: Date;
}

/** Phase 1: the lock, the databases (a missing or non-SQLite file fails first, exit 3, before the Worker is asked anything). */
async function prepare(ctx: Omit<RunContext, "databases" | "changeTables">): Promise<{ databases: RunContext["databases"]; lock: Lock | undefined }> {
  await mkdir(ctx.tmpDir, { recursive: true });
  const lock = ctx.options.lockFile !== false ? await acquireLock(ctx.options.lockFile ?? join(ctx.tmpDir, "r2backup.lock")) : undefined;
  try {
    await removeStaleWorkDirs(ctx.tmpDir);
    const databases = resolveSources(ctx.options.databases);
    for (const d of databases) if (d.path && !d.db && !d.snapshot) await assertSqliteFile(d.path);
    return { databases, lock };
  } catch (e) {
    await lock?.release();
    throw e;
  }
}

/**
 * Phase 2: plans the set on the chain's head. The kind comes from the chain's newest full (and, for an
 * incremental, from what it can carry: other databases than the base full's never continue its chain); the id
 * from the Worker's clock, after the tip.
 */
async function planSet(ctx: RunContext, forceFull: string | undefined, after: string | undefined): Promise<SetPlan> {
  const { options, store } = ctx;
  throwIfInterrupted(options.signal, "back up");
  const position = await chainPosition(store);
  const clock = position.view.clock;
  if (Math.abs(position.view.skewMs) > 60_000) {
    ctx.log("warn", `this machine's clock is ${(position.view.skewMs / 1000).toFixed(0)} s off the Worker's; the backup uses the Worker's`, { skewMs: position.view.skewMs });
  }
  let decided = forceFull ? { kind: "full" as const, reason: forceFull } : chooseKind(options.kind ?? "auto", position.full, clock(), options.fullEveryHours);
  let previous: Manifest | undefined;
  let baseFull: Manifest | undefined;
  if (decided.kind === "incremental") {
    if (!position.full || !position.tip) {
      throw new JobError("notFound", "take incremental backup: the chain holds no full backup to continue", {
        hint: "run a full backup first: r2backup run --kind full (a bucket from before 0.3 has no chain yet)",
      });
    }
    previous = await readEntryManifest(store, position.tip);
    baseFull = position.tip.kind === "full" ? previous : await readEntryManifest(store, position.full);
    const blocked = uncoveredReason(
      baseFull!.databases,
      ctx.databases.map((d) => d.source),
    );
    if (blocked) {
      if (options.kind !== "auto" && options.kind !== undefined) throw blocked;
      decided = { kind: "full", reason: blocked.detail };
      previous = undefined;
      baseFull = undefined;
    }
  }
  let id = nextSetId(position.view.head, clock());
  if (after !== undefined && id <= after) id = formatTimestamp(new Date(parseTimestamp(after).getTime() + 1000));
  let promotion: PromotionDecision | undefined;
  let dailies: CatalogSet[] = [];
  if (decided.kind === "full" && options.promote !== false) {
    dailies = (await readCatalog(store, { areas: [PREFIXES.daily] })).daily;
    const fulls = (position.view.head?.tail ?? []).filter((e) => e.kind === "full").map((e) => ({ kind: "full" as const, id: e.id, complete: true }));
    promotion = planDailyPromotion(id, [...dailies.map((s) => ({ kind: s.kind, id: s.id, complete: s.complete })), ...fulls]);
  }
  return {
    kind: decided.kind,
    reason: decided.reason,
    id,
    expect: position.expect,
    clock,
    tip: position.tip,
    ...(previous ? { previous } : {}),
    ...(baseFull ? { baseFull } : {}),
    promotion,
    dailies,
  };
}

/** Phase 3: snapshots (full) or exports the changes (incremental) and uploads every object of the set. */
async function captureSet(ctx: RunContext, plan: SetPlan, work: Work): Promise<CapturedSet> {
  const { options, store, databases, changeTables, log, emit } = ctx;
  const { kind, id } = plan;
  const timings: Record<string, number> = {};
  const files: FileEntry[] = [];
  const stored = new Map<string, Stored>();
  const dbInfos: DatabaseInfo[] = [];
  let to: Watermark[] = [];
  let changes: Record<string, number> | undefined;
  let sqliteVersion = "";
  let capturedAt: Date;
  // The compressed copies are kept on disk only when this run will re-send them to daily/ (no copy in R2).
  const keepCopies = plan.promotion?.promote === true;

  /** Compresses `source` into the object `name`; `afterRead` runs once every byte of it is compressed (the upload may go on). */
  const put = async (
    name: string,
    source: AsyncIterable<Buffer | string> | { file: string },
    estimate: number,
    contentType: string,
    total?: number,
    afterRead?: () => Promise<void>,
  ): Promise<Stored> => {
    const key = fileKey(kind, id, name);
    throwIfInterrupted(options.signal, `upload '${key}'`);
    // The compressed bytes are spooled to the work dir and sent from there (no part held in memory); the file
    // is kept only when this run re-sends it to daily/.
    const spool = join(work.dir, name);
    const tmpFile = keepCopies ? spool : undefined;
    const upload = new StreamUpload(store, key, { partBytes: partSizeFor(estimate, options.partBytes), contentType, spool, signal: options.signal });
    try {
      const compressOptions = {
        ...(options.cpu !== undefined ? { cpu: options.cpu } : {}),
        pins: work.pins,
        onProgress: (bytes: number) => emit({ type: "progress", phase: "upload", file: name, bytes, ...(total !== undefined ? { total } : {}) }),
      };
      const sink = (chunk: Buffer) => {
        throwIfInterrupted(options.signal, `upload '${key}'`);
        return upload.write(chunk);
      };
      const digest = "file" in source ? await compressFile(source.file, sink, compressOptions) : await compressStream(source, sink, compressOptions);
      await afterRead?.();
      await upload.finish(digest.sha256);
      if (!keepCopies) await rm(spool, { force: true });
      const s = { ...digest, tmpFile, contentType };
      stored.set(name, s);
      emit({ type: "progress", phase: "upload", file: name, bytes: digest.uncompressedSize, total: digest.uncompressedSize });
      return s;
    } catch (e) {
      await upload.abort();
      await rm(spool, { force: true });
      if ((e instanceof HttpStatusError && e.status === 409) || e instanceof KeyTaken) throw new SetIdTaken(id);
      throw classify(e, `upload '${key}'`);
    }
  };

  if (kind === "full") {
    // Snapshot every database first (close together in time), check each, then upload.
    let t = Date.now();
    const snaps = await snapshotAll(databases, work, changeTables, options.integrity, log, options.signal);
    capturedAt = plan.clock();
    // Each copy is checked right after it is taken (and retaken when it fails): one phase.
    timings.snapshotAndCheck = Date.now() - t;
    for (const s of snaps) {
      sqliteVersion ||= s.info.sqliteVersion;
      for (const r of s.info.inspection.rejected)
        log("warn", `${s.input.source}: '${r.table}' is not a change table: ${r.reason}; every backup of it is a full one`, { source: s.input.source, table: r.table });
      const coverage = s.derivedFrom ? "derived" : coverageOf(s.info.inspection);
      dbInfos.push({
        source: s.input.source,
        ...(s.input.path ? { fileName: basename(s.input.path) } : {}),
        pageSize: s.info.pageSize,
        pageCount: s.info.pageCount,
        integrity: "ok",
        tables: s.info.tables,
        ...(s.relativePath ? { path: s.relativePath } : {}),
        coverage,
        ...(s.derivedFrom ? { derivedFrom: s.derivedFrom } : {}),
        ...(coverage === "rows" ? { otherTablesSha256: s.info.inspection.otherTablesSha256 } : {}),
        ...(s.info.inspection.livestore ? { livestore: s.info.inspection.livestore } : {}),
      });
      for (const w of s.info.watermarks) to.push({ source: s.input.source, ...w });
    }
    t = Date.now();
    const docs = options.documents;
    const querySnap = docs?.query ? (docs.querySource ? snaps.find((s) => s.input.source === docs.querySource) : snaps[0]) : undefined;
    // A snapshot is done with once its bytes are compressed into the spool, unless the documents query reads it: a
    // pin's read transaction ends then (the app's log can be checkpointed again, however long the upload takes),
    // a copy is removed.
    const release = async (s: Snap) => {
      work.pins.release(s.path);
      await unlink(s.path).catch(() => {});
    };
    for (const s of snaps) {
      const name = databaseFile(s.input.source);
      const size = s.info.sizeBytes;
      const d = await put(name, { file: s.path }, size, "application/zstd", size, s === querySnap ? undefined : () => release(s));
      files.push({ name, role: "database", source: s.input.source, contentType: "application/vnd.sqlite3", compression: "zstd", ...digestOf(d) });
      log("info", `uploaded ${name}`, { bytes: d.uncompressedSize, stored: d.size });
    }
    timings.databases = Date.now() - t;
    if (docs && (docs.dir || docs.query)) {
      t = Date.now();
      let query: { sql: string; dbPath: string } | undefined;
      if (docs.query) {
        if (!querySnap)
          throw new JobError("usage", `export documents: no database '${docs.querySource}' in this backup`, { hint: "--documents-source names one of the --db sources" });
        query = { sql: docs.query, dbPath: await materializeSnapshot(querySnap.path, work.pins) };
      }
      const tarball = await documentsTar({ ...(docs.dir ? { dir: docs.dir } : {}), ...(query ? { query } : {}) });
      const d = await put(DOCUMENTS_FILE, tarball.stream, tarball.estimateBytes, "application/zstd");
      files.push({ name: DOCUMENTS_FILE, role: "documents", contentType: "application/x-tar", compression: "zstd", ...digestOf(d) });
      log("info", `uploaded ${DOCUMENTS_FILE}`, { documents: tarball.count(), bytes: d.uncompressedSize, stored: d.size });
      timings.documents = Date.now() - t;
    }
    // The documents query's snapshot (each other one was released once it was compressed).
    if (querySnap) await release(querySnap);
  } else {
    const t = Date.now();
    const previous = plan.previous!;
    const baseFull = plan.baseFull!;
    const from = previous.to;
    const sources: ChangeSource[] = [];
    for (const input of databases) {
      const base = baseFull.databases.find((d) => d.source === input.source)!;
      // A LiveStore state DB is derived from its event log: the incremental carries the log, restore rebuilds it.
      if (base.coverage === "derived") continue;
      if (input.db) sources.push({ source: input.source, db: input.db, base });
      else if (input.path && !input.snapshot && !(await isUnlockedLiveStoreFile(input.path))) sources.push({ source: input.source, db: input.path, base });
      else {
        // No live handle (a snapshot function, or a LiveStore file no connection may lock): export from a
        // fresh checked copy, which is just as consistent.
        const path = join(work.dir, `${input.source}.db`);
        await snapshotOne(input, path, work.pins, changeTables, options.integrity);
        sources.push({ source: input.source, db: path, base });
      }
    }
    const exported = exportChanges(sources, changeTables, from);
    const d = await put(CHANGES_FILE, exported.lines, 0, "application/zstd");
    const result = exported.result();
    // The export's read transaction has ended: every row it carries was committed before now.
    capturedAt = plan.clock();
    changes = result.changes;
    const reached = new Set(result.to.map((w) => `${w.source}/${w.table}`));
    to = [...result.to, ...from.filter((w) => !reached.has(`${w.source}/${w.table}`))];
    files.push({ name: CHANGES_FILE, role: "changes", contentType: "application/x-ndjson", compression: "zstd", ...digestOf(d) });
    const rows = Object.values(changes).reduce((a, b) => a + b, 0);
    log("info", `uploaded ${CHANGES_FILE}`, { rows, changes, stored: d.size });
    timings.changes = Date.now() - t;
  }
  if (!sqliteVersion) {
    const mem = new DatabaseSync(":memory:");
    sqliteVersion = String((mem.prepare("SELECT sqlite_version() AS v").get() as { v: string }).v);
    mem.close();
  }
  // The chain's capture times never go backwards; this run read its data after the tip was committed.
  if (plan.tip && capturedAt.getTime() < entryTime(plan.tip)) capturedAt = new Date(entryTime(plan.tip));
  return { files, stored, databases: dbInfos, to, ...(changes ? { changes } : {}), sqliteVersion, timings, capturedAt };
}

/** A compressed object's checks as its file entry records them: job/stream.ts writes every frame with its checksum. */
function digestOf(d: Digest): Pick<FileEntry, "size" | "sha256" | "uncompressedSize" | "contentChecksum"> {
  return { size: d.size, sha256: d.sha256, uncompressedSize: d.uncompressedSize, contentChecksum: CONTENT_CHECKSUM };
}

/**
 * Phase 4: writes the manifest and appends the set to the chain, in one request the Worker runs as a
 * compare-and-swap on the head. `moved`: another run committed first; nothing of this set is in the chain.
 */
async function commitPlannedSet(ctx: RunContext, plan: SetPlan, captured: CapturedSet): Promise<{ manifest: Manifest; mKey: string } | { moved: string }> {
  const { options, store } = ctx;
  const { kind, id } = plan;
  captured.timings.total = Date.now() - ctx.started;
  const manifest = buildManifest({
    kind,
    id,
    base: kind === "full" ? id : plan.previous!.base,
    previous: kind === "full" ? null : plan.previous!.id,
    // Every time of the manifest is the Worker's: this machine's clock may be off.
    createdAt: new Date(plan.clock().getTime() - (Date.now() - ctx.started)).toISOString(),
    completedAt: plan.clock().toISOString(),
    capturedAt: captured.capturedAt.toISOString(),
    app: options.app ?? { name: "unknown", version: "unknown" },
    tool: { name: "r2backup", version: TOOL_VERSION },
    sqliteVersion: captured.sqliteVersion,
    host: hostname(),
    files: captured.files,
    databases: captured.databases,
    sources: ctx.databases.map((d) => ({ source: d.source, ...(d.relativePath !== undefined ? { path: d.relativePath } : {}) })),
    from: kind === "full" ? [] : plan.previous!.to,
    to: captured.to,
    ...(captured.changes ? { changes: captured.changes } : {}),
    timings: captured.timings,
  });
  const mKey = manifestKey(kind, id);
  throwIfInterrupted(options.signal, `write '${mKey}'`);
  const text = serializeManifest(manifest);
  const outcome = await store.commitSet(text, plan.expect).catch((e: unknown) => {
    // Another manifest under this id (a run that planned on the same head in the same second) or its objects.
    throw e instanceof HttpStatusError && e.status === 409 ? new SetIdTaken(id) : e;
  });
  if ("committed" in outcome) return { manifest, mKey };
  return (await isOwnCommit(store, kind, id, text)) ? { manifest, mKey } : outcome;
}

/**
 * A commit whose answer was lost and was sent again meets its own success as a moved chain. The set in the chain
 * is this run's only when the chain holds its kind and id and the manifest stored under that key is, byte for
 * byte, the one this run sent: the Worker appends a set only with its manifest stored, and a manifest is written
 * once. Another run's set of the same id and capture time (an incremental and a full planned on the same head
 * in the same second) is not this run's success.
 */
async function isOwnCommit(store: BackupStore, kind: Manifest["kind"], id: string, sent: string): Promise<boolean> {
  const after = await store.chain();
  if (!after.head?.tail.some((e) => e.kind === kind && e.id === id)) return false;
  const set = `${kind}/${id}`;
  return (await store.readManifests([set]))[set] === sent;
}

/**
 * Takes one backup. Resolves with the manifest once the set is complete and in the chain; throws a JobError
 * otherwise (after aborting uploads and deleting temp files), leaving no set in the chain.
 */
export async function backup(options: BackupOptions): Promise<BackupResult> {
  const started = Date.now();
  const emit = (e: BackupEvent) => options.onEvent?.(e);
  const log: Log = (level, message, fields = {}) => emit({ type: "log", level, message, ...fields });
  const tmpDir = resolve(options.tmpDir ?? tmpdir());
  let kindForReport: string = options.kind ?? "auto";
  let idForReport: string | undefined;
  let lock: Lock | undefined;
  let work: Work | undefined;
  try {
    const prepared = await prepare({ options, store: options.store, tmpDir, started, log, emit });
    lock = prepared.lock;
    const ctx: RunContext = {
      options,
      store: options.store,
      databases: prepared.databases,
      changeTables: options.changeTables ?? DEFAULT_CHANGE_TABLES,
      tmpDir,
      started,
      log,
      emit,
    };

    let forceFull: string | undefined;
    let taken: string | undefined;
    let plan: SetPlan;
    let committed: { manifest: Manifest; mKey: string };
    let stored: Map<string, Stored>;
    for (let attempt = 1; ; attempt++) {
      plan = await planSet(ctx, forceFull, taken);
      kindForReport = plan.kind;
      idForReport = plan.id;
      log("info", `starting ${plan.kind} backup ${plan.id}`, { kind: plan.kind, id: plan.id, reason: plan.reason, databases: ctx.databases.map((d) => d.source) });
      if (work) {
        work.pins.releaseAll();
        await rm(work.dir, { recursive: true, force: true }).catch(() => {});
      }
      await mkdir(tmpDir, { recursive: true });
      work = { dir: await mkdtemp(join(tmpDir, workDirPrefix())), pins: new Pins() };
      let captured: CapturedSet;
      let outcome: Awaited<ReturnType<typeof commitPlannedSet>>;
      try {
        captured = await captureSet(ctx, plan, work);
        outcome = await commitPlannedSet(ctx, plan, captured);
      } catch (e) {
        if (e instanceof SetIdTaken) {
          // Two runs planned on the same head in the same second: the other wrote under this id first.
          if (attempt >= COMMIT_ATTEMPTS) {
            throw new JobError("chainMoved", `take ${plan.kind} backup '${plan.id}': other runs committed first or took its set id ${attempt} times (${e.message})`, {
              hint: TOO_MANY_RUNS,
            });
          }
          log("warn", `another run took set id ${plan.id}; taking the set again under a later one`, { id: plan.id });
          taken = plan.id;
          continue;
        }
        // `auto` finds during the export that an incremental cannot carry a change: a full backup instead.
        if (!(e instanceof CoverageError) || (options.kind !== "auto" && options.kind !== undefined) || forceFull) throw e;
        log("warn", `${e.detail}: taking a full backup instead`, { source: e.source });
        forceFull = `an incremental cannot carry '${e.source}'`;
        continue;
      }
      if (!("moved" in outcome)) {
        committed = outcome;
        stored = captured.stored;
        break;
      }
      if (attempt >= COMMIT_ATTEMPTS) {
        throw new JobError("chainMoved", `commit ${plan.kind} backup '${plan.id}': other runs committed first ${attempt} times (${outcome.moved})`, {
          hint: TOO_MANY_RUNS,
        });
      }
      log("warn", `another run committed first; taking the set again on the new head (attempt ${attempt + 1} of ${COMMIT_ATTEMPTS})`, { id: plan.id, reason: outcome.moved });
      await sleep(50 + Math.random() * 200 * attempt, undefined, options.signal ? { signal: options.signal } : {}).catch(() => throwIfInterrupted(options.signal, "back up"));
    }
    const { manifest, mKey } = committed;
    const { kind, id } = plan;
    log("info", `${kind} backup ${id} complete`, { manifest: mKey });
    return await finish(ctx, plan, manifest, mKey, stored);
  } catch (e) {
    const error = classify(e, "back up");
    const message = (error as Error).message;
    log("error", `backup failed: ${message}`, { kind: kindForReport, ...(idForReport ? { id: idForReport } : {}), outcome: "failed" });
    await report(
      options,
      {
        ok: false,
        kind: kindForReport,
        ...(idForReport ? { id: idForReport } : {}),
        durationMs: Date.now() - started,
        error: { kind: error instanceof JobError ? error.kind : "failed", message },
      },
      [],
      log,
    );
    throw error;
  } finally {
    work?.pins.releaseAll();
    if (work) await rm(work.dir, { recursive: true, force: true }).catch(() => {});
    await lock?.release();
  }
}

/** Phase 5: after the commit, the daily promotion, the latest pointer and the report (their failures are warnings). */
async function finish(ctx: RunContext, plan: SetPlan, manifest: Manifest, mKey: string, stored: Map<string, Stored>): Promise<BackupResult> {
  const { options, store, log } = ctx;
  const { kind, id, promotion } = plan;
  const warnings: string[] = [];
  let promoted: BackupResult["promoted"] = null;
  if (promotion?.promote) {
    const decision = promotion;
    try {
      const t = Date.now();
      // A promotion of this day that stopped half-way is finished first, with the full backup it started from.
      const unfinished = plan.dailies.some((s) => s.id === decision.day && !s.complete) ? await unfinishedPromotion(store, decision.day) : undefined;
      const origin = unfinished && unfinished !== id ? await readManifestAt(store, manifestKey("full", unfinished)) : manifest;
      const localCopies = new Map<string, { path: string; sha256: string; size: number; contentType: string }>();
      if (origin === manifest)
        for (const f of manifest.files) {
          const s = stored.get(f.name);
          if (s?.tmpFile) localCopies.set(f.name, { path: s.tmpFile, sha256: s.sha256, size: s.size, contentType: s.contentType });
        }
      const done = await promoteToDaily({ store, full: origin, localCopies, ...(options.partBytes ? { partBytes: options.partBytes } : {}) });
      const reason =
        origin === manifest ? decision.reason : `finished the promotion of ${origin.id} that stopped half-way (kept ${done.kept.length}, copied ${done.copied.length})`;
      promoted = { day: decision.day, reason };
      log("info", `promoted ${origin.id} to daily/${decision.day}`, { reason, ms: Date.now() - t });
    } catch (e) {
      warnings.push(`promote to daily/${decision.day}: ${(e as Error).message}`);
      log("warn", `promote to daily/${decision.day} failed; the full backup is complete and the next full backup resumes the promotion`, { error: (e as Error).message });
    }
  }
  try {
    const pointer = JSON.stringify({ kind, id, manifestKey: mKey, completedAt: manifest.completedAt, daily: promoted?.day ?? null });
    await store.put(LATEST_KEY, pointer, { contentType: "application/json" });
  } catch (e) {
    warnings.push(`update ${LATEST_KEY}: ${(e as Error).message}`);
    log("warn", `update ${LATEST_KEY} failed`, { error: (e as Error).message });
  }
  const storedBytes = manifest.files.reduce((a, f) => a + f.size, 0);
  const uncompressedBytes = manifest.files.reduce((a, f) => a + f.uncompressedSize, 0);
  const durationMs = Date.now() - ctx.started;
  await report(options, { ok: true, kind, id, durationMs, storedBytes, uncompressedBytes, manifestKey: mKey }, warnings, log);
  return { ok: true, kind, id, manifestKey: mKey, manifest, promoted, warnings, durationMs, storedBytes, uncompressedBytes };
}

async function report(
  options: BackupOptions,
  outcome: {
    ok: boolean;
    kind: string;
    id?: string;
    durationMs: number;
    storedBytes?: number;
    uncompressedBytes?: number;
    manifestKey?: string;
    error?: { kind: string; message: string };
  },
  warnings: string[],
  log: (level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>) => void,
): Promise<void> {
  if (options.metrics) {
    try {
      const drillAgeHours = (await lastGoodDrillAgeHours(options.store, new Date()).catch(() => undefined)) ?? NEVER_DRILLED_AGE_HOURS;
      let replica: { lag: number; oldestMissingAgeHours: number } | undefined;
      if (options.replicaLag) {
        replica = await options.replicaLag().catch((e: unknown) => {
          log("warn", "read the replica lag failed", { error: (e as Error).message });
          return undefined;
        });
      }
      await options.metrics.put(backupMetrics({ ...outcome, drillAgeHours, ...(replica ? { replica } : {}) }));
    } catch (e) {
      warnings.push(`put metrics: ${(e as Error).message}`);
      log("warn", "put metrics failed", { error: (e as Error).message });
    }
  }
  if (options.webhookUrl) {
    try {
      await postWebhook(options.webhookUrl, {
        event: outcome.ok ? "backup.succeeded" : "backup.failed",
        kind: outcome.kind,
        ...(outcome.id ? { id: outcome.id } : {}),
        host: hostname(),
        durationSeconds: Math.round(outcome.durationMs) / 1000,
        ...(outcome.storedBytes !== undefined ? { storedBytes: outcome.storedBytes } : {}),
        ...(outcome.manifestKey ? { manifestKey: outcome.manifestKey } : {}),
        ...(outcome.error ? { error: outcome.error } : {}),
      });
    } catch (e) {
      warnings.push((e as Error).message);
      log("warn", "webhook failed", { error: (e as Error).message });
    }
  }
}
