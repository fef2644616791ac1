import { constants as fsConstants } from "node:fs";
import { copyFile, open, stat, truncate, unlink } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { backup as sqliteBackup, DatabaseSync } from "node:sqlite";
import type { ChangeTable, DatabaseInfo, Watermark } from "../core/index.ts";
import { LIVESTORE, inspectDatabase, rowSha256, type DatabaseInspection } from "./coverage.ts";
import { JobError } from "./errors.ts";
import type { PinnedSnapshot, Pins } from "./pinned.ts";
import { pageAlignedBuffers } from "./aligned.ts";

/**
 * The SQLite adapter of the job: check that a file is SQLite without creating it, snapshot a live
 * database in one step (docs/design.md fact 5), and check the copy before anything is uploaded.
 */

const SQLITE_HEADER = Buffer.from("SQLite format 3\0", "latin1");

/** One step: node:sqlite refuses -1, and 2^31-1 pages is more than any database holds (fact 5). */
export const ONE_STEP_RATE = 2147483647;

/** The first 20 bytes of a database file (fewer when it is shorter): the format string, page size and journal mode. */
async function readHeader(path: string): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const header = Buffer.alloc(20);
    const { bytesRead } = await handle.read(header, 0, 20, 0);
    return header.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * Checks that `path` is an existing SQLite file by reading its header, so a typo never creates an empty
 * database (opening a missing path with SQLite would), and returns the header. Throws a JobError of kind
 * `database` (exit 3).
 */
export async function assertSqliteFile(path: string): Promise<Buffer> {
  let header: Buffer;
  try {
    header = await readHeader(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const reason = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "permission denied" : (e as Error).message;
    throw new JobError("database", `open database '${path}': ${reason}`, { hint: "check --db (the path of the app's SQLite file); the job never creates one", cause: e });
  }
  if (header.length < 16 || !header.subarray(0, 16).equals(SQLITE_HEADER)) {
    throw new JobError("database", `open database '${path}': not a SQLite database (${header.length === 0 ? "the file is empty" : "its header is not 'SQLite format 3'"})`, {
      hint: "point --db at the app's SQLite file",
    });
  }
  return header;
}

/** What a checked snapshot holds (the manifest's database entry) and the watermarks it reaches. */
export interface SnapshotInfo extends Omit<DatabaseInfo, "source" | "fileName"> {
  sizeBytes: number;
  sqliteVersion: string;
  /** Per change table present in the snapshot: its largest key and row count (the full backup's `to`). */
  watermarks: Omit<Watermark, "source">[];
  /** What decides how incrementals cover it (job/coverage.ts). */
  inspection: DatabaseInspection;
}

/** How much checking the copy gets: `quick` (one sequential pass) or `full` (`integrity_check`). */
export type IntegrityLevel = "quick" | "full";

/** An immutable, read-only connection: SQLite takes no lock, reads no journal, and never writes the file. */
function openImmutable(path: string): DatabaseSync {
  const url = pathToFileURL(path);
  url.searchParams.set("immutable", "1");
  return new DatabaseSync(url, { readOnly: true });
}

/**
 * True for a LiveStore file (docs/design.md fact 7) in rollback-journal mode: its writer takes no file locks, so a
 * normal connection may find the writer's `-journal` "hot" and roll the app's transaction back into the live
 * file (seen here as "disk I/O error" when the writer deleted the journal first). Such a file is only ever
 * read through an immutable connection; the copy may be torn, so it is checked with integrity_check and
 * taken again. Read from the header and the schema without any lock.
 */
export async function isUnlockedLiveStoreFile(path: string): Promise<boolean> {
  if ((await readHeader(path))[18] === 2) return false; // WAL: its writers use the -shm locks
  let db: DatabaseSync | undefined;
  try {
    db = openImmutable(path);
    const tables = new Set((db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name));
    return LIVESTORE.stateTables.every((t) => tables.has(t)) || (tables.has(LIVESTORE.eventlogTable) && tables.has(LIVESTORE.syncStatusTable));
  } catch {
    return false; // a copy being written can be unreadable for a moment; the normal path reports real problems
  } finally {
    db?.close();
  }
}

/** Options of `snapshotDatabase`. */
export interface SnapshotOptions {
  /** A LiveStore file no connection may lock (read through `?immutable=1`); asked of the file when unset. */
  lockFree?: boolean;
  /**
   * For a WAL file: pin it at its latest transaction instead of copying it (job/pinned.ts), when its log can be
   * checkpointed whole, and register the pin in `pins` at `destPath`. The copy at `destPath` is then never
   * written; `checkSnapshot`, `compressFile` and `materializeSnapshot` read the pin when given the same `pins`,
   * whose owner ends it.
   */
  pins?: Pins;
  /** Pages per step of a rollback-journal copy (default STEP_PAGES); see `stepsThenLockedCopy`. */
  stepPages?: number;
}

/** A rollback-journal copy takes the shared lock for this many pages at a time (4 MiB of 4 KiB pages, a few ms). */
export const STEP_PAGES = 1024;

/** Restarts a stepped copy tolerates (a writer committed between steps) before it copies the rest in one step. */
export const STEP_RESTARTS = 2;

/**
 * Copies a live database into `destPath` with SQLite's backup API, or pins it (`pins`, WAL files). With an
 * already open connection (the in-process case of fact 7) that connection is used, in one step: its own
 * writes update the copy. A WAL file is copied in one step: its readers never block its writers. A
 * rollback-journal file is copied in steps of `stepPages`, the writers committing in between; a commit restarts
 * the copy (fact 5), so after STEP_RESTARTS restarts the file is copied under one shared lock and cannot be starved.
 * Returns the pages copied (or pinned).
 */
export async function snapshotDatabase(source: string | DatabaseSync, destPath: string, options: SnapshotOptions = {}): Promise<number> {
  let db: DatabaseSync;
  let owned = false;
  let stepped = false;
  if (typeof source === "string") {
    const header = await assertSqliteFile(source);
    const lockFree = options.lockFree ?? (await isUnlockedLiveStoreFile(source));
    const wal = !lockFree && header[18] === 2 && header[19] === 2; // the header's read and write versions say WAL
    if (options.pins && wal) {
      const pin = await pinWalDatabase(source).catch(() => undefined);
      if (pin) {
        options.pins.set(destPath, pin);
        return pin.pageCount;
      }
    }
    try {
      // `lockFree` when the caller already knows (a retrying caller asks once, not on every attempt).
      db = lockFree ? openImmutable(source) : new DatabaseSync(source, { timeout: 30_000 });
    } catch (e) {
      throw new JobError("database", `open database '${source}': ${(e as Error).message}`, { cause: e });
    }
    owned = true;
    stepped = !lockFree && !wal;
  } else {
    db = source;
  }
  try {
    return stepped ? await stepsThenLockedCopy(db, source as string, destPath, options.stepPages ?? STEP_PAGES) : await sqliteBackup(db, destPath, { rate: ONE_STEP_RATE });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOSPC" || /disk is full|SQLITE_FULL/i.test((e as Error).message)) {
      throw new JobError("diskFull", `snapshot database into '${destPath}': the temporary disk is full`, {
        hint: "free space or point --tmp-dir at a larger disk",
        cause: Object.assign(e as Error, { code: "ENOSPC" }),
      });
    }
    throw new JobError("database", `snapshot database '${typeof source === "string" ? source : "(open connection)"}': ${(e as Error).message}`, { cause: e });
  } finally {
    if (owned) db.close();
  }
}

/** Thrown from the progress callback to stop a stepped copy that restarted too often. */
class Restarted extends Error {}

/**
 * A rollback-journal copy in steps: node:sqlite runs each `sqlite3_backup_step` on the libuv pool and the next
 * one only after this thread has seen its progress, so the shared lock is free between steps and a writer
 * commits there. A restart shows as more pages remaining than before; after STEP_RESTARTS of them (a writer
 * that commits more often than a copy takes) the copy is stopped and the file is copied, then made exact under one
 * shared lock (`copyUnderSharedLock`): the writer then waits once, while the copy is compared with the file.
 */
async function stepsThenLockedCopy(db: DatabaseSync, sourcePath: string, destPath: string, stepPages: number): Promise<number> {
  let restarts = 0;
  let lastRemaining = Number.POSITIVE_INFINITY;
  try {
    return await sqliteBackup(db, destPath, {
      rate: stepPages,
      progress: ({ remainingPages }) => {
        if (remainingPages > lastRemaining && ++restarts > STEP_RESTARTS) throw new Restarted();
        lastRemaining = remainingPages;
      },
    });
  } catch {
    // Stopped after its restarts, or a step met the writer's lock (node:sqlite reports SQLITE_BUSY as a failure,
    // sometimes as "not an error"): the partial copy is thrown away and the locked copy decides.
    await unlink(destPath).catch(() => {});
    return copyUnderSharedLock(db, sourcePath, destPath);
  }
}

/**
 * The database file copied as bytes, made exact inside one read transaction. Its shared lock keeps every writer
 * from writing the file (a commit, or a spill of its cache, needs the exclusive lock) and no hot journal is
 * pending once it is taken (taking it rolls one back), so the file is one committed state while it is held. The
 * writer waits for as long as the lock is held, so as little as possible happens under it:
 * - where the filesystem clones files (btrfs, XFS: `copyFile` with FICLONE_FORCE succeeds), the file is cloned
 *   under the lock, in constant time;
 * - elsewhere (ext4) the kernel first copies the live file without any lock (torn wherever a commit landed
 *   meanwhile), then `patchUnderSharedLock` compares it with the file under the lock and rewrites the chunks that
 *   differ. Reading both from the page cache is ~1.8x faster than copying 1 GiB under the lock (0.39-0.57 s
 *   against 0.69-0.79 s, and 2.96 s when the copy had to find fresh pages first).
 * The copy is cut to page_count pages. Returns page_count.
 */
export async function copyUnderSharedLock(db: DatabaseSync, sourcePath: string, destPath: string): Promise<number> {
  try {
    await copyFile(sourcePath, destPath, fsConstants.COPYFILE_FICLONE_FORCE);
  } catch {
    await unlink(destPath).catch(() => {});
    await copyFile(sourcePath, destPath);
    return patchUnderSharedLock(db, sourcePath, destPath);
  }
  return underSharedLock(db, async (bytes) => {
    await unlink(destPath);
    await copyFile(sourcePath, destPath, fsConstants.COPYFILE_FICLONE_FORCE);
    await cutTo(sourcePath, destPath, bytes);
  });
}

/** Bytes compared at a time by `patchUnderSharedLock` (its two buffers stay until a GC frees them: kept small). */
const PATCH_CHUNK_BYTES = 1 << 20;

/**
 * Makes `destPath` (a copy of `sourcePath` taken earlier, or any file) byte-equal to the database's first
 * page_count pages inside one read transaction: chunks that differ (or that the copy lacks) are rewritten from
 * the file. Returns page_count.
 */
export async function patchUnderSharedLock(db: DatabaseSync, sourcePath: string, destPath: string): Promise<number> {
  return underSharedLock(db, async (bytes) => {
    // On pages: the kernel copies both files into them ~3x faster (job/aligned.ts), and the writer waits for this.
    const [live, copy] = pageAlignedBuffers(2, PATCH_CHUNK_BYTES) as [Buffer, Buffer];
    const from = await open(sourcePath, "r");
    try {
      const to = await open(destPath, "r+");
      try {
        for (let at = 0; at < bytes; at += PATCH_CHUNK_BYTES) {
          const want = Math.min(PATCH_CHUNK_BYTES, bytes - at);
          const [a, b] = await Promise.all([from.read(live, 0, want, at), to.read(copy, 0, want, at)]);
          if (a.bytesRead < want) throw new JobError("database", `copy '${sourcePath}': the file ended at ${at + a.bytesRead} bytes, its pages are ${bytes}`);
          if (b.bytesRead === want && live.compare(copy, 0, want, 0, want) === 0) continue;
          await to.write(live, 0, want, at);
        }
      } finally {
        await to.close();
      }
    } finally {
      await from.close();
    }
    await cutTo(sourcePath, destPath, bytes);
  });
}

/** Runs `work` with the database's byte size (page_count x page_size) inside a read transaction; returns page_count. */
async function underSharedLock(db: DatabaseSync, work: (bytes: number) => Promise<void>): Promise<number> {
  db.exec("BEGIN");
  try {
    db.prepare("SELECT count(*) FROM sqlite_schema").get(); // the shared lock, held until COMMIT
    const pageSize = Number((db.prepare("PRAGMA page_size").get() as { page_size: number }).page_size);
    const pageCount = Number((db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count);
    await work(pageCount * pageSize);
    return pageCount;
  } finally {
    if (db.isTransaction) db.exec("COMMIT");
  }
}

/** Checks that a copy holds `bytes` and cuts what lies beyond. */
async function cutTo(sourcePath: string, destPath: string, bytes: number): Promise<void> {
  const size = (await stat(destPath)).size;
  if (size < bytes) throw new JobError("database", `copy '${sourcePath}': ${size} bytes copied, its pages are ${bytes}`);
  if (size > bytes) await truncate(destPath, bytes);
}

/**
 * Pins a WAL database (job/pinned.ts): a first connection takes the write lock (a writer waits a few ms), a
 * second checkpoints the whole log into the file and opens a read transaction, then the write lock goes.
 * The read transaction sees exactly the file's pages and keeps every later checkpoint from writing the file.
 * Undefined when the log cannot be checkpointed whole (another reader is behind it): the caller copies.
 */
export async function pinWalDatabase(path: string): Promise<PinnedSnapshot | undefined> {
  const writer = new DatabaseSync(path, { timeout: 30_000 });
  let reader: DatabaseSync | undefined;
  try {
    writer.exec("BEGIN IMMEDIATE");
    reader = new DatabaseSync(path, { timeout: 30_000 });
    const ckpt = reader.prepare("PRAGMA wal_checkpoint(PASSIVE)").get() as { busy: number; log: number; checkpointed: number };
    if (Number(ckpt.busy) !== 0 || Number(ckpt.log) !== Number(ckpt.checkpointed)) return undefined;
    reader.exec("BEGIN");
    const pageSize = Number((reader.prepare("PRAGMA page_size").get() as { page_size: number }).page_size);
    const pageCount = Number((reader.prepare("PRAGMA page_count").get() as { page_count: number }).page_count);
    const size = (await stat(path)).size;
    // The file holds every page of the transaction once the log is checkpointed; anything else is not a pin.
    if (pageCount <= 0 || size < pageCount * pageSize) return undefined;
    const pin: PinnedSnapshot = { file: path, bytes: pageCount * pageSize, pageSize, pageCount, db: reader };
    reader = undefined;
    return pin;
  } finally {
    if (reader) {
      if (reader.isTransaction) reader.exec("ROLLBACK");
      reader.close();
    }
    if (writer.isTransaction) writer.exec("ROLLBACK");
    writer.close();
  }
}

/**
 * Writes a pinned snapshot at `path` (in `pins`) out as a file (for a reader that needs one, e.g. a documents
 * query), ends the pin and returns `path`; a real copy is left as it is.
 */
export async function materializeSnapshot(path: string, pins?: Pins): Promise<string> {
  const pin = pins?.at(path);
  if (!pin) return path;
  const from = await open(pin.file, "r");
  const to = await open(path, "wx");
  try {
    const [buffer] = pageAlignedBuffers(1, 1 << 20) as [Buffer];
    for (let at = 0; at < pin.bytes; ) {
      const { bytesRead } = await from.read(buffer, 0, Math.min(buffer.length, pin.bytes - at), at);
      if (bytesRead === 0) throw new JobError("integrity", `copy snapshot '${path}': the database file ended at ${at} bytes, ${pin.bytes} were pinned`);
      await to.write(buffer.subarray(0, bytesRead));
      at += bytesRead;
    }
  } finally {
    await from.close();
    await to.close();
  }
  pins?.release(path);
  return path;
}

/**
 * Opens a snapshot and checks it: the file exists, holds pages, its size is `page_count * page_size`, and
 * `quick_check` (or `integrity_check`) says ok. A backup call can report success and leave no file (fact 5),
 * so nothing is trusted until this passes. Also counts rows and reads the change tables' largest keys.
 */
export async function checkSnapshot(
  path: string,
  changeTables: readonly ChangeTable[],
  options: { pagesCopied?: number; integrity?: IntegrityLevel; pins?: Pins } = {},
): Promise<SnapshotInfo> {
  const fail = (reason: string): never => {
    throw new JobError("integrity", `check snapshot '${path}': ${reason}`, { hint: "the copy is unusable; nothing was uploaded. Run the backup again" });
  };
  // A pinned snapshot (job/pinned.ts) is checked inside the read transaction that pins it: the same pages.
  const pin = options.pins?.at(path);
  let size: number;
  try {
    size = pin ? pin.bytes : (await stat(path)).size;
  } catch {
    return fail("the backup reported success but left no file");
  }
  if (options.pagesCopied !== undefined && options.pagesCopied <= 0) fail(`the backup copied ${options.pagesCopied} pages`);
  if (size === 0) fail("the file is empty");
  let db: DatabaseSync | undefined;
  try {
    db = pin ? pin.db : new DatabaseSync(path, { readOnly: true });
    // The check reads every page twice (a walk of each b-tree, then a scan of each table's rows), far apart: SQLite's
    // own cache (2 MiB by default, or 16) saves no read and would only hold pages the OS cache holds too. 256 KiB
    // keeps the backup's memory down (issue 16) at no cost in time.
    db.exec("PRAGMA cache_size = -256");
    const pageSize = Number((db!.prepare("PRAGMA page_size").get() as { page_size: number }).page_size);
    const pageCount = Number((db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count);
    if (pageCount <= 0) fail("it holds no pages");
    if (pageCount * pageSize !== size) fail(`its size ${size} is not page_count ${pageCount} x page_size ${pageSize}`);
    const pragma = options.integrity === "full" ? "integrity_check" : "quick_check";
    const rows = db.prepare(`PRAGMA ${pragma}`).all() as Record<string, unknown>[];
    const results = rows.map((r) => String(Object.values(r)[0]));
    if (results.length !== 1 || results[0] !== "ok") fail(`${pragma} failed: ${results.slice(0, 5).join("; ")}`);
    const tables: Record<string, number> = {};
    const names = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[];
    for (const { name } of names) {
      tables[name] = Number((db.prepare(`SELECT count(*) AS n FROM ${quoteIdent(name)}`).get() as { n: number }).n);
    }
    const inspection = inspectDatabase(db, changeTables);
    const watermarks: Omit<Watermark, "source">[] = [];
    for (const t of inspection.changeTables) {
      const value = maxKey(db, t);
      const row = rowSha256(db, t, value);
      watermarks.push({ table: t.table, columns: [...t.columns], value, count: tables[t.table] ?? 0, ...(row ? { rowSha256: row } : {}) });
    }
    const sqliteVersion = String((db.prepare("SELECT sqlite_version() AS v").get() as { v: string }).v);
    return { pageSize, pageCount, integrity: "ok", tables, sizeBytes: size, sqliteVersion, watermarks, inspection };
  } catch (e) {
    // SQLite's own complaints about the copy ("database disk image is malformed") are integrity failures too.
    if (e instanceof JobError) throw e;
    return fail((e as Error).message);
  } finally {
    if (!pin) db?.close();
  }
}

/** The largest key tuple of a change table, or null when it is empty. */
export function maxKey(db: DatabaseSync, t: ChangeTable): (number | string)[] | null {
  const cols = t.columns.map(quoteIdent);
  const stmt = db.prepare(`SELECT ${cols.join(", ")} FROM ${quoteIdent(t.table)} ORDER BY ${cols.map((c) => `${c} DESC`).join(", ")} LIMIT 1`);
  stmt.setReadBigInts(true);
  const row = stmt.get() as Record<string, unknown> | undefined;
  if (!row) return null;
  return t.columns.map((c) => keyValue(row[c], t.table, c));
}

/** A key column's value as the manifest stores it: a number (exact) or a string. */
export function keyValue(v: unknown, table: string, column: string): number | string {
  if (typeof v === "bigint") {
    if (!Number.isSafeInteger(Number(v))) throw new JobError("database", `read watermark '${table}.${column}': ${v} is beyond 2^53`);
    return Number(v);
  }
  if (typeof v === "number" || typeof v === "string") return v;
  throw new JobError("database", `read watermark '${table}.${column}': a key value is ${v === null ? "NULL" : typeof v}`, {
    hint: "change tables need a non-null numeric or text key; configure --changes-table",
  });
}

/** Quotes an SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
