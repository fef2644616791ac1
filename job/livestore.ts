import { writeFile } from "node:fs/promises";
import { sourceNameFor, type DatabaseInput } from "./backup.ts";
import { JobError } from "./errors.ts";

/**
 * Backing up a running LiveStore 0.4 store from inside the app (`@livestore/adapter-node`). Its SQLite runs
 * in LiveStore's leader (wa-sqlite) with no file locks and no fsync (docs/design.md fact 7), so another process
 * copying the files can catch a write half-done. The leader itself serializes each database between
 * transactions (`leaderThread.export` for the state DB, `getEventlogData` for the event log): those bytes are
 * consistent. The two are taken one after the other; `backup()` compares their heads and takes both again
 * when an event landed in between, and restore keeps the state DB only when it matches the event log.
 *
 * `effect` (a peer of LiveStore, so already installed beside it) runs the leader's calls.
 */

/** The parts of a LiveStore `Store` this module reads; typed structurally, so this package needs no LiveStore. */
export interface LiveStoreLike {
  readonly storeId: string;
  readonly schema: { state: { sqlite: { hash: number | bigint; migrations: { strategy: string } } } };
}

interface LeaderThread {
  export: unknown;
  getEventlogData: unknown;
}

/** LiveStore 0.4's storage format version: its files are `eventlog@6.db` and `state<hash>@6.db`. */
export const LIVESTORE_FORMAT_VERSION = 6;

/** The two files of a store under its `baseDirectory`, as `@livestore/adapter-node` 0.4 names them. */
export function liveStoreFiles(store: LiveStoreLike): { eventlog: string; state: string } {
  const sqlite = store.schema.state.sqlite;
  const suffix = sqlite.migrations.strategy === "manual" ? "fixed" : sqlite.hash.toString();
  return { eventlog: `${store.storeId}/eventlog@${LIVESTORE_FORMAT_VERSION}.db`, state: `${store.storeId}/state${suffix}@${LIVESTORE_FORMAT_VERSION}.db` };
}

function leaderOf(store: LiveStoreLike): LeaderThread {
  const internals = (store as unknown as Record<symbol, { clientSession?: { leaderThread?: LeaderThread } } | undefined>)[Symbol.for("livestore.StoreInternals")];
  const leader = internals?.clientSession?.leaderThread;
  if (!leader || leader.export === undefined || leader.getEventlogData === undefined) {
    throw new JobError("usage", `back up LiveStore store '${store.storeId}': it exposes no leader thread with export/getEventlogData`, {
      hint: "pass the Store returned by createStorePromise() of @livestore/livestore 0.4 with @livestore/adapter-node",
    });
  }
  return leader;
}

async function run(effect: unknown): Promise<Uint8Array> {
  let Effect: { runPromise: (e: unknown) => Promise<unknown> };
  try {
    ({ Effect } = (await import("effect")) as unknown as { Effect: typeof Effect });
  } catch (e) {
    throw new JobError("usage", "back up a LiveStore store: the 'effect' package (a peer of @livestore/livestore) cannot be loaded", {
      hint: "install LiveStore's peers in the app (npm i effect)",
      cause: e,
    });
  }
  const bytes = await Effect.runPromise(effect);
  if (!(bytes instanceof Uint8Array) || bytes.byteLength === 0) throw new JobError("database", "back up a LiveStore store: the leader returned no database bytes");
  return bytes;
}

/**
 * The store's two databases as `backup()` inputs, named and placed as on disk (`<storeId>/eventlog@6.db`,
 * `<storeId>/state<hash>@6.db`), so `restore --data-dir <baseDirectory>` puts them back where the app looks.
 *
 * ```ts
 * await backup({ store: new HttpStore({ url, token }), databases: liveStoreDatabases(store) });
 * ```
 */
export function liveStoreDatabases(store: LiveStoreLike): DatabaseInput[] {
  const files = liveStoreFiles(store);
  const leader = leaderOf(store);
  let pendingState: Uint8Array | undefined;
  // The event log is asked for first (backup() snapshots in order); the state DB right after it, so the two
  // are as close in time as the leader allows. A state DB asked for alone is taken on its own.
  const eventlog: DatabaseInput = {
    // Named as `run --data-dir <baseDirectory>` names them, so the CLI and the library continue one chain.
    source: sourceNameFor(files.eventlog),
    relativePath: files.eventlog,
    snapshot: async (dest) => {
      const log = await run(leader.getEventlogData);
      pendingState = await run(leader.export);
      await writeFile(dest, log);
    },
  };
  const state: DatabaseInput = {
    source: sourceNameFor(files.state),
    relativePath: files.state,
    snapshot: async (dest) => {
      const bytes = pendingState ?? (await run(leader.export));
      pendingState = undefined;
      await writeFile(dest, bytes);
    },
  };
  return [eventlog, state];
}
