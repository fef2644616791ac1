import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DirStore } from "../../job/store/dir-store.ts";
import { JobError } from "../../job/errors.ts";
import { HttpStore, multipartEtag } from "../../job/store/http-store.ts";
import type { BackupStore } from "../../job/store/types.ts";
import { sha256, startBucket, startFaultProxy, type Bucket } from "./backup-fixtures.ts";

/**
 * The BackupStore conformance suite (STYLE.md: one storage interface, one shared suite), run here against
 * HttpStore and the real bundled Worker with a local R2; plus HttpStore's own retry and auth behaviour.
 */

const text = async (store: BackupStore, key: string, range?: { offset?: number; length?: number }) => {
  const got = await store.get(key, range);
  return got ? Buffer.from(await new Response(got.body).arrayBuffer()).toString("utf8") : undefined;
};

/** The behaviour every BackupStore must have; `admin` may delete, `store` may not. */
export function storeConformance(name: string, setup: () => { store: BackupStore; admin: BackupStore; clear: () => Promise<void> }): void {
  describe(`BackupStore conformance: ${name}`, () => {
    beforeEach(async () => {
      await setup().clear();
    });

    it("put then head, get and list return the same bytes, size and checked sha256", async () => {
      const { store } = setup();
      const key = "backups/full/20260101T000000Z/a.db.zst";
      const body = "hello backup";
      const put = await store.put(key, body, { sha256: sha256(body), contentType: "application/zstd" });
      expect(put).toMatchObject({ key, size: body.length, sha256: sha256(body) });
      expect(await store.head(key)).toMatchObject({ key, size: body.length, sha256: sha256(body) });
      expect(await text(store, key)).toBe(body);
      expect(await text(store, key, { offset: 6, length: 3 })).toBe("bac");
      expect(await text(store, key, { offset: 6 })).toBe("backup");
      expect((await store.list("backups/full/")).objects.map((o) => o.key)).toEqual([key]);
    });

    it("missing objects are undefined, never errors", async () => {
      const { store } = setup();
      expect(await store.get("backups/full/20260101T000000Z/none.db.zst")).toBeUndefined();
      expect(await store.head("backups/full/20260101T000000Z/none.db.zst")).toBeUndefined();
    });

    it("keys are write-once: a different body is refused, the same body (a retried PUT) is accepted; state is overwritable", async () => {
      const { store } = setup();
      const key = "backups/full/20260101T000000Z/metadata.json";
      await store.put(key, "one", { sha256: sha256("one") });
      await expect(store.put(key, "two", { sha256: sha256("two") })).rejects.toThrow(/already exists/);
      await expect(store.put(key, "one", { sha256: sha256("one") })).resolves.toMatchObject({ size: 3 });
      expect(await text(store, key)).toBe("one");
      await store.put("backups/state/latest.json", "a");
      await store.put("backups/state/latest.json", "bb");
      expect(await text(store, "backups/state/latest.json")).toBe("bb");
    });

    it("a body that does not match its sha256 is refused and nothing is stored", async () => {
      const { store } = setup();
      const key = "backups/full/20260101T000000Z/b.db.zst";
      await expect(store.put(key, "actual", { sha256: sha256("claimed") })).rejects.toBeInstanceOf(JobError);
      expect(await store.head(key)).toBeUndefined();
    });

    it("lists page by page and listAll follows the cursor", async () => {
      const { store } = setup();
      const keys = Array.from({ length: 5 }, (_, i) => `backups/incremental/2026010${i + 1}T000000Z/changes.ndjson.zst`);
      for (const k of keys) await store.put(k, k);
      const first = await store.list("backups/incremental/", { limit: 2 });
      expect(first.objects).toHaveLength(2);
      expect(first.truncated).toBe(true);
      expect((await store.listAll("backups/incremental/")).map((o) => o.key)).toEqual(keys);
      const grouped = await store.list("backups/", { delimiter: "/" });
      expect(grouped.prefixes).toEqual(["backups/incremental/"]);
    });

    it("lists grouped prefixes page by page, each once", async () => {
      const { store } = setup();
      for (const id of ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"]) for (const f of ["a.db.zst", "metadata.json"]) await store.put(`backups/full/${id}/${f}`, f);
      const seen: string[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 10; pages++) {
        const page = await store.list("backups/full/", { delimiter: "/", limit: 1, ...(cursor ? { cursor } : {}) });
        seen.push(...page.prefixes);
        if (!page.truncated) break;
        cursor = page.cursor;
      }
      expect(seen).toEqual(["backups/full/20260101T000000Z/", "backups/full/20260102T000000Z/", "backups/full/20260103T000000Z/"]);
    });

    it("multipart: equal parts then a short last one; the completed object is their concatenation with the S3 multipart etag", async () => {
      const { store } = setup();
      const key = "backups/full/20260101T000000Z/big.db.zst";
      const a = Buffer.alloc(5 * 1024 * 1024, 1);
      const b = Buffer.from("tail");
      const id = await store.createMultipart(key);
      const parts = [await store.uploadPart(key, id, 1, a), await store.uploadPart(key, id, 2, b)];
      const done = await store.completeMultipart(key, id, parts);
      expect(done.size).toBe(a.length + b.length);
      const expected = multipartEtag(parts);
      if (expected !== undefined) expect(done.etag).toBe(expected);
      const got = await store.get(key, { offset: a.length - 2 });
      expect(Buffer.from(await new Response(got!.body).arrayBuffer())).toEqual(Buffer.from([1, 1, ...b]));
      // A completion retried after its answer was lost meets its own object and succeeds.
      await expect(store.completeMultipart(key, id, parts)).resolves.toMatchObject({ size: done.size });
    });

    it("an aborted multipart upload leaves nothing", async () => {
      const { store } = setup();
      const key = "backups/full/20260101T000000Z/gone.db.zst";
      const id = await store.createMultipart(key);
      const p = await store.uploadPart(key, id, 1, Buffer.alloc(1024));
      await store.abortMultipart(key, id);
      await expect(store.completeMultipart(key, id, [p])).rejects.toBeInstanceOf(JobError);
      expect(await store.head(key)).toBeUndefined();
    });

    it("the job's token cannot delete (auth error); the admin's can", async () => {
      const { store, admin } = setup();
      const key = "backups/full/20260101T000000Z/c.db.zst";
      await store.put(key, "x");
      const err = await store.delete(key).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(JobError);
      expect((err as JobError).kind).toBe("auth");
      await admin.delete(key);
      expect(await store.head(key)).toBeUndefined();
    });
  });
}

let bucket: Bucket;
beforeAll(async () => {
  bucket = await startBucket();
});
afterAll(async () => {
  await bucket?.stop();
});

storeConformance("HttpStore over the local Worker", () => ({ store: bucket.store, admin: bucket.admin, clear: () => bucket.clear() }));

const dirRoot = mkdtempSync(join(tmpdir(), "dir-store-"));
afterAll(() => rmSync(dirRoot, { recursive: true, force: true }));
storeConformance("DirStore over a local directory", () => ({
  store: new DirStore({ root: dirRoot }),
  admin: new DirStore({ root: dirRoot, admin: true }),
  clear: async () => {
    rmSync(dirRoot, { recursive: true, force: true });
    mkdirSync(dirRoot);
  },
}));

describe("HttpStore retries and errors", () => {
  it("a write that meets the key's live claim (another attempt still writing) waits for it, then writes or finds its own bytes", async () => {
    const key = "backups/full/20260301T000000Z/claimed.db.zst";
    const claimKey = `.claims/${sha256(key)}`;
    const r2 = await bucket.worker.mf.getR2Bucket("BACKUP_BUCKET");
    const takenAt = new Date().toISOString();
    await r2.put(claimKey, JSON.stringify({ key, owner: "earlier-attempt", takenAt }), { customMetadata: { key, owner: "earlier-attempt", takenAt } });
    const store = new HttpStore({ url: bucket.url, token: bucket.token, attempts: 6, backoffMs: 100 });
    const released = new Promise<void>((resolve) => setTimeout(() => void r2.delete(claimKey).then(() => resolve()), 400));
    const written = await store.put(key, "bytes");
    await released;
    expect(written.size).toBe(5);
    expect(await text(store, key)).toBe("bytes");
    // With too few attempts the clear 409 of the Worker comes through.
    const other = `${key}.2`;
    await r2.put(`.claims/${sha256(other)}`, "{}", { customMetadata: { key: other, owner: "x", takenAt } });
    await expect(new HttpStore({ url: bucket.url, token: bucket.token, attempts: 1 }).put(other, "b")).rejects.toThrow(/in progress/);
    await bucket.admin.delete(key);
    await r2.delete(`.claims/${sha256(other)}`);
  });

  it("a wrong token is an auth error (exit 4) at once, never retried", async () => {
    const retries: string[] = [];
    const store = new HttpStore({ url: bucket.url, token: "nope", attempts: 5, backoffMs: 1, onRetry: (r) => retries.push(r.reason) });
    const err = await store.list("backups/").catch((e: unknown) => e);
    expect((err as JobError).exitCode).toBe(4);
    expect(retries).toEqual([]);
  });

  it("500s and dropped connections are retried with backoff up to the attempt limit, then unreachable (exit 5)", async () => {
    let n = 0;
    const proxy = await startFaultProxy(bucket.url, () => (n++ < 2 ? (n === 1 ? "500" : "drop") : "pass"));
    try {
      const retries: string[] = [];
      const store = new HttpStore({ url: proxy.url, token: bucket.token, attempts: 3, backoffMs: 1, onRetry: (r) => retries.push(r.reason) });
      await expect(store.list("backups/")).resolves.toMatchObject({ objects: [] });
      // The 500 is retried after a backoff; the connection dropped next (a kept-alive one) is sent again at once on a
      // new one, as Node advises, or after a backoff: either way the third request gets the answer.
      expect(retries[0]).toMatch(/^500/);
      expect(retries.length).toBeGreaterThanOrEqual(1);
      expect(proxy.requests).toHaveLength(3);
    } finally {
      await proxy.close();
    }
    const always = await startFaultProxy(bucket.url, () => "500");
    try {
      const store = new HttpStore({ url: always.url, token: bucket.token, attempts: 3, backoffMs: 1 });
      const err = await store.list("backups/").catch((e: unknown) => e);
      expect((err as JobError).exitCode).toBe(5);
      expect(always.requests).toHaveLength(3);
    } finally {
      await always.close();
    }
  });

  it("a Worker URL that redirects is a usage error naming where to (exit 2), never followed or retried", async () => {
    let relative = false;
    const server = createServer((req, res) => {
      res.writeHead(301, { location: relative ? `/elsewhere${req.url}` : `https://backups.example.com${req.url}` });
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const retries: string[] = [];
      const store = new HttpStore({
        url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
        token: "t",
        attempts: 5,
        backoffMs: 1,
        onRetry: (r) => retries.push(r.reason),
      });
      const err = (await store.list("backups/").catch((e: unknown) => e)) as JobError;
      expect(err.exitCode).toBe(2);
      expect(err.message).toMatch(/redirects \(301\) to https:\/\/backups\.example\.com\/api/);
      expect(retries).toEqual([]);
      relative = true; // a relative Location is named against the Worker URL
      const again = (await store.list("backups/").catch((e: unknown) => e)) as JobError;
      expect(again.exitCode).toBe(2);
      expect(again.message).toMatch(/redirects \(301\) to http:\/\/127\.0\.0\.1:\d+\/elsewhere\/api/);
    } finally {
      server.close();
    }
  });

  it("never loads fetch's undici: every request, the streamed download and the file-range part go through node:http", () => {
    // A child process: vitest itself uses fetch. `process.moduleLoadList` names every builtin module loaded.
    const script = `
      import { HttpStore } from ${JSON.stringify(fileURLToPath(new URL("../../job/store/http-store.ts", import.meta.url)))};
      import { writeFileSync } from "node:fs";
      const store = new HttpStore({ url: process.env.URL, token: process.env.TOKEN });
      const key = "backups/full/20260302T000000Z/undici.db.zst";
      writeFileSync("/tmp/undici-probe-" + process.pid, Buffer.alloc(6 * 1024 * 1024, 7));
      const id = await store.createMultipart(key);
      const part = await store.uploadPart(key, id, 1, { path: "/tmp/undici-probe-" + process.pid, offset: 0, length: 6 * 1024 * 1024 });
      const done = await store.completeMultipart(key, id, [part]);
      const got = await store.get(key);
      let n = 0; for await (const c of got.body) n += c.byteLength;
      await store.list("backups/"); await store.head(key); await store.chain();
      console.log(JSON.stringify({ size: done.size, n, undici: process.moduleLoadList.filter((m) => /undici/.test(m)) }));
    `;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, URL: bucket.url, TOKEN: bucket.token }, encoding: "utf8" });
    expect(JSON.parse(out.trim().split("\n").at(-1)!)).toEqual({ size: 6 * 1024 * 1024, n: 6 * 1024 * 1024, undici: [] });
  });

  it("answers nobody reads (HEADs, 404s, deletes) give their connection back: twelve of each in a row go through", async () => {
    // node:http keeps a kept-alive connection until its answer is read to the end; the store has 4. One left
    // unread per call and the fifth call waits for a connection until its timeout.
    const store = new HttpStore({ url: bucket.url, token: bucket.token, attempts: 1, timeoutMs: 1500 });
    const key = "backups/full/20260303T000000Z/heads.db.zst";
    await store.put(key, "hello");
    for (let i = 0; i < 12; i++) expect((await store.head(key))?.size).toBe(5);
    for (let i = 0; i < 12; i++) expect(await store.head(`${key}.missing`)).toBeUndefined();
    for (let i = 0; i < 12; i++) expect(await store.get(`${key}.missing`)).toBeUndefined();
    for (let i = 0; i < 12; i++) await bucket.admin.delete(`${key}.missing-${i}`);
    await bucket.admin.delete(key);
  });
});
