import { spawn } from "node:child_process";
import { CLI_BIN } from "./installed.ts";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BINDINGS } from "../core/index.ts";
import { partSizeFor } from "../job/upload.ts";
import { LOCAL_BUCKETS, type LocalWorker } from "../worker/local.ts";
import { nodeFlagsOf, runMeasured, samplePeakRss, succeeded, type Measured } from "./measure.ts";
import { median, round } from "./report.ts";
import { drain, fetchBody, timed, uploadThroughWorker, workerdPid } from "./worker.ts";

/**
 * r2backup against Litestream 0.3.13 (issue 16), side by side in one run on copies of the same database:
 * - full backup: `r2backup run --kind full --no-promote` into the local Worker (Miniflare, R2 on disk) against
 *   `litestream replicate` to a local `file://` replica and to the same Miniflare's R2 over its S3 endpoint
 *   (`/cdn-cgi/local/r2/s3`, SigV4-signed, path-style), timed from the start until the replica holds its first
 *   snapshot and WAL segment (the file replica polled every 20 ms; the S3 one from Litestream's log, since
 *   listing the bucket would load the workerd being measured; Litestream's CPU and peak RSS are read from /proc then);
 * - restore with its check: `r2backup restore --integrity full` (integrity_check before the replace) against
 *   `litestream restore -o` from either replica, then `sqlite3 'PRAGMA integrity_check'`;
 * - bytes stored: the full backup's object against the replica directory and the replica's objects;
 * - the CPU of the workerd process (the Worker and the simulated R2 in one) during each side, beside the client's;
 * - like for like on local disk: `r2backup run --dir` into a directory laid out as the bucket (job/store/dir-store.ts)
 *   and `r2backup restore --dir` from it, against Litestream's `file://` replica (the Worker and the simulated R2
 *   out of the way on both sides);
 * - the storage floor: the local R2 alone accepting as many bytes as r2backup stored (a multipart upload through
 *   the Worker in the job's part size, 2 parts in flight, from a buffer in memory) and serving them back (a GET drained).
 * Sides rotate which goes first; medians of `runs`.
 */
export interface BenchLitestreamOptions {
  dbPath: string;
  /** A local Worker started with `s3Credentials: S3_KEYS` (the only workerd child of this process). */
  worker: LocalWorker;
  runs: number;
  scratch: string;
}

/** The keys Litestream signs its requests to the local R2's S3 endpoint with. */
export const S3_KEYS = { accessKeyId: "bench", secretAccessKey: "bench-secret" };

/** One side's figures: medians of the runs (and every run's wall time). */
export interface LitestreamSide {
  fullSeconds: number;
  fullCpuSeconds: number;
  /** CPU of workerd (Worker and simulated R2) during the full backup. */
  fullWorkerdCpuSeconds: number;
  fullPeakRssMiB: number;
  storedBytes: number;
  restoreSeconds: number;
  restoreCpuSeconds: number;
  restoreWorkerdCpuSeconds: number;
  restorePeakRssMiB: number;
  runs: { fullSeconds: number[]; restoreSeconds: number[] };
}

export interface LitestreamBench {
  bench: "litestream";
  litestreamVersion: string;
  sizeBytes: number;
  runs: number;
  r2backup: LitestreamSide;
  /** r2backup to a local directory (`--dir`): the storage Litestream's file replica has. */
  r2backupDir: LitestreamSide;
  /** Litestream to a file replica. */
  litestream: LitestreamSide;
  /** Litestream to the local R2 over Miniflare's S3 endpoint. */
  litestreamS3: LitestreamSide;
  /** The local R2 alone taking and serving r2backup's stored bytes through the Worker. */
  floor: { bytes: number; partBytes: number; uploadSeconds: number; uploadWorkerdCpuSeconds: number; downloadSeconds: number; downloadWorkerdCpuSeconds: number };
  /** r2backup over Litestream to the file replica (the targets). */
  ratios: { fullWall: number; fullCpu: number; storedBytes: number; restoreWall: number };
  /** r2backup over Litestream to the local R2. */
  ratiosS3: { fullWall: number; fullCpu: number; storedBytes: number; restoreWall: number };
  /** r2backup to a directory over Litestream to its file replica: both on local disk. */
  ratiosDir: { fullWall: number; fullCpu: number; storedBytes: number; restoreWall: number };
}

const HERE = fileURLToPath(new URL("./", import.meta.url));
const BIN = CLI_BIN;
export const LITESTREAM = join(HERE, "../node_modules/@flydotio/litestream-linux-x64/litestream");

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  return total;
}

async function hasFile(dir: string, suffix: string): Promise<boolean> {
  try {
    return (await readdir(dir, { recursive: true })).some((f) => String(f).endsWith(suffix));
  } catch {
    return false;
  }
}

async function procCpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/** Runs `step` and returns its value with the CPU seconds workerd (`pid`) spent meanwhile. */
async function withWorkerdCpu<T>(pid: number, step: () => Promise<T>): Promise<T & { workerdCpuSeconds: number }> {
  const before = await procCpuSeconds(pid);
  const value = await step();
  return { ...value, workerdCpuSeconds: round((await procCpuSeconds(pid)) - before) };
}

/** A Litestream replica: its entry in litestream.yml, when it is complete, and what it stores. */
interface Replica {
  /** The lines of its entry under `replicas:` (after the `- `). */
  yaml: string[];
  /** Whether it holds a snapshot and a WAL segment (`log`: Litestream's output so far). */
  ready(log: string): Promise<boolean>;
  bytes(): Promise<number>;
}

function fileReplica(dir: string): Replica {
  return {
    yaml: ["type: file", `path: ${dir}`],
    ready: async () => (await hasFile(dir, ".snapshot.lz4")) && (await hasFile(dir, ".wal.lz4")),
    bytes: () => dirBytes(dir),
  };
}

function s3Replica(worker: LocalWorker, path: string): Replica {
  if (worker.s3Url === undefined) throw new Error("bench litestream: the local Worker has no S3 endpoint (start it with s3Credentials)");
  const bucket = LOCAL_BUCKETS.primary;
  return {
    yaml: [
      "type: s3",
      `endpoint: ${worker.s3Url}`,
      `bucket: ${bucket}`,
      `path: ${path}`,
      "region: auto",
      "force-path-style: true",
      `access-key-id: ${S3_KEYS.accessKeyId}`,
      `secret-access-key: ${S3_KEYS.secretAccessKey}`,
    ],
    // Litestream logs each upload once R2 has taken it (listing the bucket would cost the workerd measured).
    ready: async (log) => log.includes('msg="snapshot written"') && log.includes('msg="wal segment written"'),
    bytes: async () => {
      const r2 = await worker.mf.getR2Bucket(BINDINGS.bucket);
      let total = 0;
      let cursor: string | undefined;
      do {
        const page = await r2.list({ prefix: `${path}/`, ...(cursor ? { cursor } : {}) });
        for (const o of page.objects) total += o.size;
        cursor = page.truncated ? page.cursor : undefined;
      } while (cursor);
      return total;
    },
  };
}

async function writeConfig(config: string, db: string, replica: Replica): Promise<void> {
  await writeFile(config, `dbs:\n  - path: ${db}\n    replicas:\n      - ${replica.yaml.join("\n        ")}\n`);
}

/** `litestream replicate` until the replica holds a snapshot and a WAL segment: wall, CPU, peak RSS, bytes, workerd's CPU. */
async function litestreamFull(
  db: string,
  replica: Replica,
  config: string,
  workerd: number,
): Promise<{ ms: number; cpuSeconds: number; peakRssMiB: number; storedBytes: number; workerdCpuSeconds: number }> {
  await writeConfig(config, db, replica);
  const workerdBefore = await procCpuSeconds(workerd);
  const start = performance.now();
  const child = spawn(LITESTREAM, ["replicate", "-config", config], { stdio: ["ignore", "pipe", "pipe"] });
  let log = ""; // Litestream 0.3.13 logs to stdout
  for (const stream of [child.stdout, child.stderr]) stream.on("data", (d: Buffer) => (log += d.toString()));
  const sampler = samplePeakRss(child.pid!, { everyMs: 20 });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`bench litestream: replicate exited ${child.exitCode}: ${log.slice(-1000)}`);
      if (await replica.ready(log)) break;
      if (log.includes("level=ERROR")) throw new Error(`bench litestream: replicate failed: ${log.slice(-1500)}`);
      if (performance.now() - start > 600_000) throw new Error("bench litestream: no snapshot after 10 minutes");
      await new Promise((r) => setTimeout(r, 20));
    }
    const ms = performance.now() - start;
    const cpuSeconds = await procCpuSeconds(child.pid!);
    const workerdCpuSeconds = round((await procCpuSeconds(workerd)) - workerdBefore);
    const peakRssMiB = await sampler.stop();
    return { ms, cpuSeconds, peakRssMiB, storedBytes: await replica.bytes(), workerdCpuSeconds };
  } finally {
    child.kill("SIGTERM");
    if (child.exitCode === null) await new Promise((r) => child.once("close", r));
  }
}

/** Runs the side-by-side and returns its results. */
export async function benchLitestream(options: BenchLitestreamOptions): Promise<LitestreamBench> {
  const { runs, scratch, worker } = options;
  await mkdir(scratch, { recursive: true });
  const env = { ...process.env, R2_WORKER_URL: worker.url, SERVER_BYPASS_TOKEN: worker.bindings[BINDINGS.serverToken]! };
  const workerd = await workerdPid();
  const sizeBytes = (await stat(options.dbPath)).size;
  // r2backup reads its database without changing it; Litestream takes over a copy of its own each round.
  const ours = join(scratch, "r2backup.db");
  await copyFile(options.dbPath, ours);
  type Run = Measured & { workerdCpuSeconds: number };
  const full: Run[] = [];
  const ids: string[] = [];
  const stored: number[] = [];
  const dirFull: Run[] = [];
  const dirIds: string[] = [];
  const dirStored: number[] = [];
  const dirRestore: Run[] = [];
  const storeDir = join(scratch, "store");
  const ls: Awaited<ReturnType<typeof litestreamFull>>[] = [];
  const lsS3: Awaited<ReturnType<typeof litestreamFull>>[] = [];
  const restore: Run[] = [];
  const lsRestore: Run[] = [];
  const lsS3Restore: Run[] = [];
  const lsDb = join(scratch, "litestream.db");
  const replicaDir = join(scratch, "replica");
  const fileConfig = join(scratch, "litestream-file.yml");
  const s3Config = join(scratch, "litestream-s3.yml");
  const out = join(scratch, "restored.db");
  const clean = async (p: string) => {
    for (const s of ["", "-wal", "-shm", "-journal", "-litestream"]) await rm(`${p}${s}`, { recursive: true, force: true });
  };
  const lsRun = async (replica: Replica, config: string) => {
    await clean(lsDb);
    await copyFile(options.dbPath, lsDb);
    return litestreamFull(lsDb, replica, config, workerd);
  };
  const lsRestoreRun = async (what: string, from: string) => {
    await clean(out);
    const m = succeeded(
      "litestream",
      `litestream restore (${what}) + integrity_check`,
      await withWorkerdCpu(workerd, () =>
        runMeasured("sh", ["-c", `"${LITESTREAM}" restore ${from} >&2 && sqlite3 "$OUT" "PRAGMA integrity_check"`], { env: { ...env, OUT: out }, cpu: true, tree: true }),
      ),
    );
    if (m.stdout.trim() !== "ok") throw new Error(`bench litestream: integrity_check of Litestream's restore (${what}) said ${m.stdout.trim().slice(0, 200)}`);
    return m;
  };
  const floorUp: { ms: number; workerdCpuSeconds: number }[] = [];
  const floorDown: { ms: number; workerdCpuSeconds: number }[] = [];
  const partBytes = partSizeFor(sizeBytes);
  const part = randomBytes(partBytes);
  const rotate = <T>(xs: T[], i: number) => xs.map((_, j) => xs[(i + j) % xs.length]!);
  for (let i = 0; i < runs; i++) {
    const s3Path = `litestream/run-${i}`;
    const sides = [
      async () => {
        const m = succeeded(
          "litestream",
          "r2backup run",
          await withWorkerdCpu(workerd, () =>
            runMeasured(
              process.execPath,
              [...nodeFlagsOf(BIN), BIN, "run", "--db", ours, "--source", "bench", "--kind", "full", "--tmp-dir", join(scratch, "tmp"), "--no-promote", "--json"],
              { env, cpu: true },
            ),
          ),
        );
        const result = JSON.parse(m.stdout) as { id: string; storedBytes: number };
        ids.push(result.id);
        stored.push(result.storedBytes);
        full.push(m);
      },
      async () => {
        await rm(storeDir, { recursive: true, force: true });
        await mkdir(storeDir);
        const m = succeeded(
          "litestream",
          "r2backup run --dir",
          await withWorkerdCpu(workerd, () =>
            runMeasured(
              process.execPath,
              [
                ...nodeFlagsOf(BIN),
                BIN,
                "run",
                "--dir",
                storeDir,
                "--db",
                ours,
                "--source",
                "bench",
                "--kind",
                "full",
                "--tmp-dir",
                join(scratch, "tmp"),
                "--no-promote",
                "--json",
              ],
              { env, cpu: true },
            ),
          ),
        );
        const result = JSON.parse(m.stdout) as { id: string; storedBytes: number };
        dirIds.push(result.id);
        dirStored.push(result.storedBytes);
        dirFull.push(m);
      },
      async () => {
        await rm(replicaDir, { recursive: true, force: true });
        ls.push(await lsRun(fileReplica(replicaDir), fileConfig));
      },
      async () => {
        lsS3.push(await lsRun(s3Replica(worker, s3Path), s3Config));
      },
    ];
    for (const side of rotate(sides, i)) await side();
    // The floor: as many bytes as r2backup stored, through the Worker into the local R2 and back, nothing else running.
    const key = `backups/full/20250101T0000${String(i % 60).padStart(2, "0")}Z/floor.db.zst`;
    const bytes = stored.at(-1)!;
    floorUp.push(await withWorkerdCpu(workerd, () => timed(() => uploadThroughWorker(worker, key, bytes, part))));
    const down = await withWorkerdCpu(workerd, () => timed(() => drain(fetchBody(worker, key))));
    if (down.value !== bytes) throw new Error(`bench litestream: the floor read back ${down.value} bytes of ${bytes}`);
    floorDown.push(down);
    const restores = [
      async () => {
        await clean(out);
        restore.push(
          succeeded(
            "litestream",
            "r2backup restore",
            await withWorkerdCpu(workerd, () =>
              runMeasured(process.execPath, [...nodeFlagsOf(BIN), BIN, "restore", "--to", out, "--at", ids.at(-1)!, "--integrity", "full", "--json"], { env, cpu: true }),
            ),
          ),
        );
      },
      async () => {
        await clean(out);
        dirRestore.push(
          succeeded(
            "litestream",
            "r2backup restore --dir",
            await withWorkerdCpu(workerd, () =>
              runMeasured(process.execPath, [...nodeFlagsOf(BIN), BIN, "restore", "--dir", storeDir, "--to", out, "--at", dirIds.at(-1)!, "--integrity", "full", "--json"], {
                env,
                cpu: true,
              }),
            ),
          ),
        );
      },
      async () => lsRestore.push(await lsRestoreRun("file", `-o "$OUT" "file://${replicaDir}"`)),
      async () => lsS3Restore.push(await lsRestoreRun("local R2 over S3", `-config "${s3Config}" -o "$OUT" "${lsDb}"`)),
    ];
    for (const side of rotate(restores, i)) await side();
  }
  await clean(out);
  await clean(lsDb);
  await clean(ours);
  await rm(replicaDir, { recursive: true, force: true });
  await rm(storeDir, { recursive: true, force: true });
  const med = (xs: number[]) => round(median(xs), 2);
  const side = (fulls: (Omit<Measured, "code" | "stdout" | "stderr"> & { workerdCpuSeconds: number })[], storedBytes: number[], restores: Run[]): LitestreamSide => ({
    fullSeconds: med(fulls.map((m) => m.ms / 1000)),
    fullCpuSeconds: med(fulls.map((m) => m.cpuSeconds ?? Number.NaN)),
    fullWorkerdCpuSeconds: med(fulls.map((m) => m.workerdCpuSeconds)),
    fullPeakRssMiB: round(Math.max(...fulls.map((m) => m.peakRssMiB)), 1),
    storedBytes: median(storedBytes),
    restoreSeconds: med(restores.map((m) => m.ms / 1000)),
    restoreCpuSeconds: med(restores.map((m) => m.cpuSeconds ?? Number.NaN)),
    restoreWorkerdCpuSeconds: med(restores.map((m) => m.workerdCpuSeconds)),
    restorePeakRssMiB: round(Math.max(...restores.map((m) => m.peakRssMiB)), 1),
    runs: { fullSeconds: fulls.map((m) => round(m.ms / 1000, 2)), restoreSeconds: restores.map((m) => round(m.ms / 1000, 2)) },
  });
  const r2 = side(full, stored, restore);
  const r2Dir = side(dirFull, dirStored, dirRestore);
  const litestream = side(
    ls,
    ls.map((m) => m.storedBytes),
    lsRestore,
  );
  const litestreamS3 = side(
    lsS3,
    lsS3.map((m) => m.storedBytes),
    lsS3Restore,
  );
  const version = await new Promise<string>((resolve) => {
    const c = spawn(LITESTREAM, ["version"]);
    let v = "";
    c.stdout.on("data", (d: Buffer) => (v += d.toString()));
    c.on("close", () => resolve(v.trim()));
  });
  const ratios = (b: LitestreamSide, a = r2) => ({
    fullWall: round(a.fullSeconds / b.fullSeconds),
    fullCpu: round(a.fullCpuSeconds / b.fullCpuSeconds),
    storedBytes: round(a.storedBytes / b.storedBytes),
    restoreWall: round(a.restoreSeconds / b.restoreSeconds),
  });
  return {
    bench: "litestream",
    litestreamVersion: version,
    sizeBytes,
    runs,
    r2backup: r2,
    r2backupDir: r2Dir,
    litestream,
    litestreamS3,
    floor: {
      bytes: median(stored),
      partBytes,
      uploadSeconds: med(floorUp.map((m) => m.ms / 1000)),
      uploadWorkerdCpuSeconds: med(floorUp.map((m) => m.workerdCpuSeconds)),
      downloadSeconds: med(floorDown.map((m) => m.ms / 1000)),
      downloadWorkerdCpuSeconds: med(floorDown.map((m) => m.workerdCpuSeconds)),
    },
    ratios: ratios(litestream),
    ratiosS3: ratios(litestreamS3),
    ratiosDir: ratios(litestream, r2Dir),
  };
}
