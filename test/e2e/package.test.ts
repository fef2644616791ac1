import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpStore } from "../../job/store/http-store.ts";
import { startLocalWorker, type LocalWorker } from "../../worker/local.ts";

/**
 * The package as an app gets it (issue 18): `npm pack` (which builds dist/ on `prepack`), `npm install` of
 * the tarball into a fresh app with only the registry's packages, then the installed `r2backup` bin, the
 * library and its types, against the real Worker in Miniflare. Nothing here imports the repository's job/
 * code on the app's behalf: the app runs what node_modules holds.
 */
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { name: string; version: string; engines: { node: string }; bin: Record<string, string> };
const require = createRequire(import.meta.url);
const TSC = require.resolve("typescript/bin/tsc");
const TYPES_NODE = (JSON.parse(readFileSync(require.resolve("@types/node/package.json"), "utf8")) as { version: string }).version;

/** The oldest Node that `engines` allows ("^22.16.0 || >=24" -> 22.16.0): the bin must run there too. */
const OLDEST_NODE = (() => {
  const lows = PKG.engines.node.split("||").map((range) => {
    const m = /^(?:\^|>=)\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim());
    if (!m) throw new Error(`engines.node '${PKG.engines.node}': expected ranges like '^22.16.0' or '>=24' joined by '||'`);
    return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)] as const;
  });
  const [major, minor, patch] = lows.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2])[0]!;
  return `${major}.${minor}.${patch}`;
})();

interface Run {
  code: number | null;
  out: string;
  err: string;
}

/** Runs a command to completion (npm and npx are the machine's; `node` resolves through `path` first). */
function run(cmd: string, args: string[], options: { cwd: string; path?: string; env?: Record<string, string>; timeoutMs?: number }): Promise<Run> {
  const PATH = [options.path ?? dirname(process.execPath), process.env.PATH ?? ""].join(delimiter);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: { ...process.env, PATH, NO_UPDATE_NOTIFIER: "1", ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 240_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, out, err });
    });
  });
}

/** npm, quietly, preferring the local cache (`npm ci` of this repository filled it with the same packages). */
const NPM_FLAGS = ["--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"];

/** A small SQLite database of the kind an app keeps: WAL mode, a table of rows. */
function createAppDatabase(path: string, rows: number): void {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode = WAL; CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL)");
  const insert = db.prepare("INSERT INTO todos (title, done) VALUES (?, ?)");
  for (let i = 0; i < rows; i++) insert.run(`todo ${i}`, i % 2);
  db.close();
}

function todos(path: string): unknown[] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return db.prepare("SELECT id, title, done FROM todos ORDER BY id").all();
  } finally {
    db.close();
  }
}

describe("the packed package, installed into a fresh app", () => {
  let dir: string;
  let app: string;
  let packed: { filename: string; files: { path: string }[]; entryCount: number; size: number; unpackedSize: number };
  let worker: LocalWorker;
  let env: Record<string, string>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "r2b-package-"));
    const pack = await run("npm", ["pack", "--json", "--pack-destination", dir, "--loglevel=error"], { cwd: ROOT });
    expect(pack.code, pack.err).toBe(0);
    // `--json` output follows whatever `prepack` (the build) printed.
    packed = (JSON.parse(pack.out.slice(pack.out.indexOf("[\n"))) as (typeof packed)[])[0]!;
    app = join(dir, "app");
    await mkdir(app);
    await writeFile(join(app, "package.json"), `${JSON.stringify({ name: "consumer-app", version: "1.0.0", private: true, type: "module" }, null, 2)}\n`);
    const install = await run("npm", ["install", join(dir, packed.filename), `@types/node@${TYPES_NODE}`, ...NPM_FLAGS], { cwd: app });
    expect(install.code, install.err).toBe(0);
    worker = await startLocalWorker();
    env = { R2_WORKER_URL: worker.url, SERVER_BYPASS_TOKEN: worker.bindings.SERVER_BYPASS_TOKEN!, BACKUP_TMP_DIR: dir };
  }, 300_000);

  afterAll(async () => {
    await worker?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the tarball holds only the compiled package: dist/job, dist/core, their types, and the docs", async () => {
    const files = packed.files.map((f) => f.path).sort();
    for (const f of files) expect(f).toMatch(/^(dist\/(job|core)\/.+\.(js|d\.ts)|dist\/package\.json|package\.json|README\.md|CHANGELOG\.md|LICENSE)$/);
    expect(files).toEqual(
      expect.arrayContaining([
        "package.json",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "dist/package.json",
        "dist/job/index.js",
        "dist/job/index.d.ts",
        "dist/job/bin.js",
        "dist/job/restore/hash-worker.js",
      ]),
    );
    // Every module of job/ and core/ is compiled, with its types: nothing the bin or the library loads is missing.
    const sources = (await readdir(join(ROOT, "job"), { recursive: true }))
      .map((f) => `job/${f}`)
      .concat((await readdir(join(ROOT, "core"), { recursive: true })).map((f) => `core/${f}`));
    const modules = sources.filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith(".d.ts"));
    expect(modules.length).toBeGreaterThan(30);
    for (const m of modules) expect(files).toEqual(expect.arrayContaining([`dist/${m.replace(/\.ts$/, ".js")}`, `dist/${m.replace(/\.(ts|js)$/, ".d.ts")}`]));
    // `npm pack --dry-run` (what `npm publish` would send) lists exactly the same files.
    const dry = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts", "--loglevel=error"], { cwd: ROOT });
    expect(dry.code, dry.err).toBe(0);
    expect((JSON.parse(dry.out) as (typeof packed)[])[0]!.files.map((f) => f.path).sort()).toEqual(files);
    expect(packed.entryCount).toBe(files.length);
  });

  it("installs only the runtime dependencies: no Pulumi, esbuild, test, benchmark or LiveStore package", async () => {
    const installed = await readdir(join(app, "node_modules"));
    for (const dev of ["@pulumi", "esbuild", "miniflare", "vitest", "typescript", "@livestore", "fast-check", "undici", "yaml", "node"]) expect(installed).not.toContain(dev);
    expect(installed).toEqual(expect.arrayContaining(["r2-sqlite-backup", "tar-stream", "@aws-sdk"]));
    // core/ checks manifests with its own functions: zod cost the CLI 16 MiB at start-up (issue 16).
    expect(installed).not.toContain("zod");
    const own = JSON.parse(await readFile(join(app, "node_modules", PKG.name, "package.json"), "utf8")) as { version: string };
    expect(own.version).toBe(PKG.version);
  });

  it("`npx r2backup --help` runs the installed bin (compiled JavaScript, shebang flags kept)", async () => {
    const link = await readlink(join(app, "node_modules", ".bin", "r2backup"));
    expect(resolve(join(app, "node_modules", ".bin"), link)).toBe(join(app, "node_modules", PKG.name, "dist", "job", "bin.js"));
    const bin = await readFile(join(app, "node_modules", PKG.name, "dist", "job", "bin.js"), "utf8");
    expect(bin.split("\n")[0]).toBe("#!/usr/bin/env -S node --max-semi-space-size=1");
    expect(bin).toContain('import("./cli-process.js")');
    const help = await run("npx", ["r2backup", "--help"], { cwd: app });
    expect(help.err).not.toMatch(/ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING|Error/);
    expect(help.code).toBe(0);
    expect(help.out).toContain("Usage: r2backup <command> [options]");
    expect(help.out).toContain("10  the restore target exists (use --force)");
  });

  it("backs up and restores a real SQLite database through the local Worker with the installed CLI", async () => {
    const db = join(app, "data", "app.db");
    await mkdir(dirname(db));
    createAppDatabase(db, 500);
    const backup = await run("npx", ["r2backup", "run", "--db", db, "--kind", "full"], { cwd: app, env });
    expect(backup.code, backup.err).toBe(0);
    const list = await run("npx", ["r2backup", "list", "--json"], { cwd: app, env });
    expect(list.code, list.err).toBe(0);
    const { sets } = JSON.parse(list.out) as { sets: { kind: string; id: string; complete: boolean }[] };
    const full = sets.find((s) => s.kind === "full" && s.complete);
    expect(full).toBeDefined();
    // The manifest records the installed package's version (read from dist/package.json beside dist/job).
    const store = new HttpStore({ url: worker.url, token: env.SERVER_BYPASS_TOKEN! });
    const manifest = JSON.parse(await new Response((await store.get(`backups/full/${full!.id}/metadata.json`))!.body).text()) as { format: string; tool: { version: string } };
    expect(manifest).toMatchObject({ format: "r2-sqlite-backup/manifest@1", tool: { version: PKG.version } });

    const to = join(app, "restored.db");
    const restore = await run("npx", ["r2backup", "restore", "--to", to], { cwd: app, env });
    expect(restore.code, restore.err).toBe(0);
    expect(restore.out).toContain(`restores to ${full!.id}`);
    expect(todos(to)).toEqual(todos(db));
    expect(todos(to)).toHaveLength(500);
    // A second restore onto the same path is refused (exit 10), as the help says.
    const again = await run("npx", ["r2backup", "restore", "--to", to], { cwd: app, env });
    expect(again.code).toBe(10);
  });

  it("imports the library by its package name and backs up in the app's own process; deep imports are closed", async () => {
    const db = join(app, "inproc.db");
    createAppDatabase(db, 50);
    await writeFile(
      join(app, "backup-now.mjs"),
      `import { DatabaseSync } from "node:sqlite";
import { backup, restore, HttpStore, JobError, EXIT, MANIFEST_FORMAT } from "${PKG.name}";

const db = new DatabaseSync(process.argv[2]);
const store = new HttpStore({ url: process.env.R2_WORKER_URL, token: process.env.SERVER_BYPASS_TOKEN });
const result = await backup({ store, databases: [{ source: "inproc", db }], kind: "full", app: { name: "consumer-app", version: "1.0.0" } });
db.close();
const restored = await restore({ store, to: process.argv[3], at: "latest", source: "inproc" });
let deep;
try { await import("${PKG.name}/dist/job/backup.js"); deep = "imported"; } catch (e) { deep = e.code; }
console.log(JSON.stringify({ ok: result.ok, kind: result.kind, format: result.manifest.format, MANIFEST_FORMAT, tables: result.manifest.databases[0].tables,
  restoredTo: restored.restoresTo, id: result.id, integrity: restored.integrity, jobError: typeof JobError, exitTargetExists: EXIT.targetExists,
  resolved: import.meta.resolve("${PKG.name}"), deep }));
`,
    );
    const to = join(app, "inproc-restored.db");
    const r = await run("node", ["backup-now.mjs", db, to], { cwd: app, env });
    expect(r.code, r.err).toBe(0);
    const out = JSON.parse(r.out) as Record<string, unknown>;
    expect(out).toMatchObject({
      ok: true,
      kind: "full",
      format: "r2-sqlite-backup/manifest@1",
      MANIFEST_FORMAT: "r2-sqlite-backup/manifest@1",
      tables: { todos: 50 },
      integrity: "ok",
      jobError: "function",
      exitTargetExists: 10,
      deep: "ERR_PACKAGE_PATH_NOT_EXPORTED",
    });
    expect(out.restoredTo).toBe(out.id);
    expect(fileURLToPath(out.resolved as string)).toBe(join(app, "node_modules", PKG.name, "dist", "job", "index.js"));
    expect(todos(to)).toEqual(todos(db));
  });

  it("backs up on a worker thread of the app (the README's pattern that keeps the app's event loop free); its failure reaches the app", async () => {
    const db = join(app, "threaded.db");
    createAppDatabase(db, 40);
    // backup-thread.mjs and the host's backupOnThread are the README's ("backup() on a thread of the app").
    await writeFile(
      join(app, "backup-thread.mjs"),
      `import { parentPort, workerData } from "node:worker_threads";
import { backup, HttpStore } from "${PKG.name}";

const store = new HttpStore({ url: process.env.R2_WORKER_URL, token: process.env.SERVER_BYPASS_TOKEN });
const result = await backup({ store, databases: [{ path: workerData.path, source: "app" }], kind: workerData.kind });
parentPort.postMessage({ id: result.id, kind: result.kind, tables: result.manifest.databases[0].tables });
`,
    );
    await writeFile(
      join(app, "thread-host.mjs"),
      `import { Worker } from "node:worker_threads";

const backupOnThread = (path, kind = "auto") =>
  new Promise((resolve, reject) => {
    const thread = new Worker(new URL("./backup-thread.mjs", import.meta.url), { workerData: { path, kind } });
    thread.once("message", resolve);
    thread.once("error", reject);
  });

const done = await backupOnThread(process.argv[2], "full");
const failed = await backupOnThread(process.argv[3]).then(() => "no error", (e) => ({ name: e.name, message: e.message, exitCode: e.exitCode }));
console.log(JSON.stringify({ done, failed }));
`,
    );
    const missing = join(app, "no-such.db");
    const r = await run("node", ["thread-host.mjs", db, missing], { cwd: app, env });
    expect(r.code, r.err).toBe(0);
    const out = JSON.parse(r.out) as { done: { id: string; kind: string; tables: Record<string, number> }; failed: { name: string; message: string; exitCode: number } };
    expect(out.done).toMatchObject({ kind: "full", tables: { todos: 40 } });
    // The thread's JobError arrives as an error with its message and exit code, not as a silent exit.
    expect(out.failed.message).toContain(missing);
    expect(out.failed.exitCode).toBeGreaterThan(0);
    const to = join(app, "threaded-restored.db");
    const restored = await run("npx", ["r2backup", "restore", "--to", to, "--at", out.done.id, "--source", "app", "--json"], { cwd: app, env });
    expect(restored.code, restored.err).toBe(0);
    expect(todos(to)).toEqual(todos(db));
  });

  it("type-checks a consumer against the shipped .d.ts with tsc, and the types reject a wrong call", async () => {
    await writeFile(
      join(app, "consumer.ts"),
      `import { createServer } from "node:http";
import { DatabaseSync } from "node:sqlite";
import { backup, createAgentHandler, HttpStore, JobError, restore, verify, type BackupOptions, type BackupResult, type BackupStore, type Manifest, type RestoreResult, type VerifyResult } from "${PKG.name}";

const store: BackupStore = new HttpStore({ url: "http://127.0.0.1:8787", token: "t", attempts: 3 });
const db = new DatabaseSync(":memory:");
const options: BackupOptions = { store, databases: [{ db, source: "app" }, { path: "/data/other.db" }], kind: "auto", onEvent: (e) => void e };
export async function nightly(): Promise<number> {
  const r: BackupResult = await backup(options);
  const m: Manifest = r.manifest;
  const restored: RestoreResult = await restore({ store, to: "/tmp/app.db", at: new Date(m.createdAt), force: true });
  const drill: VerifyResult = await verify({ store });
  return restored.bytes + (drill.record.ok ? 0 : 1);
}
const handler = createAgentHandler({ token: "agent-token", run: (kind, onEvent) => backup({ ...options, kind, onEvent }) });
createServer(handler);
export const isJobError = (e: unknown): e is JobError => e instanceof JobError;
`,
    );
    await writeFile(
      join(app, "wrong.ts"),
      `import { backup, HttpStore } from "${PKG.name}";
await backup({ store: new HttpStore({ url: "http://x", token: "t" }), databases: [{ path: 42 }], kind: "weekly" });
`,
    );
    const tsc = (file: string) =>
      run("node", [TSC, "--noEmit", "--strict", "--target", "es2023", "--module", "nodenext", "--moduleResolution", "nodenext", "--types", "node", file], { cwd: app });
    const [ok, wrong] = await Promise.all([tsc("consumer.ts"), tsc("wrong.ts")]);
    expect(ok.out + ok.err).toBe("");
    expect(ok.code).toBe(0);
    expect(wrong.code).not.toBe(0);
    expect(wrong.out).toMatch(/wrong\.ts\(2,.*error TS2322: Type 'number' is not assignable to type 'string'/);
    expect(wrong.out).toMatch(/wrong\.ts\(2,.*error TS2322: Type '"weekly"' is not assignable to type 'BackupKind/);
  });

  it(`runs on the oldest Node that engines allows (${PKG.engines.node}: Node ${OLDEST_NODE}, from the registry's \`node\` package)`, async () => {
    const prefix = join(dir, "oldest-node");
    const install = await run("npm", ["install", "--prefix", prefix, `node@${OLDEST_NODE}`, ...NPM_FLAGS], { cwd: dir });
    expect(install.code, install.err).toBe(0);
    const path = join(prefix, "node_modules", ".bin");
    const version = await run("node", ["--version"], { cwd: app, path });
    expect(version.out.trim()).toBe(`v${OLDEST_NODE}`);
    const db = join(app, "oldest.db");
    createAppDatabase(db, 200);
    const backup = await run("npx", ["r2backup", "run", "--db", db, "--kind", "full"], { cwd: app, env, path });
    expect(backup.code, backup.err).toBe(0);
    const to = join(app, "oldest-restored.db");
    const restore = await run("npx", ["r2backup", "restore", "--to", to, "--source", "oldest"], { cwd: app, env, path });
    expect(restore.code, restore.err).toBe(0);
    expect(todos(to)).toEqual(todos(db));
  });
});

describe("a real LiveStore app that depends on the packed package", () => {
  it("backs itself up in-process (liveStoreDatabases) and boots on the restore with the todos it showed", async () => {
    const dir = await mkdtemp(join(tmpdir(), "r2b-livestore-app-"));
    const worker = await startLocalWorker();
    try {
      const pack = await run("npm", ["pack", "--json", "--pack-destination", dir, "--loglevel=error"], { cwd: ROOT });
      expect(pack.code, pack.err).toBe(0);
      const tarball = (JSON.parse(pack.out.slice(pack.out.indexOf("[\n"))) as { filename: string }[])[0]!.filename;
      const app = join(dir, "app");
      await mkdir(app);
      await writeFile(join(app, "package.json"), `${JSON.stringify({ name: "livestore-app", version: "1.0.0", private: true, type: "module" }, null, 2)}\n`);
      // LiveStore's own packages from the registry (its peers resolve as npm resolves them for any app).
      const install = await run("npm", ["install", join(dir, tarball), "@livestore/livestore@0.4.0", "@livestore/adapter-node@0.4.0", "@opentelemetry/api@1.9.0", ...NPM_FLAGS], {
        cwd: app,
        timeoutMs: 480_000,
      });
      expect(install.code, install.err).toBe(0);
      await writeFile(join(app, "app.mjs"), await readFile(fileURLToPath(new URL("./fixtures/livestore-consumer.mjs", import.meta.url)), "utf8"));
      const env = { R2_WORKER_URL: worker.url, SERVER_BYPASS_TOKEN: worker.bindings.SERVER_BYPASS_TOKEN! };
      const json = (r: Run) => JSON.parse(r.out.split("\n").find((l) => l.startsWith("{"))!) as { todos: [string, boolean][]; paths?: string[]; kept?: boolean[] };
      const b = await run("node", ["app.mjs", "backup", join(dir, "data")], { cwd: app, env });
      expect(b.code, b.err).toBe(0);
      const backedUp = json(b);
      expect(backedUp.paths).toEqual(["todos/eventlog@6.db", expect.stringMatching(/^todos\/state\d+@6\.db$/)]);
      const r = await run("node", ["app.mjs", "restore", join(dir, "restored")], { cwd: app, env });
      expect(r.code, r.err).toBe(0);
      const restored = json(r);
      expect(restored.kept).toEqual([true]);
      expect(restored.todos).toHaveLength(40);
      expect(restored.todos).toEqual(backedUp.todos);
    } finally {
      await worker.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }, 600_000);
});
