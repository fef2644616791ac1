import { existsSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";

/**
 * A fast generator of LiveStore's layout (docs/design.md fact 7): the event log file (`eventlog` keyed by
 * (seqNumGlobal, seqNumClient), the sync status table) and, optionally, the state file an app derives from it
 * (`documents` with markdown bodies, `conversations` with their messages, LiveStore's system tables with one
 * session-changeset row per materialized event). The real app is test/livestore/app.ts. Used by `npm start`, the e2e test and
 * `npm run bench`, so all three back up the same shape. Deterministic for a given seed.
 */
export const EVENTLOG_SCHEMA = `
  PRAGMA journal_mode = WAL;
  CREATE TABLE IF NOT EXISTS eventlog (
    seqNumGlobal INTEGER NOT NULL, seqNumClient INTEGER NOT NULL, seqNumRebaseGeneration INTEGER NOT NULL DEFAULT 0,
    parentSeqNumGlobal INTEGER NOT NULL, parentSeqNumClient INTEGER NOT NULL, parentSeqNumRebaseGeneration INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL, argsJson TEXT NOT NULL, clientId TEXT NOT NULL, sessionId TEXT NOT NULL,
    schemaHash INTEGER NOT NULL, syncMetadataJson TEXT NOT NULL,
    PRIMARY KEY (seqNumGlobal, seqNumClient, seqNumRebaseGeneration)
  );
  CREATE INDEX IF NOT EXISTS idx_eventlog_seqNumGlobal ON eventlog (seqNumGlobal);
  CREATE TABLE IF NOT EXISTS __livestore_sync_status (head INTEGER PRIMARY KEY, backendId TEXT NULL);
`;

/** The state DB (`state<schemaHash>@6.db`): LiveStore's three system tables and the app's tables derived from the events. */
export const STATE_SCHEMA = `
  PRAGMA journal_mode = WAL;
  CREATE TABLE IF NOT EXISTS __livestore_schema (tableName TEXT PRIMARY KEY, schemaHash INTEGER NOT NULL, updatedAt TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS __livestore_schema_event_defs (eventName TEXT PRIMARY KEY, schemaHash INTEGER NOT NULL, updatedAt TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS __livestore_session_changeset (seqNumGlobal INTEGER, seqNumClient INTEGER, seqNumRebaseGeneration INTEGER, changeset BLOB, debug TEXT);
  CREATE INDEX IF NOT EXISTS idx_session_changeset_id ON __livestore_session_changeset (seqNumGlobal, seqNumClient);
  CREATE TABLE IF NOT EXISTS documents (id TEXT PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL, updatedAt TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, title TEXT NOT NULL, createdAt TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, conversationId TEXT NOT NULL REFERENCES conversations(id), role TEXT NOT NULL, content TEXT NOT NULL, createdAt TEXT NOT NULL);
`;

/** A small deterministic PRNG (mulberry32), so generated databases are reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = (
  "backup restore snapshot sqlite worker bucket chain event stream replica drill lock daily policy agent " +
  "cron render cloudflare alarm metric manifest watermark incremental document markdown conversation message " +
  "the a of to and in is that for on with as it be at by this from or an are was have not"
).split(" ");

function sentence(rand: () => number, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(WORDS[Math.floor(rand() * WORDS.length)]!);
  const s = out.join(" ");
  return `${s.charAt(0).toUpperCase() + s.slice(1)}.`;
}

/** A markdown body of roughly `bytes` bytes. */
export function markdownBody(rand: () => number, title: string, bytes: number): string {
  const parts = [`# ${title}`, ""];
  let size = title.length + 3;
  while (size < bytes) {
    const p = rand() < 0.2 ? `- ${sentence(rand, 6)}` : rand() < 0.1 ? `## ${sentence(rand, 3)}` : sentence(rand, 12 + Math.floor(rand() * 20));
    parts.push(p, "");
    size += p.length + 2;
  }
  return parts.join("\n");
}

export interface DemoWriteResult {
  /** The eventlog's head after the writes. */
  head: number;
  events: number;
  documents: number;
}

/**
 * Appends `events` events (and the documents/conversations they describe) in transactions of up to 1,000
 * rows, continuing the log's sequence numbers. Opens its own connection, so it is also the
 * "other process writing" of the tests when run in a child.
 */
export function appendDemoEvents(path: string, events: number, seed = 1, statePath?: string): DemoWriteResult {
  const db = new DatabaseSync(path);
  const state = statePath ? new DatabaseSync(statePath) : undefined;
  try {
    db.exec(EVENTLOG_SCHEMA);
    state?.exec(STATE_SCHEMA);
    const rand = prng(seed);
    const head = Number((db.prepare("SELECT COALESCE(MAX(seqNumGlobal), 0) AS h FROM eventlog").get() as { h: number }).h);
    const insertEvent = db.prepare(
      "INSERT INTO eventlog (seqNumGlobal, seqNumClient, seqNumRebaseGeneration, parentSeqNumGlobal, parentSeqNumClient, parentSeqNumRebaseGeneration, name, argsJson, clientId, sessionId, schemaHash, syncMetadataJson) VALUES (?, 0, 0, ?, 0, 0, ?, ?, ?, ?, 1234567, '{}')",
    );
    db.prepare("INSERT INTO __livestore_sync_status (head, backendId) SELECT 0, NULL WHERE NOT EXISTS (SELECT 1 FROM __livestore_sync_status)").run();
    const upsertDoc = state?.prepare(
      "INSERT INTO documents (id, title, body, updatedAt) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET title = excluded.title, body = excluded.body, updatedAt = excluded.updatedAt",
    );
    const insertConv = state?.prepare("INSERT OR IGNORE INTO conversations (id, title, createdAt) VALUES (?, ?, ?)");
    const insertMsg = state?.prepare("INSERT INTO messages (id, conversationId, role, content, createdAt) VALUES (?, ?, ?, ?, ?)");
    const changeset = state?.prepare(
      "INSERT INTO __livestore_session_changeset (seqNumGlobal, seqNumClient, seqNumRebaseGeneration, changeset, debug) VALUES (?, 0, 0, NULL, NULL)",
    );
    let documents = 0;
    for (let done = 0; done < events; ) {
      const batch = Math.min(1000, events - done);
      db.exec("BEGIN");
      state?.exec("BEGIN");
      for (let i = 0; i < batch; i++) {
        const seq = head + done + i + 1;
        const at = new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString();
        const kind = rand();
        if (kind < 0.3) {
          const id = `doc-${Math.floor(rand() * Math.max(10, seq / 20))}`;
          const title = sentence(rand, 4).slice(0, -1);
          const body = markdownBody(rand, title, 800 + Math.floor(rand() * 2400));
          upsertDoc?.run(id, title, body, at);
          insertEvent.run(seq, seq - 1, "documentSaved-v1", JSON.stringify({ id, title, body }), "client-a", "session-1");
          documents++;
        } else {
          const conversationId = `conv-${Math.floor(seq / 50)}`;
          const content = sentence(rand, 20 + Math.floor(rand() * 60));
          insertConv?.run(conversationId, sentence(rand, 3), at);
          insertMsg?.run(`msg-${seq}`, conversationId, rand() < 0.5 ? "user" : "assistant", content, at);
          insertEvent.run(seq, seq - 1, "messageAdded-v1", JSON.stringify({ id: `msg-${seq}`, conversationId, content }), "client-b", "session-2");
        }
        changeset?.run(seq);
      }
      done += batch;
      // The state commits first: LiveStore's leader materializes, then appends to the event log.
      state?.exec("COMMIT");
      db.exec("COMMIT");
    }
    return { head: head + events, events, documents };
  } finally {
    state?.close();
    db.close();
  }
}

/**
 * Creates (or grows) a demo database until its file reaches about `targetBytes`. Events average ~1.4 KiB
 * across the tables, so 1 GiB is about 700,000 events.
 */
export function createDemoDatabase(path: string, targetBytes: number, seed = 1): DemoWriteResult {
  let result: DemoWriteResult = { head: 0, events: 0, documents: 0 };
  let round = 0;
  for (;;) {
    const db = new DatabaseSync(path);
    db.exec(EVENTLOG_SCHEMA);
    const { page_count: pages } = db.prepare("PRAGMA page_count").get() as { page_count: number };
    const { page_size: pageSize } = db.prepare("PRAGMA page_size").get() as { page_size: number };
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    db.close();
    const size = pages * pageSize;
    if (size >= targetBytes) return result;
    const missing = targetBytes - size;
    const step = Math.max(200, Math.min(50_000, Math.ceil(missing / 1400)));
    const r = appendDemoEvents(path, step, seed + round++);
    result = { head: r.head, events: result.events + r.events, documents: result.documents + r.documents };
  }
}

/** Where generated benchmark databases are cached (git-ignored). */
export const BENCH_TMP = fileURLToPath(new URL("./tmp/", import.meta.url));

/**
 * A LiveStore-shaped database of about `sizeBytes`, generated once and cached under bench/tmp/ (written
 * under another name and renamed, so a killed generation never leaves a short database behind).
 * Callers that write to it must work on a copy.
 */
export async function cachedDemoDatabase(sizeBytes: number, dir = BENCH_TMP): Promise<string> {
  await mkdir(dir, { recursive: true });
  const mib = Math.round(sizeBytes / 1024 / 1024);
  const path = join(dir, `livestore-${mib}MiB.db`);
  if (existsSync(path)) return path;
  const part = `${path}.part-${process.pid}`;
  createDemoDatabase(part, sizeBytes);
  for (const s of ["-wal", "-shm"]) await rm(part + s, { force: true });
  if (!existsSync(path)) await rename(part, path);
  else await rm(part, { force: true });
  return path;
}
