import { createHash } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createZstdDecompress } from "node:zlib";
import tar from "tar-stream";
import { allTodos, bootAndReadTodos, closeTodoStore, doWork, openTodoStore, waitPersisted } from "../examples/livestore/todo-app.ts";
import { DOCUMENTS_FILE, catalogFromKeys, fileKey } from "../core/index.ts";
import { backup, sourceNameFor, type BackupOptions, type BackupResult, type DatabaseInput } from "../job/backup.ts";
import { liveStoreDatabases, liveStoreFiles } from "../job/livestore.ts";
import { restore, type RestoreResult } from "../job/restore/index.ts";
import { HttpStore } from "../job/store/http-store.ts";
import { frameAligned } from "../job/zstd-frames.ts";
import { DEV_TOKENS, startLocalWorker } from "../worker/local.ts";

/**
 * The local end-to-end demo behind `npm start`: the bundled Worker in Miniflare with a local R2 kept
 * under `.mf-data/`, the real LiveStore 0.4 todo app (examples/livestore/todo-app.ts) backed up in-process:
 * a full backup, app actions, two incrementals, then `restore --data-dir` at latest, in between and at the
 * full backup, each booted in LiveStore and checked against the todos the app showed at that point.
 */
export interface DemoOptions {
  /** Working folder for the demo database and the restored copies (default `.local/`). */
  dataDir?: string;
  /** Folder of the local R2 (default `.mf-data/`); reused by the next run. */
  persistDir?: string;
  /** Back up this database instead of the generated demo (full backup, restore, check). */
  db?: string;
  /** App actions before the full backup (default 600; each increment adds a tenth). */
  events?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface DemoCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DemoSummary {
  workerUrl: string;
  database: string;
  backups: { kind: string; id: string; objects: number; storedBytes: number; uncompressedBytes: number; durationMs: number; promoted: string | null }[];
  restores: { at: string; restoresTo: string; to: string; chain: number; rows: Record<string, number>; durationMs: number }[];
  checks: DemoCheck[];
  bucket: { full: number; incremental: number; daily: number; drills: number; incomplete: number };
  /** Every backup set in the bucket, this run's and earlier runs': full and incremental oldest first, then daily. */
  sets: { kind: string; id: string; complete: boolean }[];
  paths: { database: string; restored: string[]; r2: string };
  ok: boolean;
}

/** sha256 over every row of the named tables (all user tables when omitted), in primary-key order. */
export function tableDigests(path: string, only?: readonly string[]): Record<string, string> {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[])
      .map((t) => t.name)
      .filter((t) => !only || only.includes(t));
    const out: Record<string, string> = {};
    for (const t of tables) {
      const hash = createHash("sha256");
      const schema = db.prepare("SELECT sql FROM sqlite_master WHERE name = ?").get(t) as { sql: string };
      hash.update(schema.sql);
      for (const row of db.prepare(`SELECT * FROM "${t.replaceAll('"', '""')}" ORDER BY 1, 2`).iterate()) {
        hash.update(JSON.stringify(row, (_k, v) => (typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v)));
      }
      out[t] = hash.digest("hex");
    }
    return out;
  } finally {
    db.close();
  }
}

function summarizeBackup(r: BackupResult) {
  return {
    kind: r.kind,
    id: r.id,
    objects: r.manifest.files.length + 1,
    storedBytes: r.storedBytes,
    uncompressedBytes: r.uncompressedBytes,
    durationMs: Math.round(r.durationMs),
    promoted: r.promoted ? `daily/${r.promoted.day}` : null,
  };
}

function summarizeRestore(r: RestoreResult, to: string) {
  return { at: r.at, restoresTo: r.restoresTo, to, chain: r.chain.length, rows: r.rows, durationMs: Math.round(r.durationMs) };
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoSummary> {
  const log = options.log ?? (() => {});
  const dataDir = resolve(options.dataDir ?? ".local");
  const persistDir = resolve(options.persistDir ?? ".mf-data");
  const tmpDir = join(dataDir, "tmp");
  const restoreDir = join(dataDir, "restored");
  await mkdir(restoreDir, { recursive: true });

  log(`starting the Worker in Miniflare (local R2 under ${persistDir})`);
  const worker = await startLocalWorker({ persistDir });
  try {
    const store = new HttpStore({ url: worker.url, token: DEV_TOKENS.SERVER_BYPASS_TOKEN });
    const checks: DemoCheck[] = [];
    const backups: DemoSummary["backups"] = [];
    const restores: DemoSummary["restores"] = [];
    const restored: string[] = [];
    const run = async (kind: "full" | "incremental", databases: DatabaseInput[], documents?: BackupOptions["documents"]) => {
      const r = await backup({ store, databases, kind, tmpDir, app: { name: "demo", version: "1" }, ...(documents ? { documents } : {}) });
      backups.push(summarizeBackup(r));
      log(
        `${kind} backup ${r.id}: ${r.manifest.files.map((f) => f.name).join(", ")} and metadata.json, ${r.storedBytes} bytes stored${r.promoted ? `, promoted to daily/${r.promoted.day}` : ""}`,
      );
      return r;
    };
    const restoreTo = async (name: string, at: Date | "latest") => {
      const to = join(restoreDir, name);
      const r = await restore({ store, to, at, force: true });
      restores.push(summarizeRestore(r, to));
      restored.push(to);
      log(`restored ${r.at} (reaches ${r.restoresTo}, ${r.chain.length} incremental(s)) to ${to}`);
      return to;
    };

    let database: string;
    if (options.db) {
      database = resolve(options.db);
      const full = await run("full", [{ path: database, source: basename(database).replace(/\.(db|sqlite3?)$/, "") || "app" }]);
      const to = await restoreTo(`${basename(database)}.restored`, "latest");
      const counts = (p: string) => {
        const db = new DatabaseSync(p, { readOnly: true });
        try {
          const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as { name: string }[];
          return Object.fromEntries(tables.map((t) => [t.name, Number((db.prepare(`SELECT COUNT(*) AS n FROM "${t.name.replaceAll('"', '""')}"`).get() as { n: number }).n)]));
        } finally {
          db.close();
        }
      };
      const expected = full.manifest.databases[0]?.tables ?? {};
      const actual = counts(to);
      const same = JSON.stringify(Object.entries(expected).sort()) === JSON.stringify(Object.entries(actual).sort());
      checks.push({
        name: "restored copy has the snapshot's row counts",
        ok: same,
        detail: same ? `${Object.keys(actual).length} table(s)` : `expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`,
      });
    } else {
      // The real LiveStore 0.4 app, backed up in-process (liveStoreDatabases: the leader's own consistent copies).
      const appDir = join(dataDir, "app");
      await rm(appDir, { recursive: true, force: true });
      database = appDir;
      const actions = options.events ?? 600;
      log(`starting the LiveStore todo app (examples/livestore/todo-app.ts) on ${appDir}`);
      const app = await openTodoStore(appDir);
      const tag = Date.now().toString(36);
      const step = async (n: number, name: string) => {
        doWork(app, n, `${tag}${name}`);
        await waitPersisted(app);
        return allTodos(app);
      };
      const takeLive = (kind: "full" | "incremental", documents?: BackupOptions["documents"]) => run(kind, liveStoreDatabases(app), documents);
      const atFull = await step(actions, "a");
      const state = liveStoreFiles(app).state;
      const full = await takeLive("full", {
        query: "SELECT id, '# ' || text || CASE completed WHEN 1 THEN ' (done)' ELSE '' END FROM todos ORDER BY id",
        querySource: sourceNameFor(state),
      });
      checks.push(await checkDocuments(store, full, atFull.length));
      const atInc1 = await step(Math.ceil(actions / 10), "b");
      const inc1 = await takeLive("incremental");
      const atInc2 = await step(Math.ceil(actions / 10), "c");
      await takeLive("incremental");
      await step(Math.ceil(actions / 20), "d"); // committed after the last backup: in no restore
      await closeTodoStore(app);

      const points = [
        { name: "latest", at: "latest" as const, expected: atInc2, what: "after the last incremental" },
        // --at a set's capture time (the Worker's clock) restores that set: nothing committed after it.
        { name: `at-${inc1.id}`, at: new Date(inc1.manifest.capturedAt!), expected: atInc1, what: `at incremental ${inc1.id}` },
        { name: `at-${full.id}`, at: new Date(full.manifest.capturedAt!), expected: atFull, what: `at full backup ${full.id}` },
      ];
      for (const p of points) {
        const dir = join(restoreDir, p.name);
        await rm(dir, { recursive: true, force: true });
        const r = await restore({ store, dataDir: dir, at: p.at });
        restores.push(summarizeRestore(r, dir));
        restored.push(dir);
        const stateNote = r.derived.map((d) => (d.keep ? "state DB kept: it matches the event log" : "state DB left out: LiveStore rebuilt it from the event log")).join("; ");
        log(`restored ${r.at} (reaches ${r.restoresTo}, ${r.chain.length} incremental(s)) to ${dir}: ${stateNote}`);
        const shown = await bootAndReadTodos(dir);
        const same = JSON.stringify(shown) === JSON.stringify(p.expected);
        checks.push({
          name: `LiveStore booted on restored/${p.name} shows the todos the app showed ${p.what}`,
          ok: same,
          detail: same
            ? `${shown.length} todos, ${shown.filter((t) => t.completed).length} completed (${stateNote})`
            : `expected ${p.expected.length} todos, LiveStore shows ${shown.length}`,
        });
      }
    }

    const catalog = catalogFromKeys((await store.listAll("backups/")).map((o) => o.key));
    const all = [...catalog.full, ...catalog.incremental, ...catalog.daily];
    return {
      workerUrl: worker.url,
      database,
      backups,
      restores,
      checks,
      bucket: {
        full: catalog.full.filter((s) => s.complete).length,
        incremental: catalog.incremental.filter((s) => s.complete).length,
        daily: catalog.daily.filter((s) => s.complete).length,
        drills: catalog.drills.length,
        incomplete: all.filter((s) => !s.complete).length,
      },
      // Full and incremental sets in time order, then the daily copies (their ids are days, not times).
      sets: [...[...catalog.full, ...catalog.incremental].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)), ...catalog.daily].map((x) => ({
        kind: x.kind,
        id: x.id,
        complete: x.complete,
      })),
      paths: { database, restored, r2: join(persistDir, "r2") },
      ok: checks.every((c) => c.ok),
    };
  } finally {
    await worker.stop();
  }
}

/** Downloads the full backup's documents.tar.zst and checks it holds one markdown file per todo the app showed. */
async function checkDocuments(store: HttpStore, full: BackupResult, expected: number): Promise<DemoCheck> {
  const name = "documents.tar.zst holds every todo as markdown";
  const got = await store.get(fileKey("full", full.id, DOCUMENTS_FILE));
  if (!got) return { name, ok: false, detail: "not in the bucket" };
  const extract = tar.extract();
  let files = 0;
  extract.on("entry", (header, stream, next) => {
    if (header.type === "file" && header.name.endsWith(".md")) files++;
    stream.on("end", next).resume();
  });
  // Frame by frame into Node's decoder, as a restore feeds it (job/zstd-frames.ts): it loses its place when a network
  // chunk ends inside a frame's last bytes and another frame follows.
  await pipeline(Readable.fromWeb(got.body as import("node:stream/web").ReadableStream<Uint8Array>), frameAligned(), createZstdDecompress(), extract);
  return { name, ok: files === expected && files > 0, detail: `${files} markdown file(s) for ${expected} todo(s), ${got.size} bytes stored` };
}
