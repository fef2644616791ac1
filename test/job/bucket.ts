import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach } from "vitest";
import { HttpStore } from "../../job/store/http-store.ts";
import { startLocalWorker, type LocalWorker } from "../../worker/local.ts";

/**
 * The bucket every job test talks to: the real bundled Worker in Miniflare with an in-memory R2, and
 * stores with the job's token and with the admin's (which may delete, to empty it between tests).
 */
export interface TestBucket {
  worker: LocalWorker;
  url: string;
  /** The job's token (`SERVER_BYPASS_TOKEN`). */
  token: string;
  store: HttpStore;
  admin: HttpStore;
  /** Deletes every object (admin token), so each test starts from an empty bucket. */
  clear(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestBucket(): Promise<TestBucket> {
  const worker = await startLocalWorker();
  const token = worker.bindings.SERVER_BYPASS_TOKEN!;
  const store = new HttpStore({ url: worker.url, token, attempts: 3, backoffMs: 10 });
  const admin = new HttpStore({ url: worker.url, token: worker.bindings.ADMIN_TOKEN!, attempts: 3, backoffMs: 10 });
  return {
    worker,
    url: worker.url,
    token,
    store,
    admin,
    async clear() {
      for (const o of await admin.listAll("backups/")) await admin.delete(o.key);
    },
    stop: () => worker.stop(),
  };
}

/**
 * Registers the usual hooks of a job test file: one bucket for the file, emptied before each test, and a
 * fresh temporary directory per test (removed after it). Read `ctx.bucket` and `ctx.dir` inside tests.
 */
export function useTestBucket(prefix: string): { readonly bucket: TestBucket; readonly dir: string } {
  const ctx = {} as { bucket: TestBucket; dir: string };
  beforeAll(async () => {
    ctx.bucket = await startTestBucket();
  });
  afterAll(async () => {
    await ctx.bucket?.stop();
  });
  beforeEach(async () => {
    await ctx.bucket.clear();
    ctx.dir = await mkdtemp(join(tmpdir(), prefix));
    return () => rm(ctx.dir, { recursive: true, force: true });
  });
  return ctx;
}
