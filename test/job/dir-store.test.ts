import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { mkdir, readFile, utimes, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { CHAIN_HEAD_KEY, parseChainHead } from "../../core/chain.ts";
import { JobError } from "../../job/errors.ts";
import { DirStore } from "../../job/store/dir-store.ts";
import { HttpStatusError } from "../../job/store/types.ts";
import {
  JOB_ROOT,
  ONE_BYTE,
  addRandomBlob,
  eventCount,
  oneByteSetFile,
  oneByteSetManifest,
  runCli,
  sha256,
  startBucket,
  tempDir,
  writeLiveStoreDb,
  type Bucket,
} from "./backup-fixtures.ts";

/**
 * The directory store's own edges (the conformance suite in http-store.test.ts covers the BackupStore contract):
 * a bucket copied file by file restores, two processes committing on one head, keys that climb out of the
 * directory, a body that ends early.
 */

let dir: { path: string; remove(): Promise<void> };
beforeAll(async () => {
  dir = await tempDir("dir-store-");
});
afterAll(async () => {
  await dir?.remove();
});

describe("DirStore", () => {
  it("a bucket copied key by key (as rclone copies it) restores with --dir, and a flipped byte in the copy is caught", async () => {
    let bucket: Bucket | undefined;
    try {
      bucket = await startBucket();
      const db = join(dir.path, "app.db");
      writeLiveStoreDb(db, { events: 40_000, argsBytes: 400, docs: 10 });
      addRandomBlob(db, 8 * 1024 * 1024);
      const env = { R2_WORKER_URL: bucket.url, SERVER_BYPASS_TOKEN: bucket.token };
      const backup = await runCli(["run", "--db", db, "--source", "app", "--kind", "full", "--part-mib", "5", "--tmp-dir", dir.path, "--json"], env).done;
      expect(backup.code, backup.stderr).toBe(0);
      // The copy: every object under backups/, at its key, nothing of the directory store's own.
      const copy = join(dir.path, "copy");
      const objects = await bucket.store.listAll("backups/");
      expect(objects.some((o) => o.size > 5 * 1024 * 1024)).toBe(true); // a multipart object among them
      for (const o of objects) {
        const got = await bucket.store.get(o.key);
        await mkdir(dirname(join(copy, o.key)), { recursive: true });
        await writeFile(join(copy, o.key), Buffer.from(await new Response(got!.body).arrayBuffer()));
      }
      await bucket.stop();
      bucket = undefined;

      const to = join(dir.path, "restored.db");
      const restore = await runCli(["restore", "--dir", copy, "--to", to, "--json"], {}).done;
      expect(restore.code, restore.stderr).toBe(0);
      expect(eventCount(to)).toBe(40_000);
      expect(existsSync(join(copy, ".r2backup"))).toBe(false); // a restore writes nothing into the copy

      const database = objects.find((o) => o.key.endsWith("/app.db.zst") && o.key.startsWith("backups/full/"))!;
      const bytes = await readFile(join(copy, database.key));
      bytes[bytes.length >> 1]! ^= 0xff;
      await writeFile(join(copy, database.key), bytes);
      const damaged = join(dir.path, "damaged.db");
      const refused = await runCli(["restore", "--dir", copy, "--to", damaged, "--json"], {}).done;
      expect(refused.code).toBe(8);
      expect(refused.stderr).toMatch(/sha256 [0-9a-f]{64} does not match the manifest/);
      expect(existsSync(damaged)).toBe(false);
    } finally {
      await bucket?.stop();
    }
  });

  it("two processes that commit on the same head: one set joins the chain, the other is told the chain moved", async () => {
    const root = join(dir.path, "race");
    await mkdir(root);
    const go = join(dir.path, "race-go");
    const ids = ["20260101T000000Z", "20260101T000001Z"];
    const script = `
      import { existsSync } from "node:fs";
      import { DirStore } from ${JSON.stringify(join(JOB_ROOT, "job/store/dir-store.ts"))};
      const [root, go, id, manifest] = process.argv.slice(1);
      const store = new DirStore({ root });
      await store.put("backups/full/" + id + "/app.db.zst", ${JSON.stringify(ONE_BYTE)});
      while (!existsSync(go)) await new Promise((r) => setTimeout(r, 1));
      const outcome = await store.commitSet(manifest, 0);
      console.log("committed" in outcome ? "committed" : "moved");
    `;
    const runs = ids.map((id) => {
      const manifest = oneByteSetManifest({ kind: "full", id, base: id, previous: null, capturedAt: new Date(Date.parse("2026-01-01T00:00:00Z")).toISOString() });
      const child = spawn(process.execPath, ["--input-type=module", "-e", script, root, go, id, manifest], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (err += d));
      return new Promise<string>((resolve, reject) => child.on("close", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(err)))));
    });
    await new Promise((r) => setTimeout(r, 300));
    await writeFile(go, "");
    const outcomes = await Promise.all(runs);
    expect(outcomes.sort()).toEqual(["committed", "moved"]);
    const head = parseChainHead(await readFile(join(root, CHAIN_HEAD_KEY), "utf8"));
    expect(head.length).toBe(1);
    expect(readdirSync(join(root, ".r2backup", "tmp"))).toEqual([]);
  });

  it("two commits at once in one process, on one head: one set joins the chain, the other is told the chain moved", async () => {
    const root = join(dir.path, "race-in-process");
    await mkdir(root);
    const stores = [new DirStore({ root }), new DirStore({ root })];
    const ids = ["20260101T000002Z", "20260101T000003Z"];
    for (const id of ids) await stores[0]!.put(`backups/full/${id}/${oneByteSetFile("full")}`, ONE_BYTE);
    const outcomes = await Promise.all(
      ids.map((id, i) => stores[i % 2]!.commitSet(oneByteSetManifest({ kind: "full", id, base: id, previous: null, capturedAt: "2026-01-01T00:00:00.000Z" }), 0)),
    );
    expect(outcomes.map((o) => ("committed" in o ? "committed" : "moved")).sort()).toEqual(["committed", "moved"]);
    expect((await stores[0]!.chain()).head?.length).toBe(1);
  });

  it("a commit of a set with an object missing is refused and the chain is unchanged", async () => {
    const root = join(dir.path, "incomplete");
    await mkdir(root);
    const store = new DirStore({ root });
    const id = "20260102T000000Z";
    const manifest = oneByteSetManifest({ kind: "full", id, base: id, previous: null, capturedAt: "2026-01-02T00:00:00.000Z" });
    await expect(store.commitSet(manifest, 0)).rejects.toThrow(/'backups\/full\/20260102T000000Z\/app.db.zst' is not stored; upload every object/);
    expect((await store.chain()).head).toBeNull();
    await store.put(`backups/full/${id}/${oneByteSetFile("full")}`, "y"); // one byte, not the one listed
    await expect(store.commitSet(manifest, 0)).rejects.toThrow(/does not match the manifest|sha256/);
  });

  it("keys that climb out of the directory are refused, and nothing is written outside it", async () => {
    const root = join(dir.path, "jail");
    await mkdir(root);
    const store = new DirStore({ root });
    for (const key of ["backups/full/../../../escaped", "../escaped", "/etc/escaped", "backups/full//x", "other/x"]) {
      const err = await store.put(key, "x").catch((e: unknown) => e);
      expect(err, key).toBeInstanceOf(JobError);
      expect((err as JobError).kind, key).toBe("usage");
      await expect(store.get(key)).rejects.toBeInstanceOf(JobError);
    }
    expect(existsSync(join(dir.path, "escaped"))).toBe(false);
    await expect(store.put(CHAIN_HEAD_KEY, "{}")).rejects.toThrow(/chain keys are written only by a commit/);
  });

  it("a key taken with other bytes is a 409, as from the Worker (backup then retakes the set under a new id)", async () => {
    const root = join(dir.path, "taken");
    await mkdir(root);
    const store = new DirStore({ root });
    const key = "backups/full/20260104T000000Z/app.db.zst";
    await store.put(key, "one");
    const err = await store.put(key, "two").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpStatusError);
    expect((err as HttpStatusError).status).toBe(409);
    expect(await new Response((await store.get(key))!.body).text()).toBe("one");
  });

  it("what a run killed half-way left (a temporary file, an upload) is removed once it is past the lifecycle's age; newer ones stay", async () => {
    const root = join(dir.path, "sweep");
    const own = join(root, ".r2backup");
    await mkdir(join(own, "tmp"), { recursive: true });
    await mkdir(join(own, "uploads", "00000000-0000-4000-8000-000000000000"), { recursive: true });
    await writeFile(join(own, "tmp", "123.old"), "half");
    await writeFile(join(own, "tmp", "124.new"), "half");
    const old = new Date(Date.now() - 2 * 24 * 3600 * 1000);
    await utimes(join(own, "tmp", "123.old"), old, old);
    await utimes(join(own, "uploads", "00000000-0000-4000-8000-000000000000"), old, old);
    await new DirStore({ root }).put("backups/state/latest.json", "{}");
    expect(readdirSync(join(own, "tmp"))).toEqual(["124.new"]);
    expect(readdirSync(join(own, "uploads"))).toEqual([]);
  });

  it("a file range that ends before its length stores nothing and leaves no temporary file", async () => {
    const root = join(dir.path, "short");
    await mkdir(root);
    const store = new DirStore({ root });
    const source = join(dir.path, "short-source");
    await writeFile(source, "12345");
    const key = "backups/full/20260103T000000Z/app.db.zst";
    await expect(store.put(key, { path: source, offset: 0, length: 10 }, { sha256: sha256("12345") })).rejects.toThrow(/ended 5 bytes before the range/);
    expect(await store.head(key)).toBeUndefined();
    expect(readdirSync(join(root, ".r2backup", "tmp"))).toEqual([]);
  });
});
