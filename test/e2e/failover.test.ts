import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ApiStatus } from "../../core/index.ts";
import { allTodos, bootAndReadTodos, closeTodoStore, doWork, openTodoStore, waitPersisted } from "../../examples/livestore/todo-app.ts";
import { backup } from "../../job/backup.ts";
import { main } from "../../job/cli.ts";
import { liveStoreDatabases } from "../../job/livestore.ts";
import { HttpStore } from "../../job/store/http-store.ts";
import { LOCAL_BUCKETS, startLocalWorker, type FailoverMode, type LocalWorker } from "../../worker/local.ts";

/**
 * docs/disaster-recovery.md section 4, "The primary bucket or region is lost", as the runbook runs it
 * locally: the real LiveStore app backed up in-process through the bundled Worker in Miniflare (real local
 * R2 buckets, persisted, real HTTP), the cron copying to the replica; then the primary is wiped AND unbound
 * (`--failover replica-only`, what `pulumi config set failover replica-only && pulumi up` does in the cloud),
 * `r2backup restore --data-dir` at latest, the app booted on it, backups during the failover; then the way
 * back (`failover replica`: the cron fills the primary; then `off`), where every set is found.
 */

let dir: string;
let worker: LocalWorker | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "failover-"));
});
afterAll(async () => {
  await worker?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** The local Worker on the runbook's persisted R2, in a failover mode (a restart, as `pulumi up` redeploys). */
async function deploy(failover: FailoverMode): Promise<LocalWorker> {
  await worker?.stop();
  worker = await startLocalWorker({ persistDir: join(dir, "mf"), replica: true, failover });
  return worker;
}

function collector(): Writable & { text(): string } {
  const chunks: Buffer[] = [];
  const w = new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(Buffer.from(c)), cb()) }) as Writable & { text(): string };
  w.text = () => Buffer.concat(chunks).toString("utf8");
  return w;
}

/** `r2backup <args>` against the running Worker, as the runbook runs it. */
async function r2backup(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = collector();
  const stderr = collector();
  const code = await main(args, { stdout, stderr, env: { R2_WORKER_URL: worker!.url, SERVER_BYPASS_TOKEN: worker!.bindings.SERVER_BYPASS_TOKEN } });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

async function status(): Promise<ApiStatus> {
  const response = await fetch(`${worker!.url}/api/status`, { headers: { "X-Server-Token": worker!.bindings.SERVER_BYPASS_TOKEN! } });
  expect(response.status).toBe(200);
  return (await response.json()) as ApiStatus;
}

async function sets(): Promise<string[]> {
  const listed = await r2backup("list", "--json");
  expect(listed.code, listed.stderr).toBe(0);
  return (JSON.parse(listed.stdout) as { sets: { kind: string; id: string; complete: boolean }[] }).sets.filter((s) => s.complete).map((s) => `${s.kind}/${s.id}`);
}

const bootTodos = bootAndReadTodos;

it("the primary is lost: restore from the replica returns its newest set and the app boots on it; failing back finds every set written meanwhile", async () => {
  const store = () => new HttpStore({ url: worker!.url, token: worker!.bindings.SERVER_BYPASS_TOKEN!, attempts: 3, backoffMs: 10 });
  const tmp = join(dir, "tmp");
  const take = async (app: Awaited<ReturnType<typeof openTodoStore>>, kind: "full" | "incremental") => {
    await waitPersisted(app);
    const todos = allTodos(app);
    const b = await backup({ store: store(), databases: liveStoreDatabases(app), kind, tmpDir: tmp, lockFile: false, promote: false });
    return { id: `${b.manifest.kind}/${b.manifest.id}`, todos };
  };

  // Normal operation: the primary serves, the cron fills the replica.
  await deploy("off");
  const app = await openTodoStore(join(dir, "app"));
  doWork(app, 40, "a");
  const full = await take(app, "full");
  doWork(app, 25, "b");
  const replicated = await take(app, "incremental");
  expect((await worker!.scheduled()).outcome).toBe("ok");
  expect((await status()).replica).toMatchObject({ lag: 0 });
  // One more set reaches the primary but not the replica before the region goes.
  doWork(app, 10, "c");
  const lost = await take(app, "incremental");
  expect((await status()).replica).toMatchObject({ lag: 1, missing: [`backups/${lost.id}/`] });
  await closeTodoStore(app);

  // The primary's region is lost: its bucket is emptied here, and unbound by the failover.
  const primary = await worker!.mf.getR2Bucket(LOCAL_BUCKETS.primary);
  for (let page = await primary.list(); page.objects.length > 0; page = await primary.list()) {
    await primary.delete(page.objects.map((o) => o.key));
  }

  // Runbook step: fail over to the replica (replica-only), then restore and boot as section 1 does.
  await deploy("replica-only");
  expect((await status()).replica).toBeUndefined();
  expect(await sets()).toEqual([full.id, replicated.id]);
  const restoredDir = join(dir, "restored");
  const restored = await r2backup("restore", "--data-dir", restoredDir);
  expect(restored.code, restored.stderr).toBe(0);
  const booted = await bootTodos(restoredDir);
  expect(booted).toEqual(replicated.todos);
  expect(booted).not.toEqual(lost.todos);
  const drill = await r2backup("verify");
  expect(drill.code, drill.stderr).toBe(0);

  // The app runs on the restored directory; its backups during the failover go to the replica.
  const app2 = await openTodoStore(restoredDir);
  doWork(app2, 15, "d");
  const during1 = await take(app2, "incremental");
  doWork(app2, 15, "e");
  const during2 = await take(app2, "full");
  await closeTodoStore(app2);
  expect(await sets()).toEqual([full.id, during2.id, replicated.id, during1.id].sort(bySet));

  // The way back, step 1: the primary is there again (empty here) and bound as the replica: the cron fills it.
  await deploy("replica");
  expect((await status()).replica).toMatchObject({ lag: 4 });
  expect((await worker!.scheduled()).outcome).toBe("ok");
  expect((await status()).replica).toMatchObject({ lag: 0 });

  // Step 2: failover off: the primary serves again, with every set written during the failover.
  await deploy("off");
  const after = await sets();
  expect(after).toEqual(expect.arrayContaining([during1.id, during2.id, full.id, replicated.id]));
  expect((await status()).replica).toMatchObject({ lag: 0 });
  const back = join(dir, "failed-back");
  const r = await r2backup("restore", "--data-dir", back);
  expect(r.code, r.stderr).toBe(0);
  expect(await bootTodos(back)).toEqual(during2.todos);
});

/** `list` order: full before incremental, then by id. */
function bySet(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
