import { resolve } from "node:path";
import type { DatabaseSync } from "node:sqlite";

/**
 * Pinned snapshots (docs/design.md, "Full backup cost"): a WAL database whose log was fully checkpointed while
 * no writer could commit, then held by a read transaction. While that transaction is open SQLite writes no page
 * of the database file (a checkpoint needs the read-lock that transaction holds), so the file's first
 * `bytes` bytes are the snapshot itself: the backup checks it through `db` and compresses it straight from the
 * live file, without writing a 1 GiB copy to the temp disk and reading it back. A pin stands in for the copy
 * at the path the backup gave (`snapshotDatabase(..., { pin: true })`), so `checkSnapshot` and `compressFile`
 * find it there; `releasePinned` ends it (the backup's clean-up, whatever happened).
 */
export interface PinnedSnapshot {
  /** The live database file. */
  file: string;
  /** page_count x page_size inside the read transaction. */
  bytes: number;
  pageSize: number;
  pageCount: number;
  /** The connection holding the read transaction; checks run on it. */
  db: DatabaseSync;
}

const pins = new Map<string, PinnedSnapshot>();

/** Registers `pin` as the snapshot at `path`, ending one already there. */
export function setPinned(path: string, pin: PinnedSnapshot): void {
  releasePinned(path);
  pins.set(resolve(path), pin);
}

/** The pinned snapshot standing in for the copy at `path`, if any. */
export function pinnedAt(path: string): PinnedSnapshot | undefined {
  return pins.get(resolve(path));
}

/** Ends the pins at `path` and under it (a work directory): the read transaction, then the connection. */
export function releasePinned(path: string): void {
  const base = resolve(path);
  for (const [key, pin] of pins) {
    if (key !== base && !key.startsWith(`${base}/`)) continue;
    pins.delete(key);
    try {
      if (pin.db.isTransaction) pin.db.exec("COMMIT");
    } catch {
      // a read transaction has nothing to keep; closing ends it anyway
    }
    try {
      pin.db.close();
    } catch {
      // already closed
    }
  }
}
