import { sha256 } from "./backup-fixtures.ts";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { constants, zstdCompressSync } from "node:zlib";
import {
  CHANGES_FILE,
  CONTENT_CHECKSUM,
  DEFAULT_CHANGE_TABLES,
  DOCUMENTS_FILE,
  buildManifest,
  databaseFile,
  encodeChangeLine,
  fileKey,
  manifestKey,
  parseTimestamp,
  serializeManifest,
  type ChangeTable,
  type DatabaseInfo,
  type FileEntry,
  type Manifest,
  type Row,
  type Watermark,
} from "../../core/index.ts";
import type { BackupStore } from "../../job/store/types.ts";

/**
 * Test fixtures for restore: real SQLite files backed up the way the job stores them (a `VACUUM INTO`
 * snapshot, zstd with frame checksums, sha256 of the stored bytes, manifest written last; or with `legacy`, as
 * 0.2.0 stored them: no frame checksums, the sha256 of the uncompressed bytes in the manifest) through the real local
 * Worker. Incrementals carry the change rows past the previous watermark, encoded by core.
 */

const quote = (n: string) => `"${n.replaceAll('"', '""')}"`;

export { startTestBucket, type TestBucket } from "./bucket.ts";

function maxKey(db: DatabaseSync, t: ChangeTable): (number | string)[] | null {
  const row = db.prepare(`SELECT ${t.columns.map(quote).join(", ")} FROM ${quote(t.table)} ORDER BY ${t.columns.map((c) => `${quote(c)} DESC`).join(", ")} LIMIT 1`).get() as
    | Record<string, number | string>
    | undefined;
  return row ? t.columns.map((c) => row[c]!) : null;
}

function tablesOf(db: DatabaseSync): Record<string, number> {
  const names = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  return Object.fromEntries(names.map((n) => [n, Number((db.prepare(`SELECT count(*) AS c FROM ${quote(n)}`).get() as { c: number }).c)]));
}

/** zstd as the job writes it (each frame with its content checksum), or as 0.2.0 did (`legacy`: none). */
function compress(plain: Uint8Array, legacy?: boolean): Uint8Array {
  return zstdCompressSync(plain, { params: { [constants.ZSTD_c_checksumFlag]: legacy ? 0 : 1 } });
}

function entry(name: string, role: FileEntry["role"], stored: Uint8Array, plain: Uint8Array, source?: string, legacy?: boolean): FileEntry {
  return {
    name,
    role,
    ...(source ? { source } : {}),
    contentType: role === "changes" ? "application/x-ndjson" : "application/vnd.sqlite3",
    compression: "zstd",
    size: stored.byteLength,
    sha256: sha256(stored),
    uncompressedSize: plain.byteLength,
    ...(legacy ? { uncompressedSha256: sha256(plain) } : { contentChecksum: CONTENT_CHECKSUM }),
  };
}

function meta(ts: string) {
  const at = parseTimestamp(ts).toISOString();
  return {
    createdAt: at,
    completedAt: at,
    app: { name: "restore-fixture", version: "1" },
    tool: { name: "r2backup", version: "test" },
    sqliteVersion: "3",
    timings: { total: 1 },
  };
}

export interface FixtureSource {
  source: string;
  path: string;
}

export interface UploadOptions {
  /** Replace these objects' stored bytes before upload (to fake damage the manifest does not know of). */
  tamper?: (name: string, stored: Uint8Array) => Uint8Array;
  /** Skip the manifest (an incomplete set). */
  noManifest?: boolean;
  changeTables?: readonly ChangeTable[];
  /** A full backup's `documents.tar.zst`: the uncompressed tar bytes. */
  documentsTar?: Uint8Array;
  /** Change the file entries before the manifest is built (to fake a manifest that lies); after `tamper`. */
  tamperEntries?: (files: FileEntry[]) => FileEntry[];
  /** Store the objects as 0.2.0 did: frames without checksums, the uncompressed sha256 in the manifest. */
  legacy?: boolean;
}

/** Uploads a full backup of `sources` at `ts`, manifest last; returns the manifest. */
export async function uploadFull(store: BackupStore, ts: string, sources: FixtureSource[], options: UploadOptions = {}): Promise<Manifest> {
  const tables = options.changeTables ?? DEFAULT_CHANGE_TABLES;
  const dir = await mkdtemp(join(tmpdir(), "restore-fixture-"));
  const files: FileEntry[] = [];
  const databases: DatabaseInfo[] = [];
  const to: Watermark[] = [];
  try {
    for (const s of sources) {
      const snap = join(dir, `${s.source}.db`);
      const db = new DatabaseSync(s.path);
      db.prepare("VACUUM INTO ?").run(snap);
      db.close();
      const plain = new Uint8Array(await readFile(snap));
      const check = new DatabaseSync(snap, { readOnly: true });
      const pageSize = Number((check.prepare("PRAGMA page_size").get() as { page_size: number }).page_size);
      const pageCount = Number((check.prepare("PRAGMA page_count").get() as { page_count: number }).page_count);
      const present = tablesOf(check);
      for (const t of tables) if (t.table in present) to.push({ source: s.source, table: t.table, columns: [...t.columns], value: maxKey(check, t) });
      check.close();
      let stored = compress(plain, options.legacy);
      const name = databaseFile(s.source);
      files.push(entry(name, "database", stored, plain, s.source, options.legacy));
      databases.push({ source: s.source, fileName: `${s.source}.db`, pageSize, pageCount, integrity: "ok", tables: present });
      if (options.tamper) stored = options.tamper(name, stored);
      await store.put(fileKey("full", ts, name), stored);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  if (options.documentsTar) {
    const stored = compress(options.documentsTar, options.legacy);
    files.push({ ...entry(DOCUMENTS_FILE, "documents", stored, options.documentsTar, undefined, options.legacy), contentType: "application/x-tar" });
    await store.put(fileKey("full", ts, DOCUMENTS_FILE), stored);
  }
  const m = buildManifest({
    kind: "full",
    id: ts,
    base: ts,
    previous: null,
    ...meta(ts),
    files: options.tamperEntries ? options.tamperEntries(files) : files,
    databases,
    from: [],
    to,
  });
  if (!options.noManifest) await store.put(manifestKey("full", ts), serializeManifest(m), { contentType: "application/json" });
  return m;
}

/** Uploads an incremental at `ts` continuing `previous` (its manifest gives `base` and `from`). */
export async function uploadIncremental(store: BackupStore, ts: string, previous: Manifest, sources: FixtureSource[], options: UploadOptions = {}): Promise<Manifest> {
  const tables = options.changeTables ?? DEFAULT_CHANGE_TABLES;
  const lines: string[] = [];
  const to: Watermark[] = [];
  const changes: Record<string, number> = {};
  for (const s of sources) {
    const db = new DatabaseSync(s.path, { readOnly: true });
    for (const t of tables) {
      const from = previous.to.find((w) => w.source === s.source && w.table === t.table);
      const cols = t.columns.map(quote).join(", ");
      const where = from?.value ? `WHERE (${cols}) > (${from.value.map(() => "?").join(", ")})` : "";
      let last = from?.value ?? null;
      let n = 0;
      for (const row of db.prepare(`SELECT * FROM ${quote(t.table)} ${where} ORDER BY ${cols}`).iterate(...((from?.value ?? []) as (number | string)[])) as Iterable<Row>) {
        lines.push(encodeChangeLine({ source: s.source, table: t.table, row }));
        last = t.columns.map((c) => row[c] as number | string);
        n++;
      }
      changes[`${s.source}/${t.table}`] = n;
      to.push({ source: s.source, table: t.table, columns: [...t.columns], value: last });
    }
    db.close();
  }
  const plain = new TextEncoder().encode(lines.map((l) => `${l}\n`).join(""));
  const compressed = compress(plain, options.legacy);
  const files = [entry(CHANGES_FILE, "changes", compressed, plain, undefined, options.legacy)];
  const stored = options.tamper ? options.tamper(CHANGES_FILE, compressed) : compressed;
  await store.put(fileKey("incremental", ts, CHANGES_FILE), stored);
  const m = buildManifest({ kind: "incremental", id: ts, base: previous.base, previous: previous.id, ...meta(ts), files, databases: [], from: previous.to, to, changes });
  if (!options.noManifest) await store.put(manifestKey("incremental", ts), serializeManifest(m), { contentType: "application/json" });
  return m;
}

/** The logical content of a database: schema and every row of every table, in a stable order. */
export function dumpDatabase(path: string): { schema: string[]; rows: Record<string, string[]> } {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const schema = (db.prepare("SELECT type || ' ' || name || ' ' || coalesce(sql, '') AS s FROM sqlite_schema ORDER BY type, name").all() as { s: string }[]).map((r) => r.s);
    const rows: Record<string, string[]> = {};
    for (const name of Object.keys(tablesOf(db))) {
      const stmt = db.prepare(`SELECT * FROM ${quote(name)}`);
      stmt.setReadBigInts(true);
      rows[name] = stmt
        .all()
        .map((r) =>
          JSON.stringify(Object.entries(r as Record<string, unknown>), (_k, v) =>
            typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v,
          ),
        )
        .sort();
    }
    return { schema, rows };
  } finally {
    db.close();
  }
}

/** Lowercase hex sha256 of a file (for "the target is untouched, byte for byte"). */
export async function fileSha256(path: string): Promise<string> {
  return sha256(await readFile(path));
}
