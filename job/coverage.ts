import { createHash } from "node:crypto";
import type { DatabaseSync } from "node:sqlite";
import type { ChangeTable, DatabaseInfo, Watermark } from "../core/index.ts";
import { JobError } from "./errors.ts";
// sqlite.ts imports this module too; only functions cross the cycle, called after both have loaded.
import { quoteIdent } from "./sqlite.ts";

/**
 * What an incremental backup covers, decided in one place. A database is carried by row incrementals only
 * when (a) it holds at least one real change table (the table exists with every key column), (b) every
 * other table, and the schema, are exactly as the full backup had them, and (c) no row at or below the last
 * watermark was deleted or inserted late. A LiveStore state DB is derived: incrementals carry its event log
 * and restore keeps the state only when it provably matches it. Anything else gets a full backup.
 */

/** LiveStore 0.4's own table names (`@livestore/common`, SystemTables); test/job/livestore-internals.test.ts pins them. */
export const LIVESTORE = {
  eventlogTable: "eventlog",
  syncStatusTable: "__livestore_sync_status",
  stateTables: ["__livestore_schema", "__livestore_schema_event_defs", "__livestore_session_changeset"],
  /** One row per materialized event; LiveStore keeps at least the newest ("used to query the current head"). */
  sessionChangesetTable: "__livestore_session_changeset",
  eventlogKey: ["seqNumGlobal", "seqNumClient", "seqNumRebaseGeneration"],
  /**
   * Columns LiveStore's leader rewrites in rows it wrote (`updateSyncMetadata`, once the sync backend confirms an
   * event): left out of a watermark's `rowSha256`, which must stay the same for the same database.
   */
  rewrittenColumns: ["syncMetadataJson"] as readonly string[],
} as const;

export type LiveStoreHead = [number, number] | null;

/** Two heads are the same event (or both "no event"). */
export function sameHead(a: LiveStoreHead | undefined, b: LiveStoreHead | undefined): boolean {
  const x = a ?? null;
  const y = b ?? null;
  return x === null || y === null ? x === y : x[0] === y[0] && x[1] === y[1];
}

export interface DatabaseInspection {
  /** The configured change tables that exist here with every key column. */
  changeTables: ChangeTable[];
  /** Tables named like a change table that are not one, with why. */
  rejected: { table: string; reason: string }[];
  /** Set when the file is a LiveStore event log or state DB, with the head it records. */
  livestore?: { role: "eventlog" | "state"; head: LiveStoreHead };
  /** sha256 over the schema and every row of the tables that are not change tables. */
  otherTablesSha256: string;
}

function columnsOf(db: DatabaseSync, table: string): Set<string> {
  return new Set((db.prepare(`PRAGMA table_info(${quoteIdent(table)})`).all() as { name: string }[]).map((c) => c.name));
}

function head(db: DatabaseSync, table: string): LiveStoreHead {
  const stmt = db.prepare(`SELECT seqNumGlobal AS g, seqNumClient AS c FROM ${quoteIdent(table)} ORDER BY seqNumGlobal DESC, seqNumClient DESC LIMIT 1`);
  const row = stmt.get() as { g: number; c: number } | undefined;
  return row ? [Number(row.g), Number(row.c)] : null;
}

function hashValue(_key: string, v: unknown): unknown {
  if (typeof v === "bigint") return `${v}n`;
  if (v instanceof Uint8Array) return { $base64: Buffer.from(v).toString("base64") };
  return v;
}

/**
 * Reads what decides coverage from an open connection (the caller holds the read transaction, so this and
 * any export beside it see one committed state).
 */
export function inspectDatabase(db: DatabaseSync, changeTables: readonly ChangeTable[]): DatabaseInspection {
  const schema = db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").all() as {
    type: string;
    name: string;
    sql: string | null;
  }[];
  const tables = new Set(schema.filter((o) => o.type === "table").map((o) => o.name));
  const valid: ChangeTable[] = [];
  const rejected: DatabaseInspection["rejected"] = [];
  for (const t of changeTables) {
    if (!tables.has(t.table)) continue;
    const cols = columnsOf(db, t.table);
    const missing = t.columns.filter((c) => !cols.has(c));
    if (missing.length > 0) rejected.push({ table: t.table, reason: `it has no column ${missing.join(", ")}, so it is not a change table keyed by (${t.columns.join(", ")})` });
    else valid.push(t);
  }
  let livestore: DatabaseInspection["livestore"];
  if (LIVESTORE.stateTables.every((t) => tables.has(t))) {
    livestore = { role: "state", head: head(db, LIVESTORE.sessionChangesetTable) };
  } else if (tables.has(LIVESTORE.eventlogTable) && tables.has(LIVESTORE.syncStatusTable) && LIVESTORE.eventlogKey.every((c) => columnsOf(db, LIVESTORE.eventlogTable).has(c))) {
    livestore = { role: "eventlog", head: head(db, LIVESTORE.eventlogTable) };
  }
  const hash = createHash("sha256");
  hash.update(JSON.stringify(schema));
  const carried = new Set(valid.map((t) => t.table));
  for (const name of [...tables].sort()) {
    if (carried.has(name)) continue;
    hash.update(`\u0000table ${name}\n`);
    const stmt = db.prepare(`SELECT * FROM ${quoteIdent(name)}`);
    stmt.setReadBigInts(true);
    for (const row of stmt.iterate()) hash.update(`${JSON.stringify(row, hashValue)}\n`);
  }
  return { changeTables: valid, rejected, ...(livestore ? { livestore } : {}), otherTablesSha256: hash.digest("hex") };
}

/** The manifest's coverage of a database that is not derived from another (a paired LiveStore state DB is). */
export function coverageOf(inspection: DatabaseInspection): "rows" | "none" {
  return inspection.changeTables.length > 0 ? "rows" : "none";
}

/** Why an incremental cannot carry a database (returned as a value; `requireCovered` turns it into an error). */
export class CoverageError extends JobError {
  readonly source: string;
  constructor(source: string, reason: string) {
    super("usage", `take incremental backup of '${source}': ${reason}`, { hint: "take a full backup (r2backup run --kind full, or --kind auto, which does so by itself)" });
    this.name = "CoverageError";
    this.source = source;
  }
}

/**
 * Checks, before anything is exported, that the base full backup's databases are the ones being backed up
 * and that each is carried by incrementals. Returns the reason it is not, or undefined.
 */
export function uncoveredReason(base: readonly DatabaseInfo[], sources: readonly string[]): CoverageError | undefined {
  const had = base.map((d) => d.source).sort();
  const now = [...sources].sort();
  if (had.join("\u0000") !== now.join("\u0000")) {
    const added = now.filter((s) => !had.includes(s));
    const gone = had.filter((s) => !now.includes(s));
    return new CoverageError(
      added[0] ?? gone[0] ?? "?",
      `the full backup it would continue holds ${had.join(", ") || "nothing"}${added.length ? `; new here: ${added.join(", ")}` : ""}${gone.length ? `; missing here: ${gone.join(", ")}` : ""}`,
    );
  }
  for (const d of base) {
    if ((d.coverage ?? "rows") === "none")
      return new CoverageError(d.source, "it has no change table (a table past whose watermark rows are exported), so only a full backup carries its changes");
  }
  return undefined;
}

/** Rows of a change table whose key tuple is at or below `key` (the `count` a watermark records); 0 for no key. */
export function rowsAtOrBelow(db: DatabaseSync, t: Pick<ChangeTable, "table" | "columns">, key: readonly (number | string)[] | null): number {
  if (key === null) return 0;
  const stmt = db.prepare(`SELECT count(*) AS n FROM ${quoteIdent(t.table)} WHERE (${t.columns.map(quoteIdent).join(", ")}) <= (${key.map(() => "?").join(", ")})`);
  return Number((stmt.get(...key) as { n: number | bigint }).n);
}

/**
 * sha256 of the rows of a change table whose key tuple is `key` (every column, as `inspectDatabase` hashes a
 * row), undefined for no key or no such row. A watermark records it: two databases under one source name hold
 * different rows at the same keys, and an incremental of one must not continue the other's chain.
 */
export function rowSha256(db: DatabaseSync, t: Pick<ChangeTable, "table" | "columns">, key: readonly (number | string)[] | null): string | undefined {
  if (key === null) return undefined;
  const stmt = db.prepare(`SELECT * FROM ${quoteIdent(t.table)} WHERE (${t.columns.map(quoteIdent).join(", ")}) = (${key.map(() => "?").join(", ")})`);
  stmt.setReadBigInts(true);
  const stable = (row: Record<string, unknown>) => Object.fromEntries(Object.entries(row).filter(([c]) => !LIVESTORE.rewrittenColumns.includes(c)));
  const rows = (stmt.all(...key) as Record<string, unknown>[]).map((row) => JSON.stringify(stable(row), hashValue)).sort();
  return rows.length === 0 ? undefined : createHash("sha256").update(rows.join("\n")).digest("hex");
}

/**
 * Inside the export's read transaction: the tables incrementals do not carry are unchanged since the full
 * backup, and each change table still holds exactly the rows at or below its watermark (append-only), the
 * same row at the watermark itself (the same database, not another under its name).
 */
export function assertStillCovered(db: DatabaseSync, source: string, base: DatabaseInfo, inspection: DatabaseInspection, from: readonly Watermark[]): void {
  if (base.otherTablesSha256 !== undefined && inspection.otherTablesSha256 !== base.otherTablesSha256) {
    throw new CoverageError(source, "its schema or a table other than the change tables changed since the full backup, and incrementals carry only change-table rows");
  }
  for (const w of from) {
    if (w.source !== source || w.value === null) continue;
    if (!inspection.changeTables.some((t) => t.table === w.table)) throw new CoverageError(source, `its change table '${w.table}' is gone or changed shape`);
    // The row at the watermark first: another database under this name usually differs there before anywhere.
    const row = w.rowSha256 === undefined ? undefined : rowSha256(db, w, w.value);
    if (w.rowSha256 !== undefined && row !== w.rowSha256) {
      throw new CoverageError(
        source,
        `the row of '${w.table}' at the last watermark (${w.value.join(", ")}) ${row === undefined ? "is gone" : "is not the one the chain recorded"}: this is another database under the same source name (give each its own --source, or its own bucket), or that row was ${row === undefined ? "deleted" : "changed"} since`,
      );
    }
    if (w.count === undefined) continue;
    const n = rowsAtOrBelow(db, w, w.value);
    if (n !== w.count) {
      throw new CoverageError(
        source,
        `'${w.table}' holds ${n} rows at or below the last watermark, the chain recorded ${w.count}: rows were ${n < w.count ? "deleted" : "inserted below the watermark (committed out of key order)"}, which incrementals cannot carry`,
      );
    }
  }
}

/** What restore does with a LiveStore state DB: keep it only when it provably matches the restored event log. */
export interface DerivedDecision {
  source: string;
  derivedFrom: string;
  keep: boolean;
  /** The head the state DB materialized and the head of the event log being restored, as (global, client). */
  stateHead: LiveStoreHead;
  eventlogHead: LiveStoreHead;
  reason: string;
}

/**
 * Decides, from the full backup's record of the state DB and the chain's last event-log watermark, whether the
 * restored state DB matches the restored event log (docs/design.md fact 8: LiveStore rebuilds a missing state DB
 * from the event log, but boots silently on a stale one). Restore confirms a kept one against the file itself.
 */
export function decideDerived(state: DatabaseInfo, eventlogTo: Watermark | undefined): DerivedDecision {
  const stateHead = state.livestore?.head ?? null;
  const v = eventlogTo?.value ?? null;
  const eventlogHead: LiveStoreHead = v === null ? null : [Number(v[0]), Number(v[1] ?? 0)];
  const base = { source: state.source, derivedFrom: state.derivedFrom ?? "?", stateHead, eventlogHead };
  const show = (h: LiveStoreHead) => (h === null ? "no event" : `event ${h[0]}.${h[1]}`);
  if (state.livestore?.role !== "state") return { ...base, keep: false, reason: "the backup does not record which event it materialized" };
  if (eventlogTo === undefined) return { ...base, keep: false, reason: `the chain records no watermark for ${base.derivedFrom}'s event log` };
  if (eventlogTo.columns[0] !== "seqNumGlobal" || eventlogTo.columns[1] !== "seqNumClient")
    return { ...base, keep: false, reason: `the event log is keyed by (${eventlogTo.columns.join(", ")}), not LiveStore's sequence numbers` };
  if (stateHead === null && eventlogHead !== null)
    return { ...base, keep: false, reason: `the state DB records no materialized event and the event log reaches ${show(eventlogHead)}` };
  if (!sameHead(stateHead, eventlogHead))
    return { ...base, keep: false, reason: `it materialized up to ${show(stateHead)} and the restored event log reaches ${show(eventlogHead)}` };
  return { ...base, keep: true, reason: `it materialized exactly up to the restored event log's ${show(eventlogHead)}` };
}

/** The head a state DB file records, read from the file (confirms a kept state DB after download). */
export function stateHeadOf(db: DatabaseSync): LiveStoreHead {
  return head(db, LIVESTORE.sessionChangesetTable);
}
