import { copyFile } from "node:fs/promises";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it } from "vitest";
import { CHAIN_HEAD_KEY, MAX_CLOCK_SKEW_MS, fileKey, manifestKey, formatTimestamp, linearProblem, type ChainEntry, type Manifest } from "../../core/index.ts";
import { backup } from "../../job/backup.ts";
import { allEntries, rebuildChain } from "../../job/chain.ts";
import { EXIT, JobError } from "../../job/errors.ts";
import { restore } from "../../job/restore/index.ts";
import { ONE_BYTE, eventCount, oneByteSetFile, oneByteSetManifest, runCli, writeLiveStoreDb } from "./backup-fixtures.ts";
import { useTestBucket } from "./bucket.ts";
import { dumpDatabase } from "./restore-fixtures.ts";

/**
 * One authority for the chain (issue 13): the Worker appends a set only on the head its run planned on, so runs
 * at once, from different machines or tmp dirs, never fork it; a database never continues another's chain; and
 * a restore follows the chain, never key names.
 */
const t = useTestBucket("chain-");
const env = () => ({ R2_WORKER_URL: t.bucket.url, SERVER_BYPASS_TOKEN: t.bucket.token });

/** Stores the one object a fake manifest lists, then commits the manifest (the Worker checks the object is there). */
async function commitFake(kind: "full" | "incremental", id: string, previous: string | null, base: string, capturedAt: string, expect: number) {
  await t.bucket.store.put(fileKey(kind, id, oneByteSetFile(kind)), ONE_BYTE);
  return t.bucket.store.commitSet(fakeManifest(kind, id, previous, base, capturedAt), expect);
}

/** A manifest the Worker accepts as a chain entry (the chain reads only its links). */
const fakeManifest = (kind: "full" | "incremental", id: string, previous: string | null, base: string, capturedAt: string) =>
  oneByteSetManifest({ kind, id, base, previous, capturedAt });

describe("the chain head is a compare-and-swap", () => {
  it("16 runs committing on the same head at once: exactly one joins the chain, the rest are told it moved", async () => {
    const now = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: 16 }, (_, i) => {
        const id = formatTimestamp(new Date(now - 60_000 + i * 1000));
        return commitFake("full", id, null, id, new Date(now - 60_000 + i * 1000).toISOString(), 0);
      }),
    );
    const committed = outcomes.filter((o) => "committed" in o);
    expect(committed).toHaveLength(1);
    expect(outcomes.filter((o) => "moved" in o)).toHaveLength(15);
    const { head } = await t.bucket.store.chain();
    expect(head?.length).toBe(1);
    expect(head?.tail[0]?.id).toBe("committed" in committed[0]! ? committed[0].committed.entry.id : "");
  });

  it("refuses a set dated after the Worker's clock, an incremental that does not continue the tip, and direct writes to the chain", async () => {
    const ahead = new Date(Date.now() + MAX_CLOCK_SKEW_MS + 60_000);
    const future = formatTimestamp(ahead);
    await expect(t.bucket.store.commitSet(fakeManifest("full", future, null, future, ahead.toISOString()), 0)).rejects.toMatchObject({
      kind: "clockSkew",
      message: expect.stringMatching(/after the Worker's clock/),
    });
    expect((await t.bucket.store.chain()).head).toBeNull();
    expect(await t.bucket.store.head(`backups/full/${future}/metadata.json`)).toBeUndefined();

    const base = formatTimestamp(new Date(Date.now() - 10_000));
    // A set whose objects are not all stored is never committed.
    await expect(t.bucket.store.commitSet(fakeManifest("full", base, null, base, new Date(Date.now() - 10_000).toISOString()), 0)).rejects.toMatchObject({
      message: expect.stringMatching(/is not stored; upload every object of the set before committing it/),
    });
    expect("committed" in (await commitFake("full", base, null, base, new Date(Date.now() - 10_000).toISOString(), 0))).toBe(true);
    const stray = formatTimestamp(new Date(Date.now() - 5000));
    const other = formatTimestamp(new Date(Date.now() - 20_000));
    const moved = await commitFake("incremental", stray, other, other, new Date(Date.now() - 5000).toISOString(), 1);
    expect(moved).toMatchObject({ moved: expect.stringMatching(/continues .* but the chain's newest set is/) });
    await expect(t.bucket.store.put(CHAIN_HEAD_KEY, "{}")).rejects.toMatchObject({ kind: "auth" });
  });
});

describe("runs at once against one bucket", () => {
  it("8 processes with their own tmp dirs while the app writes: the chain stays linear, every set restores, every run's rows are in it or it failed clearly", async () => {
    const db = join(t.dir, "app.db");
    writeLiveStoreDb(db, { events: 200 });
    const first = await runCli(["run", "--db", db, "--source", "app", "--kind", "full", "--tmp-dir", join(t.dir, "tmp-0")], env()).done;
    expect(first.code, first.stderr).toBe(0);

    // The app: a commit of 5 events every 15 ms, waiting for the runs' read locks like any SQLite writer.
    let next = 201;
    const app = new DatabaseSync(db, { timeout: 10_000 });
    const insert = app.prepare(
      "INSERT INTO eventlog (seqNumGlobal, seqNumClient, parentSeqNumGlobal, parentSeqNumClient, name, argsJson, clientId, sessionId, schemaHash) VALUES (?, 0, ?, 0, 'todoCreated-v1', '{}', 'c', 's', 42)",
    );
    const writer = setInterval(() => {
      app.exec("BEGIN IMMEDIATE");
      for (let i = 0; i < 5; i++, next++) insert.run(next, next - 1);
      app.exec("COMMIT");
    }, 15);
    const runs = Array.from(
      { length: 8 },
      (_, i) => runCli(["run", "--db", db, "--source", "app", "--kind", i < 2 ? "full" : "auto", "--tmp-dir", join(t.dir, `tmp-${i + 1}`), "--json"], env()).done,
    );
    const results = await Promise.all(runs);
    clearInterval(writer);
    app.close();
    const written = eventCount(db);

    for (const r of results) expect([EXIT.ok, EXIT.chainMoved], r.stderr).toContain(r.code);
    const ok = results.filter((r) => r.code === EXIT.ok).map((r) => JSON.parse(r.stdout) as { id: string; manifest: Manifest });
    expect(ok.length).toBeGreaterThanOrEqual(1);
    for (const r of results.filter((x) => x.code === EXIT.chainMoved)) expect(r.stderr).toMatch(/other runs committed first .*nothing of this run is in the chain/);

    const { head } = await t.bucket.store.chain();
    const entries = await allEntries(t.bucket.store, head);
    expect(linearProblem(entries)).toBeUndefined();
    expect(entries).toHaveLength(1 + ok.length);
    expect(entries.map((e) => e.id).sort()).toEqual(entries.map((e) => e.id));
    for (const r of ok) expect(entries.map((e) => e.id)).toContain(r.id);
    // Some runs lost a race (the head moved, or another run took their set's id) and took their set again.
    expect(results.some((r) => /another run (committed first; taking the set again|took set id .*; taking the set again)/.test(r.stderr))).toBe(true);

    // Every set of the chain restores, and each holds at least the rows of the set before it.
    let before = 0;
    for (const [i, e] of entries.entries()) {
      const to = join(t.dir, `at-${i}.db`);
      const r = await restore({ store: t.bucket.store, to, at: new Date(e.capturedAt) });
      expect(r.restoresTo).toBe(e.id);
      const n = eventCount(to);
      expect(n).toBeGreaterThanOrEqual(before);
      before = n;
    }
    // The newest set holds what its run read: every row up to its watermark, no gap.
    const latest = join(t.dir, "latest.db");
    await restore({ store: t.bucket.store, to: latest });
    const top = Math.max(...ok.map((r) => Number(r.manifest.to.find((w) => w.table === "eventlog")!.value![0])));
    expect(eventCount(latest)).toBe(top);
    expect(top).toBeLessThanOrEqual(written);
  });
});

/** The test bucket's store, with `hook` run (another run acting) before each commit it forwards to the Worker. */
function beforeEachCommit(hook: (manifest: Manifest, expected: number) => Promise<void>) {
  return new Proxy(t.bucket.store, {
    get(target, p) {
      if (p === "commitSet") {
        return async (manifest: string, expected: number) => {
          await hook(JSON.parse(manifest) as Manifest, expected);
          return target.commitSet(manifest, expected);
        };
      }
      const v = Reflect.get(target, p, target) as unknown;
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

describe("a run that loses the race to commit", () => {
  it("told the chain moved, does not take another run's set of the same id and capture time for its own: it takes its set again", async () => {
    const db = join(t.dir, "app.db");
    writeLiveStoreDb(db, { events: 20 });
    const opts = { databases: [{ path: db, source: "app" }], tmpDir: join(t.dir, "tmp"), lockFile: false as const, promote: false };
    const first = await backup({ ...opts, store: t.bucket.store, kind: "full" });
    // Another run planned on the same head in the same second: its incremental gets this run's id, and both
    // capture times are the tip's (each is raised to it when a clock estimate lags). It commits first.
    const real = t.bucket.store;
    let rival: ChainEntry | undefined;
    const store = beforeEachCommit(async (m, expected) => {
      if (rival) return;
      const moved = await commitFake("incremental", m.id, first.id, first.id, m.capturedAt!, expected);
      if (!("committed" in moved)) throw new Error(`the rival did not commit: ${moved.moved}`);
      rival = moved.committed.entry;
    });
    const r = await backup({ ...opts, store, kind: "full" });
    const entries = await allEntries(real, (await real.chain()).head);
    expect(entries.map((e) => [e.kind, e.id])).toEqual([
      ["full", first.id],
      ["incremental", rival!.id],
      ["full", r.id],
    ]);
    expect(r.id > rival!.id).toBe(true);
    expect(JSON.parse((await real.readManifests([`full/${r.id}`]))[`full/${r.id}`]!)).toEqual(r.manifest);
  });

  it("finding its set id taken by another run's manifest every time, gives up after 10 attempts with the chain's exit code and nothing of it in the chain", async () => {
    const db = join(t.dir, "app.db");
    writeLiveStoreDb(db, { events: 20 });
    const opts = { databases: [{ path: db, source: "app" }], tmpDir: join(t.dir, "tmp"), lockFile: false as const, promote: false };
    const first = await backup({ ...opts, store: t.bucket.store, kind: "full" });
    // Before each commit, another run's manifest lands under the id this run picked (written straight into R2).
    const r2 = await t.bucket.worker.mf.getR2Bucket("BACKUP_BUCKET");
    const ids: string[] = [];
    const real = t.bucket.store;
    const store = beforeEachCommit(async (m) => {
      ids.push(m.id);
      await r2.put(manifestKey(m.kind, m.id), fakeManifest(m.kind, m.id, null, m.id, m.capturedAt!));
    });
    const err = await backup({ ...opts, store, kind: "full" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobError);
    expect(err).toMatchObject({ kind: "chainMoved", exitCode: EXIT.chainMoved, message: expect.stringMatching(/other runs committed first or took its set id 10 times/) });
    expect((err as JobError).hint).toMatch(/nothing of this run is in the chain/);
    expect(ids).toHaveLength(10);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(10);
    expect((await allEntries(real, (await real.chain()).head)).map((e) => e.id)).toEqual([first.id]);
  });
});

describe("two databases into one bucket", () => {
  it("backed up alternately by separate runs: every restore at every set returns that database's own content", async () => {
    const alpha = join(t.dir, "alpha.db");
    const beta = join(t.dir, "beta.db");
    writeLiveStoreDb(alpha, { events: 30 });
    writeLiveStoreDb(beta, { from: 1000, events: 70 });
    const expected = new Map<string, { source: string; dump: ReturnType<typeof dumpDatabase> }>();
    for (let round = 0; round < 3; round++) {
      for (const [source, path, from] of [
        ["alpha", alpha, 100 + round * 10],
        ["beta", beta, 2000 + round * 10],
      ] as const) {
        writeLiveStoreDb(path, { from, events: 5 });
        const r = await runCli(["run", "--db", path, "--source", source, "--tmp-dir", join(t.dir, "tmp"), "--json"], env()).done;
        expect(r.code, r.stderr).toBe(0);
        const result = JSON.parse(r.stdout) as { kind: string; manifest: Manifest };
        // The other database's set is the tip: a run never continues it, so each run is a full of its own.
        expect(result.kind).toBe("full");
        expect(result.manifest.sources).toEqual([{ source }]);
        const copy = join(t.dir, `${source}-${round}.db`);
        await copyFile(path, copy);
        expected.set(result.manifest.capturedAt!, { source, dump: dumpDatabase(copy) });
      }
    }
    const { head } = await t.bucket.store.chain();
    const entries: ChainEntry[] = await allEntries(t.bucket.store, head);
    expect(entries).toHaveLength(6);
    for (const [i, e] of entries.entries()) {
      const want = expected.get(e.capturedAt)!;
      expect(e.sources).toEqual([want.source]);
      const to = join(t.dir, `restored-${i}.db`);
      const r = await restore({ store: t.bucket.store, to, at: new Date(e.capturedAt) });
      expect(r.targets.map((x) => x.source)).toEqual([want.source]);
      expect(dumpDatabase(to)).toEqual(want.dump);
    }
    // Without a name, the newest set, and a note that the other database's sets are there too.
    const unnamed = await restore({ store: t.bucket.store, to: join(t.dir, "unnamed.db") });
    expect(unnamed.notes).toContain("the chain also holds sets of alpha; this restores beta (restore another with --source <name>)");
    // By name: each database's newest set, though the other's came after it (and at any time, its newest before).
    for (const [source, path] of [
      ["alpha", alpha],
      ["beta", beta],
    ] as const) {
      const to = join(t.dir, `${source}-latest.db`);
      const r = await restore({ store: t.bucket.store, to, source });
      expect(r.restoresTo).toBe(entries.filter((e) => e.sources.includes(source)).at(-1)!.id);
      expect(dumpDatabase(to)).toEqual(dumpDatabase(path));
    }
    // A name no set holds (a typo) is said so, naming what the newest full holds.
    await expect(restore({ store: t.bucket.store, to: join(t.dir, "gamma.db"), source: "gamma" })).rejects.toMatchObject({
      kind: "notFound",
      detail: "plan restore of 'gamma': no full backup in the chain holds it",
      hint: "the newest full holds beta; r2backup list shows every set's databases",
    });
    const early = join(t.dir, "alpha-early.db");
    const r = await restore({ store: t.bucket.store, to: early, source: "alpha", at: new Date(entries[1]!.capturedAt) });
    expect(r.restoresTo).toBe(entries[0]!.id);
    expect(dumpDatabase(early)).toEqual(expected.get(entries[0]!.capturedAt)!.dump);
  });
});

describe("two databases under one source name", () => {
  it("are never chained together: an auto run of the other takes a full backup, an explicit incremental is refused, every restore is one database's own", async () => {
    const alpha = join(t.dir, "prod", "app.db");
    const beta = join(t.dir, "staging", "app.db");
    mkdirSync(dirname(alpha));
    mkdirSync(dirname(beta));
    // The same tables, and rows at the same keys with other content (staging's events are its own).
    writeLiveStoreDb(alpha, { events: 30 });
    writeLiveStoreDb(beta, { events: 70, argsBytes: 41 });
    const run = async (db: string, kind: string) => runCli(["run", "--db", db, "--source", "app", "--kind", kind, "--tmp-dir", join(t.dir, "tmp"), "--json"], env()).done;
    const first = await run(alpha, "full");
    expect(first.code, first.stderr).toBe(0);
    const alphaThen = join(t.dir, "alpha-then.db");
    await copyFile(alpha, alphaThen);

    const other = await run(beta, "auto");
    expect(other.code, other.stderr).toBe(0);
    expect((JSON.parse(other.stdout) as { kind: string }).kind).toBe("full");
    expect(other.stderr).toMatch(
      /the row of 'eventlog' at the last watermark \(30, 0\) is not the one the chain recorded: this is another database under the same source name.*taking a full backup instead/,
    );

    writeLiveStoreDb(alpha, { from: 31, events: 5 });
    const refused = await run(alpha, "incremental");
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.stderr).toMatch(
      /take incremental backup of 'app': the row of 'eventlog' at the last watermark \(70, 0\) is gone: this is another database under the same source name/,
    );

    const entries = await allEntries(t.bucket.store, (await t.bucket.store.chain()).head);
    expect(entries.map((e) => e.kind)).toEqual(["full", "full"]);
    const at = join(t.dir, "at-first.db");
    await restore({ store: t.bucket.store, to: at, at: new Date(entries[0]!.capturedAt) });
    expect(dumpDatabase(at)).toEqual(dumpDatabase(alphaThen));
    const latest = join(t.dir, "latest.db");
    await restore({ store: t.bucket.store, to: latest });
    expect(dumpDatabase(latest)).toEqual(dumpDatabase(beta));
  });
});

describe("a complete set outside the chain", () => {
  it("is never the newest backup: status (Worker and CLI) and restore follow the chain, list marks it", async () => {
    const db = join(t.dir, "app.db");
    writeLiveStoreDb(db, { events: 10 });
    const r = await backup({ store: t.bucket.store, databases: [{ path: db, source: "app" }], kind: "full", tmpDir: join(t.dir, "tmp"), lockFile: false, promote: false });
    // A complete-looking set written around the chain (straight into R2), newer than the chain's tip.
    const stray = formatTimestamp(new Date(Date.now() + 60_000));
    const r2 = await t.bucket.worker.mf.getR2Bucket("BACKUP_BUCKET");
    await r2.put(fileKey("full", stray, oneByteSetFile("full")), ONE_BYTE);
    await r2.put(manifestKey("full", stray), fakeManifest("full", stray, null, stray, new Date().toISOString()));

    const api = (await (await fetch(`${t.bucket.url}/api/status`, { headers: { "X-Server-Token": t.bucket.token } })).json()) as { full: { id: string } };
    expect(api.full.id).toBe(r.id);
    const cliStatus = await runCli(["status", "--json"], env()).done;
    expect((JSON.parse(cliStatus.stdout) as { full: { id: string } }).full.id).toBe(r.id);
    const listed = await runCli(["list", "--json"], env()).done;
    const sets = (JSON.parse(listed.stdout) as { sets: { kind: string; id: string; inChain?: boolean }[] }).sets;
    expect(sets.filter((x) => x.kind === "full").map((x) => [x.id, x.inChain])).toEqual([
      [r.id, true],
      [stray, false],
    ]);
    const restored = await restore({ store: t.bucket.store, to: join(t.dir, "latest.db") });
    expect(restored.restoresTo).toBe(r.id);
  });
});

describe("the index is rebuildable from the manifests", () => {
  it("a lost head is rebuilt (admin) with the same entries, and restores read it again", async () => {
    const db = join(t.dir, "app.db");
    writeLiveStoreDb(db, { events: 20 });
    const opts = { store: t.bucket.store, databases: [{ path: db, source: "app" }], tmpDir: join(t.dir, "tmp"), lockFile: false as const, promote: false };
    await backup({ ...opts, kind: "full" });
    writeLiveStoreDb(db, { from: 21, events: 5 });
    await backup({ ...opts, kind: "incremental" });
    writeLiveStoreDb(db, { from: 26, events: 5 });
    await backup({ ...opts, kind: "incremental" });
    const before = await allEntries(t.bucket.store, (await t.bucket.store.chain()).head);

    await t.bucket.admin.delete(CHAIN_HEAD_KEY);
    expect((await t.bucket.store.chain()).head).toBeNull();
    await expect(rebuildChain(t.bucket.store)).rejects.toMatchObject({ kind: "auth" });
    const rebuilt = await rebuildChain(t.bucket.admin);
    expect(rebuilt.leftOut).toEqual([]);
    expect(await allEntries(t.bucket.store, (await t.bucket.store.chain()).head)).toEqual(before);
    const to = join(t.dir, "latest.db");
    const r = await restore({ store: t.bucket.store, to });
    expect(r.restoresTo).toBe(before.at(-1)!.id);
    expect(eventCount(to)).toBe(30);
  });
});
