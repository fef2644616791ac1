import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { allTodos, bootAndReadTodos, closeTodoStore, doWork, openTodoStore, waitPersisted, type Todo } from "../../examples/livestore/todo-app.ts";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { backup, databasesInDir } from "../../job/backup.ts";
import { createAgentHandler } from "../../job/commands/agent.ts";
import { triggerBackup } from "../../job/commands/trigger.ts";
import { liveStoreDatabases, liveStoreFiles } from "../../job/livestore.ts";
import { restore } from "../../job/restore/index.ts";
import { useTestBucket } from "./bucket.ts";

/**
 * The real LiveStore 0.4 app (examples/livestore/todo-app.ts, @livestore/adapter-node on disk) backed up,
 * restored with `restore --data-dir`, and booted again: the todos it shows must be the ones it showed at
 * that point. Bytes and integrity_check are not the bar; what the app sees is.
 */
const t = useTestBucket("livestore-");
/** A moment just before a set's data was read (so a restore there takes the set before it). */
const justBefore = (b: { manifest: { capturedAt?: string | undefined } }) => new Date(Date.parse(b.manifest.capturedAt!) - 1);
const tmp = () => join(t.dir, "work");

const bootTodos = bootAndReadTodos;

/** A backup of every database file under a data directory (the CLI's `run --data-dir`). */
const backupDir = async (dir: string, kind: "full" | "auto" = "full") =>
  backup({ store: t.bucket.store, databases: await databasesInDir(dir), kind, tmpDir: tmp(), lockFile: false, promote: false });

/** What an event log alone materializes: the restore with its state DB removed, booted (LiveStore rebuilds it). */
async function materializedFromLog(dataDir: string): Promise<Todo[]> {
  for (const f of await readdir(join(dataDir, "todos"))) if (f.startsWith("state")) await rm(join(dataDir, "todos", f));
  return bootTodos(dataDir);
}

describe("LiveStore backed up in-process (liveStoreDatabases)", () => {
  it("restores at the full backup, between two incrementals and at latest to exactly the todos the app showed", async () => {
    const app = join(t.dir, "app");
    const store = await openTodoStore(app);
    const seen: Todo[][] = [];
    const take = async (kind: "full" | "incremental") => {
      await waitPersisted(store);
      seen.push(allTodos(store));
      return backup({ store: t.bucket.store, databases: liveStoreDatabases(store), kind, tmpDir: tmp(), lockFile: false, promote: false });
    };
    doWork(store, 60, "a");
    const full = await take("full");
    doWork(store, 40, "b");
    const first = await take("incremental");
    doWork(store, 25, "c");
    const second = await take("incremental");
    doWork(store, 10, "d"); // never backed up
    await closeTodoStore(store);

    expect(full.manifest.databases.map((d) => [d.path, d.coverage])).toEqual([
      ["todos/eventlog@6.db", "rows"],
      [expect.stringMatching(/^todos\/state\d+@6\.db$/), "derived"],
    ]);

    const points = [
      { at: justBefore(first), expected: seen[0]!, keep: true },
      { at: new Date(first.manifest.capturedAt!), expected: seen[1]!, keep: false },
      { at: justBefore(second), expected: seen[1]!, keep: false },
      { at: "latest" as const, expected: seen[2]!, keep: false },
    ];
    for (const [i, p] of points.entries()) {
      const dir = join(t.dir, `restored-${i}`);
      const r = await restore({ store: t.bucket.store, dataDir: dir, at: p.at });
      expect(r.derived.map((d) => d.keep)).toEqual([p.keep]);
      const files = (await readdir(join(dir, "todos"))).sort();
      expect(files.some((f) => f.startsWith("state"))).toBe(p.keep);
      expect(files).toContain("eventlog@6.db");
      const todos = await bootTodos(dir);
      expect(todos.length).toBeGreaterThan(0);
      expect(todos).toEqual(p.expected);
    }
    // The stale state is not silently equal by chance: what the full backup's state holds differs from latest.
    expect(seen[2]).not.toEqual(seen[0]);
  });

  it("a restore over an existing data directory (--force) removes the old state DB it leaves out", async () => {
    const app = join(t.dir, "app");
    const store = await openTodoStore(app);
    doWork(store, 30, "a");
    await waitPersisted(store);
    await backup({ store: t.bucket.store, databases: liveStoreDatabases(store), kind: "full", tmpDir: tmp(), lockFile: false, promote: false });
    doWork(store, 30, "b");
    await waitPersisted(store);
    const expected = allTodos(store);
    await backup({
      store: t.bucket.store,
      databases: liveStoreDatabases(store),
      kind: "incremental",
      tmpDir: tmp(),
      lockFile: false,
      promote: false,
    });
    doWork(store, 30, "c"); // the app runs on; then its disk is lost and the operator restores over what is left
    await closeTodoStore(store);

    await expect(restore({ store: t.bucket.store, dataDir: app })).rejects.toMatchObject({ kind: "targetExists" });
    const r = await restore({ store: t.bucket.store, dataDir: app, force: true });
    expect(r.derived).toMatchObject([{ keep: false }]);
    expect((await readdir(join(app, "todos"))).filter((f) => f.startsWith("state"))).toEqual([]);
    expect(await bootTodos(app)).toEqual(expected);
  });

  it("a restore over the app's directory never leaves a new event log beside an old state DB, whenever it is killed", async () => {
    const app = join(t.dir, "app");
    const store = await openTodoStore(app);
    doWork(store, 30, "a");
    await waitPersisted(store);
    const atFull = allTodos(store);
    await backup({ store: t.bucket.store, databases: liveStoreDatabases(store), kind: "full", tmpDir: tmp(), lockFile: false, promote: false });
    doWork(store, 30, "b"); // the app moves on: its state DB on disk is newer than the backup's
    await closeTodoStore(store);
    const statePath = join(app, liveStoreFiles(store).state);
    // Each replace is a point where a kill -9 could land: the old state DB must be gone before the event log moves.
    const stateAtEachReplace: [string, boolean][] = [];
    const r = await restore({
      store: t.bucket.store,
      dataDir: app,
      force: true,
      onProgress: (p) => {
        if (p.phase === "replace" && p.key) stateAtEachReplace.push([p.key.slice(app.length + 1), existsSync(statePath)]);
      },
    });
    expect(r.derived).toMatchObject([{ keep: true }]);
    expect(stateAtEachReplace).toEqual([
      ["todos/eventlog@6.db", false],
      [liveStoreFiles(store).state, false],
    ]);
    expect(await bootTodos(app)).toEqual(atFull);
  });

  it("a full backup taken while the app commits restores to exactly what its own event log materializes", async () => {
    const app = join(t.dir, "app");
    const store = await openTodoStore(app);
    doWork(store, 200, "a");
    await waitPersisted(store);
    let stop = false;
    let n = 0;
    const writer = (async () => {
      while (!stop) {
        doWork(store, 3, `w${n++}`);
        await new Promise((r) => setImmediate(r));
      }
    })();
    const events: string[] = [];
    const b = await backup({
      store: t.bucket.store,
      databases: liveStoreDatabases(store),
      kind: "full",
      tmpDir: tmp(),
      lockFile: false,
      promote: false,
      onEvent: (e) => e.type === "log" && events.push(e.message),
    });
    stop = true;
    await writer;
    await closeTodoStore(store);
    expect(n).toBeGreaterThan(0);

    const dir = join(t.dir, "restored");
    const r = await restore({ store: t.bucket.store, dataDir: dir });
    const booted = await bootTodos(dir);
    const fromLog = await materializedFromLog(dir);
    expect(booted).toEqual(fromLog);
    // The restored log is what the app had committed by then: a prefix of its events, and todos with them.
    const head = b.manifest.databases.find((d) => d.livestore?.role === "eventlog")!.livestore!.head!;
    expect(head[0]).toBeGreaterThanOrEqual(200);
    expect(booted.length).toBeGreaterThan(150);
    expect(r.derived).toHaveLength(1);
  });
});

describe("LiveStore behind the agent, mounted on the app's own server", () => {
  it("the cron job's trigger backs up the running store in-process, and the restore boots with its todos", async () => {
    const app = join(t.dir, "app");
    let expected: Todo[] = [];
    const store = await openTodoStore(app);
    const handler = createAgentHandler({
      token: "agent-token",
      run: (kind, onEvent) => backup({ store: t.bucket.store, databases: liveStoreDatabases(store), kind, onEvent, tmpDir: tmp(), lockFile: false, promote: false }),
    });
    const server = createServer(handler);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const agentUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      doWork(store, 40, "a");
      await waitPersisted(store);
      expected = allTodos(store);
      const outcome = await triggerBackup({ agentUrl, token: "agent-token", kind: "full" });
      expect(outcome.exitCode).toBe(0);
      doWork(store, 10, "b"); // after the backup
    } finally {
      server.close();
      await closeTodoStore(store);
    }
    const dir = join(t.dir, "restored");
    const r = await restore({ store: t.bucket.store, dataDir: dir });
    expect(r.derived).toMatchObject([{ keep: true }]);
    expect(expected.length).toBeGreaterThan(0);
    expect(await bootTodos(dir)).toEqual(expected);
  });
});

describe("LiveStore files backed up by another process (run --data-dir)", () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill("SIGKILL");
    child = undefined;
  });

  it("a stopped app's data directory restores to the same todos at latest and between incrementals", async () => {
    const app = join(t.dir, "app");
    const seen: Todo[][] = [];
    const session = async (tag: string, n: number) => {
      const store = await openTodoStore(app);
      doWork(store, n, tag);
      await waitPersisted(store);
      seen.push(allTodos(store));
      await closeTodoStore(store);
    };
    const take = (kind: "full" | "auto") => backupDir(app, kind);
    await session("a", 50);
    await take("full");
    await session("b", 20);
    const i1 = await take("auto");
    await session("c", 20);
    const i2 = await take("auto");
    expect([i1.kind, i2.kind]).toEqual(["incremental", "incremental"]);

    const between = join(t.dir, "between");
    await restore({ store: t.bucket.store, dataDir: between, at: justBefore(i2) });
    expect(await bootTodos(between)).toEqual(seen[1]);
    const latest = join(t.dir, "latest");
    await restore({ store: t.bucket.store, dataDir: latest });
    expect(await bootTodos(latest)).toEqual(seen[2]);
  });

  it("never writes a lock-free LiveStore file: a writer's -journal is not rolled back into it by the backup", async () => {
    // LiveStore's writer takes no file locks, so to SQLite its -journal looks "hot" (left by a crash): a normal
    // connection would roll it back into the live file. Here a writer dies mid-transaction, leaving exactly that.
    const app = join(t.dir, "app");
    const seed = await openTodoStore(app);
    doWork(seed, 50, "seed");
    await closeTodoStore(seed);
    const log = join(app, "todos", "eventlog@6.db");
    const script = join(t.dir, "mid-transaction.mjs");
    await writeFile(
      script,
      `import { DatabaseSync } from "node:sqlite";
       const db = new DatabaseSync(process.argv[2]);
       db.exec("PRAGMA cache_size = 1; BEGIN");
       const ins = db.prepare("INSERT INTO __livestore_sync_status (head, backendId) VALUES (?, ?)");
       for (let i = 1000; i < 3000; i++) ins.run(i, "x".repeat(500));
       process.stdout.write("mid\\n");
       setInterval(() => {}, 1000);`,
    );
    child = spawn(process.execPath, [script, log], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve) => child!.stdout!.once("data", () => resolve()));
    child.kill("SIGKILL");
    await new Promise((r) => child!.once("exit", r));
    child = undefined;
    const before = await readFile(log);
    expect((await readdir(join(app, "todos"))).some((f) => f.endsWith("-journal"))).toBe(true);

    await backupDir(app).catch(() => undefined);

    expect((await readFile(log)).equals(before)).toBe(true);
    expect((await readdir(join(app, "todos"))).some((f) => f.endsWith("-journal"))).toBe(true);
  });

  it("a full backup of the files while another process commits restores to what the restored event log materializes", async () => {
    const app = join(t.dir, "app");
    const seed = await openTodoStore(app);
    doWork(seed, 300, "seed");
    await closeTodoStore(seed);
    const script = fileURLToPath(new URL("./livestore-writer.ts", import.meta.url));
    child = spawn(process.execPath, [script, app], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      child!.stdout!.once("data", () => resolve());
      child!.once("exit", (code) => reject(new Error(`writer exited ${code}`)));
    });
    const b = await backupDir(app);
    child.kill("SIGKILL");
    child = undefined;
    expect(b.manifest.databases.map((d) => d.coverage).sort()).toEqual(["derived", "rows"]);

    const dir = join(t.dir, "restored");
    await restore({ store: t.bucket.store, dataDir: dir });
    const booted = await bootTodos(dir);
    expect(booted.length).toBeGreaterThan(200);
    expect(booted).toEqual(await materializedFromLog(dir));
  });
});

describe("LiveStore internals this package relies on (fails when a LiveStore release changes them)", () => {
  it("file names, system tables, and the state DB's head in __livestore_session_changeset", async () => {
    // @livestore/common is LiveStore's own package (a dependency of @livestore/livestore), where these are defined.
    const common = (await import("@livestore/common")) as unknown as {
      liveStoreStorageFormatVersion: number;
      EVENTLOG_META_TABLE: string;
      SYNC_STATUS_TABLE: string;
      SESSION_CHANGESET_META_TABLE: string;
      SCHEMA_META_TABLE: string;
      SCHEMA_EVENT_DEFS_META_TABLE: string;
    };
    const { LIVESTORE } = await import("../../job/coverage.ts");
    const { LIVESTORE_FORMAT_VERSION, liveStoreFiles } = await import("../../job/livestore.ts");
    expect(common.liveStoreStorageFormatVersion).toBe(LIVESTORE_FORMAT_VERSION);
    const st = common;
    expect([st.EVENTLOG_META_TABLE, st.SYNC_STATUS_TABLE]).toEqual([LIVESTORE.eventlogTable, LIVESTORE.syncStatusTable]);
    expect([st.SCHEMA_META_TABLE, st.SCHEMA_EVENT_DEFS_META_TABLE, st.SESSION_CHANGESET_META_TABLE].sort()).toEqual([...LIVESTORE.stateTables].sort());

    const app = join(t.dir, "app");
    const store = await openTodoStore(app);
    doWork(store, 20, "x");
    const files = liveStoreFiles(store);
    await closeTodoStore(store);
    expect((await readdir(join(app, "todos"))).filter((f) => f.endsWith(".db")).sort()).toEqual([files.eventlog, files.state].map((f) => f.split("/")[1]).sort());
    const log = new DatabaseSync(join(app, files.eventlog), { readOnly: true });
    const state = new DatabaseSync(join(app, files.state), { readOnly: true });
    const q = "SELECT seqNumGlobal AS g, seqNumClient AS c FROM %t ORDER BY seqNumGlobal DESC, seqNumClient DESC LIMIT 1";
    const logHead = log.prepare(q.replace("%t", "eventlog")).get();
    const stateHead = state.prepare(q.replace("%t", "__livestore_session_changeset")).get();
    log.close();
    state.close();
    expect(logHead).toEqual(stateHead);
    expect(logHead).toMatchObject({ g: expect.any(Number) });
  });
});
