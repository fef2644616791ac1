import { createHash } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createZstdDecompress } from "node:zlib";
import tar from "tar-stream";
import { appendDemoEvents, createDemoDatabase } from "../bench/livestore-db.ts";
import { DOCUMENTS_FILE, catalogFromKeys, fileKey, parseTimestamp } from "../core/index.ts";
import { backup, type BackupResult } from "../job/backup.ts";
import { restore, type RestoreResult } from "../job/restore/index.ts";
import { HttpStore } from "../job/store/http-store.ts";
import { DEV_TOKENS, startLocalWorker } from "../worker/local.ts";

/**
 * The local end-to-end demo behind `npm start`: the bundled Worker in Miniflare with a local R2 kept
 * under `.mf-data/`, a LiveStore-shaped database, a full backup, writes, two incrementals, a restore of
 * the latest point and of the point in between, each checked against the source as it was then.
 */
export interface DemoOptions {
  /** Working folder for the demo database and the restored copies (default `.local/`). */
  dataDir?: string;
  /** Folder of the local R2 (default `.mf-data/`); reused by the next run. */
  persistDir?: string;
  /** Back up this database instead of the generated demo (full backup, restore, check). */
  db?: string;
  /** Events in the generated database (default 5,000, about 7 MiB). */
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

function compare(name: string, expected: Record<string, string>, actual: Record<string, string>): DemoCheck {
  const diff = Object.keys({ ...expected, ...actual }).filter((t) => expected[t] !== actual[t]);
  return diff.length === 0
    ? { name, ok: true, detail: `${Object.keys(expected).length} table(s) identical (${Object.keys(expected).join(", ")})` }
    : { name, ok: false, detail: `differs in ${diff.join(", ")}` };
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
    const run = async (kind: "full" | "incremental", db: string, documents?: { query: string }) => {
      const source = basename(db).replace(/\.(db|sqlite3?)$/, "") || "app";
      const r = await backup({ store, databases: [{ path: db, source }], kind, tmpDir, app: { name: "demo", version: "1" }, ...(documents ? { documents } : {}) });
      backups.push(summarizeBackup(r));
      log(`${kind} backup ${r.id}: ${r.manifest.files.map((f) => f.name).join(", ")} and metadata.json, ${r.storedBytes} bytes stored${r.promoted ? `, promoted to daily/${r.promoted.day}` : ""}`);
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
      const full = await run("full", database);
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
      checks.push({ name: "restored copy has the snapshot's row counts", ok: same, detail: same ? `${Object.keys(actual).length} table(s)` : `expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}` });
    } else {
      const demoDir = join(dataDir, "demo");
      await mkdir(demoDir, { recursive: true });
      database = join(demoDir, "app.db");
      for (const suffix of ["", "-wal", "-shm"]) await rm(`${database}${suffix}`, { force: true });
      const events = options.events ?? 5000;
      log(`creating a LiveStore-shaped demo database with ${events} events at ${database}`);
      createDemoDatabase(database, 0);
      appendDemoEvents(database, events, Date.now() % 100_000);
      const atFull = tableDigests(database);
      const full = await run("full", database, { query: "SELECT id, body FROM documents ORDER BY id" });
      checks.push(await checkDocuments(store, full, database));
      appendDemoEvents(database, Math.ceil(events / 10), 7);
      const atInc1 = tableDigests(database, ["eventlog"]);
      const inc1 = await run("incremental", database);
      appendDemoEvents(database, Math.ceil(events / 10), 8);
      const atInc2 = tableDigests(database, ["eventlog"]);
      await run("incremental", database);

      const latest = await restoreTo("latest.db", "latest");
      const between = await restoreTo(`at-${inc1.id}.db`, parseTimestamp(inc1.id));
      const derived = Object.keys(atFull).filter((t) => t !== "eventlog");
      checks.push(compare("latest restore: eventlog equals the source after the last incremental", atInc2, tableDigests(latest, ["eventlog"])));
      checks.push(compare(`point-in-time restore at ${inc1.id}: eventlog equals the source at that incremental`, atInc1, tableDigests(between, ["eventlog"])));
      const fullOnly = Object.fromEntries(derived.map((t) => [t, atFull[t]!]));
      checks.push(compare("restored state tables equal the full backup's (incrementals carry the eventlog)", fullOnly, tableDigests(latest, derived)));
      for (const p of [latest, between]) {
        const db = new DatabaseSync(p, { readOnly: true });
        const ic = (db.prepare("PRAGMA integrity_check").get() as { integrity_check: string }).integrity_check;
        db.close();
        checks.push({ name: `integrity_check of ${basename(p)}`, ok: ic === "ok", detail: ic });
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
      sets: [...[...catalog.full, ...catalog.incremental].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)), ...catalog.daily].map((x) => ({ kind: x.kind, id: x.id, complete: x.complete })),
      paths: { database, restored, r2: join(persistDir, "r2") },
      ok: checks.every((c) => c.ok),
    };
  } finally {
    await worker.stop();
  }
}

/** Downloads the full backup's documents.tar.zst and checks it holds one markdown file per document row. */
async function checkDocuments(store: HttpStore, full: BackupResult, database: string): Promise<DemoCheck> {
  const name = "documents.tar.zst holds every document as markdown";
  const got = await store.get(fileKey("full", full.id, DOCUMENTS_FILE));
  if (!got) return { name, ok: false, detail: "not in the bucket" };
  const extract = tar.extract();
  let files = 0;
  extract.on("entry", (header, stream, next) => {
    if (header.type === "file" && header.name.endsWith(".md")) files++;
    stream.on("end", next).resume();
  });
  await pipeline(Readable.fromWeb(got.body as import("node:stream/web").ReadableStream<Uint8Array>), createZstdDecompress(), extract);
  const db = new DatabaseSync(database, { readOnly: true });
  const rows = Number((db.prepare("SELECT COUNT(*) AS n FROM documents").get() as { n: number }).n);
  db.close();
  return { name, ok: files === rows, detail: `${files} markdown file(s) for ${rows} document row(s), ${got.size} bytes stored` };
}
