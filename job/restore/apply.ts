import type { DatabaseSync, StatementSync } from "node:sqlite";
import { Writable } from "node:stream";
import { compareKeys, decodeChangeLine, isPastWatermark, type ChangeLine, type Row, type Watermark } from "../../core/index.ts";
import { JobError } from "../errors.ts";
import { quoteIdent } from "../sqlite.ts";

/**
 * The SQLite adapter of restore: re-inserts the rows of an incremental in order, and checks that the
 * chain reaches what its manifests promise. Each incremental is one transaction; a row that is not past
 * the running watermark, or a chain whose `from` is not the previous `to`, stops the restore.
 */

/** The watermark of one table of one source, as a string key (`<source>/<table>`). */
export const watermarkId = (w: Pick<Watermark, "source" | "table">) => `${w.source}/${w.table}`;

function sameWatermark(a: Watermark, b: Watermark): boolean {
  if (a.columns.join("\u0000") !== b.columns.join("\u0000")) return false;
  if (a.value === null || b.value === null) return a.value === b.value;
  return compareKeys(a.value, b.value) === 0;
}

const describe = (w: Watermark | undefined) => (w ? `${w.columns.join(",")}=${w.value === null ? "empty" : JSON.stringify(w.value)}` : "none");

/**
 * Checks that an incremental starts where the chain is (`from` equals the running `to` for every table of
 * the sources being restored), then returns its `to`. `running` maps `<source>/<table>` to a watermark.
 */
export function advanceWatermarks(running: Map<string, Watermark>, step: { id: string; from: Watermark[]; to: Watermark[] }, sources: ReadonlySet<string>): void {
  for (const from of step.from) {
    if (!sources.has(from.source)) continue;
    const have = running.get(watermarkId(from));
    if (!have || !sameWatermark(have, from)) {
      throw new JobError("integrity", `apply incremental '${step.id}': it starts after ${watermarkId(from)} ${describe(from)}, but the chain is at ${describe(have)}`, {
        hint: "the chain is not contiguous; restore an earlier time with --at",
      });
    }
  }
  for (const to of step.to) if (sources.has(to.source)) running.set(watermarkId(to), to);
}

/** Applies the change lines of one incremental to the databases being restored, one transaction each. */
export class ChangeApplier {
  readonly #dbs: Map<string, DatabaseSync>;
  readonly #where: string;
  readonly #running: Map<string, Watermark>;
  readonly #statements = new Map<string, StatementSync>();
  readonly #last = new Map<string, Row>();
  readonly rows = new Map<string, number>();
  #lineNo = 0;

  /** `dbs` maps a source to its open temporary database; `running` is the chain's watermark before this step. */
  constructor(dbs: Map<string, DatabaseSync>, running: Map<string, Watermark>, where: string) {
    this.#dbs = dbs;
    this.#running = running;
    this.#where = where;
  }

  begin(): void {
    for (const db of this.#dbs.values()) db.exec("BEGIN IMMEDIATE");
  }

  commit(): void {
    for (const db of this.#dbs.values()) db.exec("COMMIT");
  }

  rollback(): void {
    for (const db of this.#dbs.values()) if (db.isTransaction) db.exec("ROLLBACK");
  }

  /** One NDJSON line. Lines of sources not being restored are skipped. */
  applyLine(line: string): void {
    this.#lineNo++;
    if (line.length === 0) return;
    const where = `${this.#where}:${this.#lineNo}`;
    let change: ChangeLine;
    try {
      change = decodeChangeLine(line, where);
    } catch (e) {
      throw new JobError("integrity", (e as Error).message, { cause: e });
    }
    const db = this.#dbs.get(change.source);
    if (!db) return;
    const id = `${change.source}/${change.table}`;
    const mark = this.#running.get(id);
    if (!mark) {
      throw new JobError("integrity", `apply change '${where}': table ${id} has no watermark in the chain's manifests`);
    }
    // Rows come in key order past the previous watermark; anything else means a damaged or forked export.
    const floor = this.#last.get(id);
    if (!isPastWatermark(change.row, floor ? { columns: mark.columns, value: mark.columns.map((c) => floor[c] as number | string) } : mark)) {
      throw new JobError(
        "integrity",
        `apply change '${where}': the ${id} row ${JSON.stringify(mark.columns.map((c) => String(change.row[c])))} is not past ${floor ? "the previous row" : describe(mark)}`,
        {
          hint: "the incremental is out of order or overlaps its predecessor",
        },
      );
    }
    const columns = Object.keys(change.row);
    const key = `${change.source}\u0000${change.table}\u0000${columns.join("\u0000")}`;
    let stmt = this.#statements.get(key);
    if (!stmt) {
      stmt = db.prepare(`INSERT INTO ${quoteIdent(change.table)} (${columns.map(quoteIdent).join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`);
      this.#statements.set(key, stmt);
    }
    try {
      stmt.run(...columns.map((c) => change.row[c]!));
    } catch (e) {
      throw new JobError("integrity", `apply change '${where}': insert into ${id} failed: ${(e as Error).message}`, { cause: e });
    }
    this.#last.set(id, change.row);
    this.rows.set(id, (this.rows.get(id) ?? 0) + 1);
  }

  /** A Writable that splits NDJSON into lines and applies each (for `downloadObject`). */
  sink(): Writable {
    let rest = "";
    const decoder = new TextDecoder("utf-8", { fatal: true });
    return new Writable({
      write: (chunk: Buffer, _enc, done) => {
        try {
          const text = rest + decoder.decode(chunk, { stream: true });
          const lines = text.split("\n");
          rest = lines.pop()!;
          for (const line of lines) this.applyLine(line);
          done();
        } catch (e) {
          done(e as Error);
        }
      },
      final: (done) => {
        try {
          const text = rest + decoder.decode();
          if (text.length > 0) this.applyLine(text);
          done();
        } catch (e) {
          done(e as Error);
        }
      },
    });
  }
}

/**
 * The app check after the chain: each change table's largest key equals the chain's last `to` watermark
 * (an empty table for a null one). It catches a chain that is silently short or long.
 */
export function checkWatermarks(db: DatabaseSync, source: string, marks: Iterable<Watermark>): void {
  for (const w of marks) {
    if (w.source !== source) continue;
    const exists = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?").get(w.table);
    if (!exists) throw new JobError("integrity", `check table '${source}/${w.table}': it is missing from the restored database`);
    const stmt = db.prepare(
      `SELECT ${w.columns.map(quoteIdent).join(", ")} FROM ${quoteIdent(w.table)} ORDER BY ${w.columns.map((c) => `${quoteIdent(c)} DESC`).join(", ")} LIMIT 1`,
    );
    stmt.setReadBigInts(true);
    const row = stmt.get() as Record<string, number | bigint | string> | undefined;
    const got = row ? w.columns.map((c) => row[c]!) : null;
    const ok = got === null || w.value === null ? got === w.value : compareKeys(got, w.value) === 0;
    if (!ok) {
      throw new JobError(
        "integrity",
        `check table '${source}/${w.table}': its largest key is ${got === null ? "none (empty)" : JSON.stringify(got.map(String))}, the chain reaches ${describe(w)}`,
        {
          hint: "the restored rows do not match the manifests; restore an earlier time with --at",
        },
      );
    }
  }
}
