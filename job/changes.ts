import { DatabaseSync } from "node:sqlite";
import { encodeChangeLine, type ChangeTable, type DatabaseInfo, type Row, type Watermark } from "../core/index.ts";
import { assertStillCovered, inspectDatabase, rowSha256, rowsAtOrBelow } from "./coverage.ts";
import { JobError } from "./errors.ts";
import { assertSqliteFile, keyValue, quoteIdent } from "./sqlite.ts";

/**
 * The incremental export: rows of each change table whose key tuple is past the previous watermark, read
 * from the live database inside one read transaction (so the export is a committed state), in key order,
 * as `encodeChangeLine` NDJSON. The caller compresses and uploads the text as it is produced.
 */
export interface ChangeSource {
  source: string;
  /** A database path (opened here) or the app's open connection (the in-process case). */
  db: string | DatabaseSync;
  /** The database as the base full backup recorded it: the export first checks it is still covered. */
  base?: DatabaseInfo;
}

export interface ChangeExportResult {
  /** Rows per `<source>/<table>`. */
  changes: Record<string, number>;
  /** The watermarks reached: the last key exported, or the previous one when nothing changed. */
  to: Watermark[];
}

const CHUNK_CHARS = 256 * 1024;

/**
 * Yields NDJSON text in chunks; `result()` is complete once the iteration ends. `from` holds the previous
 * set's `to` watermarks; a table without one (new, or empty before) is exported from its start.
 */
export function exportChanges(
  sources: readonly ChangeSource[],
  tables: readonly ChangeTable[],
  from: readonly Watermark[],
): { lines: AsyncIterable<string>; result: () => ChangeExportResult } {
  const out: ChangeExportResult = { changes: {}, to: [] };
  async function* generate(): AsyncGenerator<string> {
    for (const src of sources) {
      if (typeof src.db !== "string") {
        // The app's own connection: run the whole read transaction without yielding, so no app code can
        // run statements inside it. The cost is holding this source's changes in memory (an increment).
        const chunks = [...exportSource(src, src.db)];
        yield* chunks;
        continue;
      }
      await assertSqliteFile(src.db);
      const db = new DatabaseSync(src.db, { timeout: 30_000 });
      try {
        yield* exportSource(src, db);
      } finally {
        db.close();
      }
    }
  }
  function* exportSource(src: ChangeSource, db: DatabaseSync): Generator<string> {
    let open = false;
    try {
      db.exec("BEGIN");
      open = true;
      const inspection = inspectDatabase(db, tables);
      if (src.base) assertStillCovered(db, src.source, src.base, inspection, from);
      for (const t of inspection.changeTables) {
        const prev = from.find((w) => w.source === src.source && w.table === t.table);
        if (prev && prev.columns.join(",") !== t.columns.join(",")) {
          throw new JobError("usage", `export changes of '${src.source}/${t.table}': the previous backup keyed it by (${prev.columns.join(", ")}), now (${t.columns.join(", ")})`, {
            hint: "take a full backup after changing --changes-table",
          });
        }
        const cols = t.columns.map(quoteIdent);
        const order = cols.join(", ");
        const where = prev?.value ? `WHERE (${order}) > (${prev.value.map(() => "?").join(", ")})` : "";
        const stmt = db.prepare(`SELECT * FROM ${quoteIdent(t.table)} ${where} ORDER BY ${order}`);
        stmt.setReadBigInts(true);
        let count = 0;
        let last: (number | string)[] | null = prev?.value ?? null;
        let buffer = "";
        for (const row of stmt.iterate(...((prev?.value ?? []) as (number | string)[])) as Iterable<Row>) {
          buffer += `${encodeChangeLine({ source: src.source, table: t.table, row })}\n`;
          count++;
          last = t.columns.map((c) => keyValue(row[c], t.table, c));
          if (buffer.length >= CHUNK_CHARS) {
            yield buffer;
            buffer = "";
          }
        }
        if (buffer) yield buffer;
        out.changes[`${src.source}/${t.table}`] = count;
        const total = prev?.count !== undefined ? prev.count + count : rowsAtOrBelow(db, t, last);
        const row = rowSha256(db, t, last);
        out.to.push({ source: src.source, table: t.table, columns: [...t.columns], value: last, count: total, ...(row ? { rowSha256: row } : {}) });
      }
      db.exec("COMMIT");
      open = false;
    } finally {
      if (open) db.exec("ROLLBACK");
    }
  }
  return { lines: generate(), result: () => out };
}
