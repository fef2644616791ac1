import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { catalogFromKeys } from "../../core/index.ts";
import { backup, type BackupResult } from "../../job/backup.ts";
import { EXIT, JobError } from "../../job/errors.ts";
import { restore } from "../../job/restore/index.ts";
import { HttpStore } from "../../job/store/http-store.ts";
import { addRandomBlob, runCli, startFaultProxy, verifyAllComplete, verifySet, writeLiveStoreDb, type ProxyAction } from "./backup-fixtures.ts";
import { useTestBucket } from "./bucket.ts";

/**
 * Faults between the job and the Worker (500s, connections dropped before or after the Worker acted) end
 * in a complete backup whose every hash matches, or in a clear failure with no manifest. A job killed at
 * random points never leaves a complete-looking set, and the next run succeeds.
 */

const t = useTestBucket("backup-faults-");
let db: string;

beforeEach(async () => {
  db = join(t.dir, "eventlog@6.db");
  writeLiveStoreDb(db, { events: 2000 });
  addRandomBlob(db, 12 * 1024 * 1024);
});

const PART = 5 * 1024 * 1024;

async function withProxy<T>(decide: (method: string, url: string, n: number) => ProxyAction, fn: (store: HttpStore) => Promise<T>, attempts = 4): Promise<T> {
  const proxy = await startFaultProxy(t.bucket.url, (req, n) => decide(req.method ?? "", decodeURIComponent(req.url ?? ""), n));
  try {
    return await fn(new HttpStore({ url: proxy.url, token: t.bucket.token, attempts, backoffMs: 5 }));
  } finally {
    await proxy.close();
  }
}

function completeIds(keys: string[]): string[] {
  return catalogFromKeys(keys)
    .full.filter((s) => s.complete)
    .map((s) => s.id);
}

describe("faults between job and Worker", () => {
  it("recovers from a 500 and a dropped connection on every first attempt of every part", async () => {
    const seen = new Map<string, number>();
    const r = await withProxy(
      (method, url) => {
        if (!url.includes("partNumber=")) return "pass";
        const k = `${method} ${url}`;
        seen.set(k, (seen.get(k) ?? 0) + 1);
        return seen.get(k) === 1 ? (url.includes("partNumber=1") ? "drop" : "500") : "pass";
      },
      (store) => backup({ store, databases: [{ path: db }], kind: "full", tmpDir: join(t.dir, "tmp"), partBytes: PART }),
    );
    expect(seen.size).toBeGreaterThanOrEqual(3);
    await verifySet(t.bucket.store, "full", r.id);
    await verifySet(t.bucket.store, "daily", r.promoted!.day);
  });

  it("a response lost after the Worker stored the manifest or completed the upload still ends complete", async () => {
    const dropped = new Set<string>();
    const r = await withProxy(
      (method, url) => {
        const target = (method === "PUT" && url.endsWith("metadata.json")) || (method === "POST" && (url.includes("uploadId=") || url.includes("/api/chain?expect=")));
        if (!target || dropped.has(`${method} ${url}`)) return "pass";
        dropped.add(`${method} ${url}`);
        return "drop-after-upstream";
      },
      (store) => backup({ store, databases: [{ path: db }], kind: "full", tmpDir: join(t.dir, "tmp"), partBytes: PART }),
    );
    expect([...dropped].filter((k) => k.endsWith("metadata.json")).length).toBe(1); // the daily manifest
    expect([...dropped].filter((k) => k.includes("/api/chain?expect=")).length).toBe(1); // the commit: its retry meets its own success
    expect([...dropped].filter((k) => k.includes("uploadId=")).length).toBe(2); // both completions
    expect((await t.bucket.store.chain()).head?.tail.map((e) => e.id)).toEqual([r.id]);
    await verifySet(t.bucket.store, "full", r.id);
    await verifySet(t.bucket.store, "daily", r.promoted!.day);
  });

  it("every JSON answer cut mid-body once (chain, commit, listing, start, part, completion, PUT, manifest) is retried: the backup completes and restores", async () => {
    const cut = new Set<string>();
    const kinds = (method: string, url: string) =>
      method === "GET" && url.endsWith("/api/chain")
        ? "chain"
        : method === "POST" && url.includes("/api/chain?expect=")
          ? "commit"
          : method === "GET" && /\/api\/backups\?/.test(url)
            ? "list"
            : method === "GET" && url.endsWith("metadata.json")
              ? "manifest"
              : method === "POST" && url.endsWith("?uploads")
                ? "start"
                : method === "PUT" && url.includes("partNumber=")
                  ? "part"
                  : method === "POST" && url.includes("uploadId=")
                    ? "complete"
                    : method === "PUT"
                      ? "put"
                      : undefined;
    const truncateFirst = (method: string, url: string): ProxyAction => {
      const kind = kinds(method, url);
      if (kind === undefined || cut.has(kind)) return "pass";
      cut.add(kind);
      return "truncate";
    };
    const r = await withProxy(truncateFirst, (store) => backup({ store, databases: [{ path: db }], kind: "full", tmpDir: join(t.dir, "tmp"), partBytes: PART }));
    await verifySet(t.bucket.store, "full", r.id);
    await verifySet(t.bucket.store, "daily", r.promoted!.day);
    // The restore reads the chain and the manifest through the same cuts.
    cut.delete("chain");
    cut.delete("manifest");
    const restored = await withProxy(truncateFirst, (store) => restore({ store, to: join(t.dir, "restored.db") }));
    expect(restored.full.id).toBe(r.id);
    expect([...cut].sort()).toEqual(["chain", "commit", "complete", "list", "manifest", "part", "put", "start"]);
  });

  it("a Worker that keeps failing a part ends in exit 5 with no manifest and the upload aborted", async () => {
    const err = await withProxy(
      (method, url) => (method === "PUT" && url.includes("partNumber=2") ? "500" : "pass"),
      (store) => backup({ store, databases: [{ path: db }], kind: "full", tmpDir: join(t.dir, "tmp"), partBytes: PART }).catch((e: unknown) => e),
    );
    expect(err).toBeInstanceOf(JobError);
    expect((err as JobError).exitCode).toBe(EXIT.unreachable);
    expect((err as Error).message).toMatch(/upload part 2 of/);
    const keys = (await t.bucket.store.listAll("backups/")).map((o) => o.key);
    expect(keys.filter((k) => k.endsWith("metadata.json"))).toEqual([]);
    expect(readdirSync(join(t.dir, "tmp")).filter((f) => f.startsWith("r2backup-work-"))).toEqual([]);
  });

  it("random faults on any request: every run is complete and whole, or failed with no manifest", async () => {
    let seed = 12345;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const actions: ProxyAction[] = ["500", "drop", "drop-after-upstream"];
    const outcomes: string[] = [];
    for (let run = 0; run < 6; run++) {
      const before = completeIds((await t.bucket.store.listAll("backups/full/")).map((o) => o.key));
      const result = await withProxy(
        () => (random() < 0.2 ? actions[Math.floor(random() * actions.length)]! : "pass"),
        (store) => backup({ store, databases: [{ path: db }], kind: run % 2 ? "incremental" : "full", tmpDir: join(t.dir, "tmp"), partBytes: PART }).catch((e: unknown) => e),
        // Every third run gets no retries, so faults there end in failures; the others mostly recover.
        run % 3 === 2 ? 1 : 4,
      );
      const after = completeIds((await t.bucket.store.listAll("backups/full/")).map((o) => o.key));
      if (result instanceof Error) {
        expect(result).toBeInstanceOf(JobError);
        expect(result.message).toMatch(/'backups\/|Worker/);
        expect(after).toEqual(before);
        outcomes.push(`failed(${(result as JobError).kind})`);
      } else {
        outcomes.push((result as BackupResult).kind);
      }
      await verifyAllComplete(t.bucket.store);
    }
    // The seed gives both outcomes, so both branches above were exercised.
    expect(outcomes.some((o) => o.startsWith("failed"))).toBe(true);
    expect(outcomes.some((o) => !o.startsWith("failed"))).toBe(true);
  });
});

describe("killed at random points", () => {
  it("never leaves a complete-looking set without all its files, and the next run succeeds", async () => {
    const env = { R2_WORKER_URL: t.bucket.url, SERVER_BYPASS_TOKEN: t.bucket.token };
    const tmp = join(t.dir, "tmp");
    const args = ["run", "--db", db, "--kind", "auto", "--tmp-dir", tmp, "--part-mib", "5"];
    const delays = [150, 400, 700, 1000, 1400, 2000, 2600].map((d) => d + Math.floor(Math.random() * 200));
    const killedAt: string[] = [];
    for (const delay of delays) {
      const run = runCli(args, env);
      const timer = setTimeout(() => run.child.kill("SIGKILL"), delay);
      const out = await run.done;
      clearTimeout(timer);
      killedAt.push(out.signal === "SIGKILL" ? `killed@${delay}` : `exit ${out.code}`);
      if (out.signal !== "SIGKILL") expect(out.code, out.stderr).toBe(0);
      await verifyAllComplete(t.bucket.store);
    }
    expect(killedAt.some((k) => k.startsWith("killed"))).toBe(true);
    const final = runCli(args, env);
    const out = await final.done;
    expect(out.code, out.stderr).toBe(0);
    const all = await verifyAllComplete(t.bucket.store);
    expect(all.full.length + all.incremental.length).toBeGreaterThan(0);
    // Work directories of killed runs are cleaned by the next run.
    expect(readdirSync(tmp).filter((f) => f.startsWith("r2backup-work-"))).toEqual([]);
  });
});

function canMountTmpfs(): boolean {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return false;
  const probe = join(process.env.TMPDIR ?? "/tmp", `r2backup-mount-probe-${process.pid}`);
  try {
    mkdirSync(probe, { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe], { stdio: "ignore" });
    execFileSync("umount", [probe], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("a full temporary disk", () => {
  // A real ENOSPC needs a small filesystem: a tmpfs, which needs root. Elsewhere this case is skipped.
  it.skipIf(!canMountTmpfs())("exits 6, names --tmp-dir, and leaves no manifest", async () => {
    const small = join(t.dir, "small");
    mkdirSync(small);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", small]);
    try {
      const run = runCli(["run", "--db", db, "--kind", "full", "--tmp-dir", small], { R2_WORKER_URL: t.bucket.url, SERVER_BYPASS_TOKEN: t.bucket.token });
      const out = await run.done;
      expect(out.code, out.stderr).toBe(EXIT.diskFull);
      expect(out.stderr).toMatch(/temporary disk is full/);
      expect(out.stderr).toMatch(/--tmp-dir/);
      expect((await t.bucket.store.listAll("backups/")).filter((o) => o.key.endsWith("metadata.json"))).toEqual([]);
    } finally {
      execFileSync("umount", [small]);
    }
  });
});
