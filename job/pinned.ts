import { resolve } from "node:path";
import type { DatabaseSync } from "node:sqlite";

/**
 * Pinned snapshots (docs/design.md, "Full backup cost"): a WAL database whose log was fully checkpointed while
 * no writer could commit, then held by a read transaction. While that transaction is open SQLite writes no page
 * of the database file (a checkpoint needs the read-lock that transaction holds), so the file's first
 * `bytes` bytes are the snapshot itself: the backup checks it through `db` and compresses it straight from the
 * live file, without writing a 1 GiB copy to the temp disk and reading it back. A pin stands in for the copy
 * at the path the backup gave (`snapshotDatabase(..., { pins })` registers it in the run's `Pins`), so
 * `checkSnapshot`, `compressFile` and `materializeSnapshot`, given the same `Pins`, find it there.
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

/**
 * The pins of one backup run, by the path of the copy each stands in for. The run owns it (with its work
 * directory) and passes it to whatever reads a snapshot; `releaseAll` ends them when the run ends, whatever
 * happened. No state outside a run: two runs in one process never see each other's pins.
 */
export class Pins {
  readonly #pins = new Map<string, PinnedSnapshot>();

  /** Registers `pin` as the snapshot at `path`, ending one already there. */
  set(path: string, pin: PinnedSnapshot): void {
    this.release(path);
    this.#pins.set(resolve(path), pin);
  }

  /** The pinned snapshot standing in for the copy at `path`, if any. */
  at(path: string): PinnedSnapshot | undefined {
    return this.#pins.get(resolve(path));
  }

  /** Ends the pin at `path`, if any: the read transaction, then the connection. */
  release(path: string): void {
    const key = resolve(path);
    const pin = this.#pins.get(key);
    if (!pin) return;
    this.#pins.delete(key);
    endPin(pin);
  }

  /** Ends every pin of the run. */
  releaseAll(): void {
    for (const path of [...this.#pins.keys()]) this.release(path);
  }

  /** How many pins are held (tests). */
  get size(): number {
    return this.#pins.size;
  }
}

function endPin(pin: PinnedSnapshot): void {
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
