import { ContractError } from "./errors.ts";
import { CHANGES_FILE, DOCUMENTS_FILE, MANIFEST_FILE, databaseFile } from "./keys.ts";
import { dayOfTimestamp, isIsoTime, isTimestamp, type BackupTimestamp } from "./time.ts";
import { finiteNumber, listOf, nonEmptyString, nullable, object, oneOf, optional, pair, recordOf, rule, string, wholeNumber, type Check } from "./validate.ts";

/** A path under a data directory as manifests record it: '/'-separated segments of core's source charset, at most 8 deep. */
export function isRelativeDataPath(path: unknown): path is string {
  if (typeof path !== "string" || path.length === 0 || path.length > 512) return false;
  const segments = path.split("/");
  return segments.length <= 8 && segments.every((s) => /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/.test(s) && s !== "." && !s.includes(".."));
}

/**
 * The manifest (`metadata.json`) of a backup set: what was stored, how to check it, and where it sits in
 * the incremental chain. It is written LAST; a set without one is incomplete and never restored.
 */
export const MANIFEST_FORMAT = "r2-sqlite-backup/manifest@1";

const sha256: Check<string> = rule("64 lowercase hex characters (sha256)", (v) => typeof v === "string" && /^[0-9a-f]{64}$/.test(v));
const timestamp: Check<BackupTimestamp> = rule("a UTC YYYYMMDDTHHMMSSZ timestamp", (v) => typeof v === "string" && isTimestamp(v));
const isoTime: Check<string> = rule("an ISO time in UTC (2026-01-31T06:00:00.000Z)", isIsoTime);
const count = wholeNumber(0);
const relativePath: Check<string> = rule("a relative path of safe segments ('a/b.db'), no '..' or leading '/'", isRelativeDataPath);

/**
 * How a restore knows an object decompressed to the bytes that were backed up (besides `uncompressedSize`):
 * `zstd-checksum`: every zstd frame of the object carries the checksum of its own content (RFC 8878's
 * Content_Checksum, the low 32 bits of XXH64 of the frame's input, written by the compressor), which every zstd decoder checks as
 * it decodes, Node's and `zstd -d` alike. From 0.3 on; before, `uncompressedSha256` (which 0.3 still checks).
 */
export const CONTENT_CHECKSUM = "zstd-checksum" as const;

/** One stored object of the set. `size`/`sha256` are of the bytes as stored (compressed). */
export interface FileEntry {
  name: string;
  role: "database" | "documents" | "changes";
  /** The database this object belongs to (role `database`). */
  source?: string;
  contentType: string;
  compression: "zstd" | "none";
  size: number;
  sha256: string;
  uncompressedSize: number;
  /** What checks the decompressed bytes from 0.3 on (see CONTENT_CHECKSUM). */
  contentChecksum?: typeof CONTENT_CHECKSUM;
  /** sha256 of the decompressed bytes: what checked them before 0.3. */
  uncompressedSha256?: string;
}

const fileEntry = object<FileEntry>({
  name: nonEmptyString,
  role: oneOf("database", "documents", "changes"),
  source: optional(string),
  contentType: nonEmptyString,
  compression: oneOf("zstd", "none"),
  size: count,
  sha256,
  uncompressedSize: count,
  contentChecksum: optional(oneOf(CONTENT_CHECKSUM)),
  uncompressedSha256: optional(sha256),
});

/** What the job learned of a database while snapshotting it, checked again on restore. */
export interface DatabaseInfo {
  source: string;
  /** The file name the snapshot was taken from (informational; never used as a restore target). */
  fileName?: string;
  pageSize: number;
  pageCount: number;
  integrity: "ok";
  /** Row count per table at the snapshot. */
  tables: Record<string, number>;
  /**
   * Where the file sat under the data directory it was taken from (`<storeId>/eventlog@6.db`), '/'-separated;
   * `restore --data-dir` puts it back there. Absent for a database given by path alone.
   */
  path?: string;
  /**
   * How incrementals carry this database's changes (see job/coverage.ts): `rows` (its change tables, while every
   * other table stays as the full backup has it), `derived` (a LiveStore state DB, rebuilt from `derivedFrom`'s
   * event log), or `none` (every backup of it is a full one). Absent in manifests before 0.2: `rows`.
   */
  coverage?: "rows" | "derived" | "none";
  /** For `derived`: the source whose event log this database is materialized from. */
  derivedFrom?: string;
  /** For `rows`: sha256 over every table that is not a change table, as the snapshot holds them. */
  otherTablesSha256?: string;
  /**
   * LiveStore's own record of what the file holds: for an event log its newest event, for a state DB the
   * newest event it materialized (`__livestore_session_changeset`), as (seqNumGlobal, seqNumClient); null: none.
   */
  livestore?: { role: "eventlog" | "state"; head: [number, number] | null };
}

const databaseInfo = object<DatabaseInfo>({
  source: nonEmptyString,
  fileName: optional(string),
  pageSize: wholeNumber(1),
  pageCount: count,
  integrity: oneOf("ok"),
  tables: recordOf(count),
  path: optional(relativePath),
  coverage: optional(oneOf("rows", "derived", "none")),
  derivedFrom: optional(nonEmptyString),
  otherTablesSha256: optional(sha256),
  livestore: optional(object<NonNullable<DatabaseInfo["livestore"]>>({ role: oneOf("eventlog", "state"), head: nullable(pair(wholeNumber(), wholeNumber())) })),
});

/**
 * How far the changes of one table go: the largest key tuple included, `null` when the table was empty.
 * For LiveStore's `eventlog` the columns are `["seqNumGlobal", "seqNumClient"]`.
 */
export interface Watermark {
  source: string;
  table: string;
  columns: string[];
  value: (number | string)[] | null;
  /** Rows at or below `value`: an incremental checks it again, so a delete or a late insert below it is seen. */
  count?: number;
  /**
   * sha256 of the row(s) at `value` (job/coverage.ts `rowSha256`): an incremental checks it again, so another
   * database under the same source name (its own rows at the same keys) is never continued. From 0.3 on.
   */
  rowSha256?: string;
}

const watermark = object<Watermark>({
  source: nonEmptyString,
  table: nonEmptyString,
  columns: listOf(nonEmptyString, 1),
  value: nullable(listOf(rule<number | string>("a number or a string", (v) => typeof v === "string" || (typeof v === "number" && Number.isFinite(v))))),
  count: optional(count),
  rowSha256: optional(sha256),
});

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  kind: "full" | "incremental";
  /** The set's timestamp: `backups/<kind>/<id>/`. */
  id: BackupTimestamp;
  /** The full backup this set's chain starts from (its own id for a full backup). */
  base: BackupTimestamp;
  /** The set this incremental continues (full or incremental); null for a full backup. */
  previous: BackupTimestamp | null;
  /** For a daily copy: the full backup it was promoted from. */
  promotedFrom?: BackupTimestamp;
  createdAt: string;
  completedAt: string;
  /**
   * When the set's data was read, on the Worker's clock (ISO, ms): an upper bound, so a restore at a time T from
   * this set holds no change committed after T. Absent before 0.3: the id is that time.
   */
  capturedAt?: string;
  /** The databases the set holds or carries changes of, with their paths under the data directory (lineage). */
  sources?: { source: string; path?: string }[];
  app: { name: string; version: string };
  tool: { name: string; version: string };
  sqliteVersion: string;
  host?: string;
  files: FileEntry[];
  databases: DatabaseInfo[];
  /** Incremental: the watermarks it starts after (exclusive). Full: empty. */
  from: Watermark[];
  /** The watermarks this set reaches (inclusive): the next incremental starts after them. */
  to: Watermark[];
  /** Rows carried by an incremental, per `<source>/<table>`. */
  changes?: Record<string, number>;
  /** Milliseconds per phase (snapshot, compress, upload, total, ...). */
  timings: Record<string, number>;
}

const nameAndVersion = object<Manifest["app"]>({ name: string, version: string });

/** The manifest's shape; fields it does not declare are dropped (a newer writer's additions). */
const manifest = object<Manifest>({
  format: oneOf(MANIFEST_FORMAT),
  kind: oneOf("full", "incremental"),
  id: timestamp,
  base: timestamp,
  previous: nullable(timestamp),
  promotedFrom: optional(timestamp),
  createdAt: isoTime,
  completedAt: isoTime,
  capturedAt: optional(isoTime),
  sources: optional(listOf(object<NonNullable<Manifest["sources"]>[number]>({ source: nonEmptyString, path: optional(relativePath) }))),
  app: nameAndVersion,
  tool: nameAndVersion,
  sqliteVersion: nonEmptyString,
  host: optional(string),
  files: listOf(fileEntry),
  databases: listOf(databaseInfo),
  from: listOf(watermark),
  to: listOf(watermark),
  changes: optional(recordOf(count)),
  timings: recordOf(finiteNumber(0)),
});

function checkInvariants(m: Manifest): string[] {
  const problems: string[] = [];
  if (m.kind === "full") {
    if (m.base !== m.id) problems.push(`a full backup's base must be its own id '${m.id}', got '${m.base}'`);
    if (m.previous !== null) problems.push("a full backup has no previous set");
    if (m.from.length > 0) problems.push("a full backup starts from no watermark ('from' must be empty)");
    if (!m.files.some((f) => f.role === "database")) problems.push("a full backup holds at least one database");
  } else {
    if (m.previous === null) problems.push("an incremental names the previous set it continues");
    if (m.base > m.id || (m.previous !== null && m.previous >= m.id)) problems.push("an incremental comes after its base and previous set");
    if (!m.files.some((f) => f.role === "changes")) problems.push(`an incremental holds '${CHANGES_FILE}'`);
  }
  if (m.promotedFrom !== undefined && m.kind !== "full") problems.push("only a full backup is promoted to daily");
  const names = new Set<string>();
  for (const f of m.files) {
    if (names.has(f.name)) problems.push(`file '${f.name}' is listed twice`);
    names.add(f.name);
    if (f.name === MANIFEST_FILE) problems.push(`'${MANIFEST_FILE}' does not list itself`);
    if (f.compression === "zstd" && f.contentChecksum === undefined && f.uncompressedSha256 === undefined) {
      problems.push(`file '${f.name}' has nothing to check its decompressed bytes by (contentChecksum or uncompressedSha256)`);
    }
    if (f.role === "database") {
      if (!f.source) problems.push(`database file '${f.name}' names no source`);
      else if (f.name !== databaseFile(f.source)) problems.push(`database file '${f.name}' should be '${databaseFile(f.source)}'`);
      else if (!m.databases.some((d) => d.source === f.source)) problems.push(`database '${f.source}' has a file but no database entry`);
    }
    if (f.role === "documents" && f.name !== DOCUMENTS_FILE) problems.push(`documents file must be '${DOCUMENTS_FILE}'`);
    if (f.role === "changes" && f.name !== CHANGES_FILE) problems.push(`changes file must be '${CHANGES_FILE}'`);
    if (m.kind === "incremental" && f.role !== "changes") problems.push(`an incremental holds only '${CHANGES_FILE}', not '${f.name}'`);
  }
  const paths = new Set<string>();
  for (const d of m.databases) {
    if (d.path !== undefined) {
      if (paths.has(d.path)) problems.push(`two databases have the path '${d.path}'`);
      paths.add(d.path);
    }
    if ((d.coverage === "derived") !== (d.derivedFrom !== undefined)) problems.push(`database '${d.source}': coverage 'derived' and derivedFrom go together`);
    if (d.derivedFrom !== undefined && !m.databases.some((e) => e.source === d.derivedFrom && e.livestore?.role === "eventlog")) {
      problems.push(`database '${d.source}' is derived from '${d.derivedFrom}', which is not an event log of this backup`);
    }
  }
  if (Date.parse(m.completedAt) < Date.parse(m.createdAt)) problems.push("completedAt is before createdAt");
  return problems;
}

/** Builds a manifest from its parts, validating schema and invariants; throws a ContractError listing every problem. */
export function buildManifest(input: Omit<Manifest, "format">): Manifest {
  return validateManifest({ format: MANIFEST_FORMAT, ...input }, `${input?.kind ?? "?"}/${input?.id ?? "?"}`);
}

/** Parses `metadata.json` text (or an already parsed value) into a validated manifest. */
export function parseManifest(text: string | unknown, where = "metadata.json"): Manifest {
  let value: unknown = text;
  if (typeof text === "string") {
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new ContractError("parse", "manifest", where, `not JSON: ${(e as Error).message}`);
    }
  }
  return validateManifest(value, where);
}

function validateManifest(value: unknown, where: string): Manifest {
  const shapeProblems: string[] = [];
  const m = manifest(value, "", shapeProblems);
  if (shapeProblems.length > 0) throw new ContractError("validate", "manifest", where, shapeProblems.join("; "), "was it written by this tool's version?");
  const problems = checkInvariants(m);
  if (problems.length > 0) throw new ContractError("validate", "manifest", where, problems.join("; "));
  return m;
}

/** Serializes a manifest as stored (stable, indented JSON). */
export function serializeManifest(m: Manifest): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}

/** The manifest of a full backup's daily copy: the same content, marked as promoted from it. */
export function promoteManifest(full: Manifest): { day: string; manifest: Manifest } {
  if (full.kind !== "full") throw new ContractError("promote", "backup", full.id, "only a full backup is promoted to daily");
  return { day: dayOfTimestamp(full.id), manifest: { ...full, promotedFrom: full.id } };
}

/** Finds the file entry for a name, or throws naming what the manifest holds. */
export function requireFile(m: Manifest, name: string): FileEntry {
  const f = m.files.find((x) => x.name === name);
  if (!f) {
    throw new ContractError("find", "file", name, `not in ${m.kind} backup ${m.id} (it holds ${m.files.map((x) => x.name).join(", ") || "nothing"})`);
  }
  return f;
}
