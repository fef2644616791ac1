import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { zstdDecompressSync } from "node:zlib";
import { buildManifest, catalogFromKeys, decodeChangeLine, manifestKey, parseManifest, serializeManifest, type ChangeLine, type Manifest } from "../../core/index.ts";
import type { HttpStore } from "../../job/store/http-store.ts";
import { zstdFrames } from "./zstd-walk.ts";

/**
 * Fixtures for the backup job's tests: the real bundled Worker in Miniflare (local R2), LiveStore-shaped
 * SQLite files, a fault-injecting HTTP proxy, and checks that every complete-looking set is whole.
 */

export const JOB_ROOT = new URL("../../", import.meta.url).pathname;
export const BIN = join(JOB_ROOT, "job/bin.js");

export const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** The Worker-backed bucket of the job tests (one definition, shared with the restore tests). */
export { startTestBucket as startBucket, type TestBucket as Bucket } from "./bucket.ts";

export async function tempDir(prefix = "r2backup-test-"): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** LiveStore's eventlog (fact 7) plus a documents table with markdown bodies, WAL mode. */
export const LIVESTORE_SCHEMA = `
  PRAGMA journal_mode = WAL;
  CREATE TABLE IF NOT EXISTS eventlog (
    seqNumGlobal INTEGER NOT NULL, seqNumClient INTEGER NOT NULL, seqNumRebaseGeneration INTEGER NOT NULL DEFAULT 0,
    parentSeqNumGlobal INTEGER, parentSeqNumClient INTEGER, parentSeqNumRebaseGeneration INTEGER,
    name TEXT NOT NULL, argsJson TEXT NOT NULL, clientId TEXT NOT NULL, sessionId TEXT NOT NULL, schemaHash INTEGER, syncMetadataJson TEXT,
    PRIMARY KEY (seqNumGlobal, seqNumClient, seqNumRebaseGeneration));
  CREATE INDEX IF NOT EXISTS idx_eventlog_seqNumGlobal ON eventlog (seqNumGlobal);
  CREATE TABLE IF NOT EXISTS documents (id TEXT PRIMARY KEY, title TEXT, body TEXT, updatedAt INTEGER);
`;

/** Creates (or extends) a LiveStore-shaped database: events `from..from+count-1`, `docs` documents. */
export function writeLiveStoreDb(path: string, options: { from?: number; events: number; docs?: number; argsBytes?: number }): void {
  const db = new DatabaseSync(path);
  try {
    db.exec(LIVESTORE_SCHEMA);
    const from = options.from ?? 1;
    const ins = db.prepare(
      "INSERT INTO eventlog (seqNumGlobal, seqNumClient, parentSeqNumGlobal, parentSeqNumClient, name, argsJson, clientId, sessionId, schemaHash) VALUES (?, 0, ?, 0, ?, ?, 'client-a', 'session-1', 42)",
    );
    const pad = "x".repeat(options.argsBytes ?? 40);
    db.exec("BEGIN");
    for (let i = from; i < from + options.events; i++)
      ins.run(i, i - 1, i % 3 === 0 ? "todoCompleted-v1" : "todoCreated-v1", JSON.stringify({ id: `t${i}`, text: `todo ${i} ${pad}` }));
    const doc = db.prepare("INSERT OR REPLACE INTO documents (id, title, body, updatedAt) VALUES (?, ?, ?, ?)");
    for (let i = 1; i <= (options.docs ?? 0); i++) doc.run(`doc-${i}`, `Doc ${i}`, `# Doc ${i}\n\nSome *markdown* for ${i}.\n`, i);
    db.exec("COMMIT");
  } finally {
    db.close();
  }
}

/** The one object a `oneByteSetManifest` lists: this one byte, under `oneByteSetFile(kind)` of the set. */
export const ONE_BYTE = "x";
const ONE_BYTE_SHA256 = createHash("sha256").update(ONE_BYTE).digest("hex");
export const oneByteSetFile = (kind: "full" | "incremental") => (kind === "full" ? "app.db.zst" : "changes.ndjson.zst");

/**
 * A manifest of a set of database `app` whose one object is ONE_BYTE: what the chain reads (its links and lineage)
 * with nothing to restore, for tests and the chain bench that need many sets fast.
 */
export function oneByteSetManifest(e: { kind: "full" | "incremental"; id: string; base: string; previous: string | null; capturedAt: string }): string {
  const manifest: Omit<Manifest, "format"> = {
    kind: e.kind,
    id: e.id,
    base: e.base,
    previous: e.previous,
    createdAt: e.capturedAt,
    completedAt: e.capturedAt,
    capturedAt: e.capturedAt,
    app: { name: "t", version: "0" },
    tool: { name: "r2backup", version: "0" },
    sqliteVersion: "3",
    files: [
      {
        name: oneByteSetFile(e.kind),
        role: e.kind === "full" ? "database" : "changes",
        ...(e.kind === "full" ? { source: "app" } : {}),
        contentType: "x",
        compression: "zstd",
        size: 1,
        sha256: ONE_BYTE_SHA256,
        uncompressedSize: 1,
        uncompressedSha256: ONE_BYTE_SHA256,
      },
    ],
    databases: e.kind === "full" ? [{ source: "app", pageSize: 4096, pageCount: 1, integrity: "ok", tables: {} }] : [],
    sources: [{ source: "app" }],
    from: [],
    to: [],
    timings: {},
  };
  return serializeManifest(buildManifest(manifest));
}

/** The rows of a database's `eventlog`, read without a lock held past the query. */
export function eventCount(path: string): number {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare("SELECT count(*) AS n FROM eventlog").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Adds incompressible bytes so the compressed snapshot spans several multipart parts. */
export function addRandomBlob(path: string, bytes: number): void {
  const db = new DatabaseSync(path);
  try {
    db.exec("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB)");
    const ins = db.prepare("INSERT INTO blobs (data) VALUES (?)");
    db.exec("BEGIN");
    for (let left = bytes; left > 0; left -= 1 << 20) ins.run(randomBytes(Math.min(left, 1 << 20)));
    db.exec("COMMIT");
  } finally {
    db.close();
  }
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out.subarray(0, Math.min(n, 65536)));
  for (let i = 65536; i < n; i += 65536) globalThis.crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

export async function download(store: HttpStore, key: string): Promise<Buffer> {
  const got = await store.get(key);
  if (!got) throw new Error(`no object ${key}`);
  return Buffer.from(await new Response(got.body).arrayBuffer());
}

/** Checks a complete set: every file of its manifest is stored with the recorded size and sha256. */
export async function verifySet(store: HttpStore, kind: "full" | "incremental" | "daily", id: string): Promise<{ manifest: Manifest; bytes: Map<string, Buffer> }> {
  const text = (await download(store, manifestKey(kind, id))).toString("utf8");
  const manifest = parseManifest(text);
  const bytes = new Map<string, Buffer>();
  const prefix = kind === "daily" ? `backups/daily/${id}/` : `backups/${kind}/${id}/`;
  for (const f of manifest.files) {
    const b = await download(store, prefix + f.name);
    if (b.length !== f.size || sha256(b) !== f.sha256) throw new Error(`${prefix}${f.name}: stored bytes do not match the manifest`);
    // zstd checks each frame's content checksum as it decodes; the manifest says every frame has one.
    if (f.contentChecksum && !zstdFrames(b).every((frame) => frame.checksum)) throw new Error(`${prefix}${f.name}: a frame carries no content checksum`);
    const raw = zstdDecompressSync(b);
    if (raw.length !== f.uncompressedSize) throw new Error(`${prefix}${f.name}: uncompressed bytes do not match the manifest`);
    if (f.uncompressedSha256 !== undefined && sha256(raw) !== f.uncompressedSha256) throw new Error(`${prefix}${f.name}: uncompressed sha256 does not match the manifest`);
    bytes.set(f.name, raw);
  }
  return { manifest, bytes };
}

/** Every set that has a manifest, verified whole; returns them grouped. */
export async function verifyAllComplete(store: HttpStore): Promise<{ full: string[]; incremental: string[]; daily: string[]; incomplete: string[] }> {
  const catalog = catalogFromKeys((await store.listAll("backups/")).map((o) => o.key));
  const out = { full: [] as string[], incremental: [] as string[], daily: [] as string[], incomplete: [] as string[] };
  for (const kind of ["full", "incremental", "daily"] as const) {
    for (const s of catalog[kind]) {
      if (!s.complete) {
        out.incomplete.push(`${kind}/${s.id}`);
        continue;
      }
      await verifySet(store, kind, s.id);
      out[kind].push(s.id);
    }
  }
  return out;
}

/** Decodes `changes.ndjson` text. */
export function decodeChanges(raw: Buffer): ChangeLine[] {
  return raw
    .toString("utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l, i) => decodeChangeLine(l, `line ${i + 1}`));
}

/** Writes a snapshot's bytes to a file and opens it. */
export function openBytes(dir: string, name: string, bytes: Buffer): DatabaseSync {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return new DatabaseSync(path, { readOnly: true });
}

export type ProxyAction = "pass" | "500" | "drop" | "drop-after-upstream" | "truncate";

export interface ProxyRecord {
  method: string;
  url: string;
  action: ProxyAction;
  status?: number;
}

export interface FaultProxy {
  url: string;
  requests: ProxyRecord[];
  /** Most requests forwarded at the same time. */
  maxConcurrent(path?: RegExp): number;
  close(): Promise<void>;
}

/**
 * An HTTP proxy between the job and the Worker that can fail chosen requests: answer 500, drop the
 * connection before forwarding, or forward and then drop the connection (the Worker did the work, the
 * client never hears), or forward and cut the answer mid-body (`truncate`).
 */
export async function startFaultProxy(upstream: string, decide: (req: IncomingMessage, n: number) => ProxyAction = () => "pass"): Promise<FaultProxy> {
  const target = new URL(upstream);
  const requests: ProxyRecord[] = [];
  const concurrency = new Map<string, number>();
  const active = new Map<string, number>();
  let n = 0;
  const server: Server = createServer((req, res) => {
    const action = decide(req, n++);
    const record: ProxyRecord = { method: req.method ?? "", url: req.url ?? "", action };
    requests.push(record);
    if (action === "500") {
      req.resume();
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "internal", message: "injected fault" }));
      return;
    }
    if (action === "drop") {
      req.socket.destroy();
      return;
    }
    const group = `${req.method} ${(req.url ?? "").split("?")[0]}`;
    active.set(group, (active.get(group) ?? 0) + 1);
    concurrency.set(group, Math.max(concurrency.get(group) ?? 0, active.get(group)!));
    const done = () => active.set(group, active.get(group)! - 1);
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      record.status = upRes.statusCode;
      if (action === "truncate") {
        // The Worker did the work; its answer arrives with its headers and half its body, then the
        // connection drops (a proxy's timeout, a network blip).
        const chunks: Buffer[] = [];
        upRes.on("data", (c: Buffer) => chunks.push(c));
        upRes.on("end", () => {
          done();
          const body = Buffer.concat(chunks);
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          res.write(body.subarray(0, Math.floor(body.byteLength / 2)), () => setTimeout(() => req.socket.destroy(), 10));
        });
        return;
      }
      if (action === "drop-after-upstream") {
        upRes.resume();
        upRes.on("end", () => {
          done();
          req.socket.destroy();
        });
        return;
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
      upRes.on("end", done);
    });
    up.on("error", () => {
      done();
      req.socket.destroy();
    });
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    maxConcurrent(path) {
      let max = 0;
      for (const [k, v] of concurrency) if (!path || path.test(k)) max = Math.max(max, v);
      return max;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface CliRun {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Runs `r2backup` as a child process (Node 24 from vitest: process.execPath), `nodeArgs` before the script. */
export function runCli(args: string[], env: Record<string, string>, options: { nodeArgs?: string[] } = {}): CliRun {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), BIN, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

/** A writer that collects text (for `main(argv, io)`). */
export function collector(): { write(text: string): boolean; text(): string; isTTY: false } {
  let out = "";
  return {
    write(text: string) {
      out += text;
      return true;
    },
    text: () => out,
    isTTY: false,
  };
}

/**
 * `store` with its part uploads held: each `uploadPart` waits until `open()` is called (everything else passes).
 * `partsAsked()` counts the parts the job started.
 */
export function holdParts(store: HttpStore): { store: HttpStore; open: () => void; partsAsked: () => number } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let asked = 0;
  const held = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === "uploadPart")
        return async (...args: Parameters<HttpStore["uploadPart"]>) => {
          asked++;
          await gate;
          return target.uploadPart(...args);
        };
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { store: held, open, partsAsked: () => asked };
}
