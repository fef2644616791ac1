import { spawn } from "node:child_process";
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { nodeFlagsOf, runMeasured, samplePeakRss, succeeded, type Measured } from "./measure.ts";
import { median, round } from "./report.ts";

/**
 * r2backup against Litestream 0.3.13 (issue 16), side by side in one run on copies of the same database:
 * - full backup: `r2backup run --kind full --no-promote` into the local Worker (Miniflare, R2 on disk) against
 *   `litestream replicate` to a local `file://` replica, timed from the start until the replica holds its first
 *   snapshot and WAL segment (polled every 20 ms; Litestream's CPU and peak RSS are read from /proc then);
 * - restore with its check: `r2backup restore --integrity full` (integrity_check before the replace) against
 *   `litestream restore -o` then `sqlite3 'PRAGMA integrity_check'`;
 * - bytes stored: the full backup's object against the replica directory.
 * Sides alternate which goes first; medians of `runs`. No local S3 server is used (none on npm or Debian that
 * works offline was tried within the time box).
 */
export interface BenchLitestreamOptions {
  dbPath: string;
  workerUrl: string;
  token: string;
  runs: number;
  scratch: string;
}

const HERE = fileURLToPath(new URL("./", import.meta.url));
const BIN = join(HERE, "../job/bin.js");
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

/** `litestream replicate` until the replica holds a snapshot and a WAL segment: wall, CPU, peak RSS, bytes. */
async function litestreamFull(db: string, replica: string, config: string): Promise<{ ms: number; cpuSeconds: number; peakRssMiB: number; storedBytes: number }> {
  await writeFile(config, `dbs:\n  - path: ${db}\n    replicas:\n      - type: file\n        path: ${replica}\n`);
  const start = performance.now();
  const child = spawn(LITESTREAM, ["replicate", "-config", config], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const sampler = samplePeakRss(child.pid!, { everyMs: 20 });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`bench litestream: replicate exited ${child.exitCode}: ${stderr.slice(-1000)}`);
      if ((await hasFile(replica, ".snapshot.lz4")) && (await hasFile(replica, ".wal.lz4"))) break;
      if (performance.now() - start > 600_000) throw new Error("bench litestream: no snapshot after 10 minutes");
      await new Promise((r) => setTimeout(r, 20));
    }
    const ms = performance.now() - start;
    const cpuSeconds = await procCpuSeconds(child.pid!);
    const peakRssMiB = await sampler.stop();
    return { ms, cpuSeconds, peakRssMiB, storedBytes: await dirBytes(replica) };
  } finally {
    child.kill("SIGTERM");
    if (child.exitCode === null) await new Promise((r) => child.once("close", r));
  }
}

/** Runs the side-by-side and returns its results. */
export async function benchLitestream(options: BenchLitestreamOptions): Promise<Record<string, unknown>> {
  const { runs, scratch } = options;
  await mkdir(scratch, { recursive: true });
  const env = { ...process.env, R2_WORKER_URL: options.workerUrl, SERVER_BYPASS_TOKEN: options.token };
  const sizeBytes = (await stat(options.dbPath)).size;
  // r2backup reads its database without changing it; Litestream takes over a copy of its own each round.
  const ours = join(scratch, "r2backup.db");
  await copyFile(options.dbPath, ours);
  const full: Measured[] = [];
  const ids: string[] = [];
  const stored: number[] = [];
  const ls: Awaited<ReturnType<typeof litestreamFull>>[] = [];
  const restore: Measured[] = [];
  const lsRestore: Measured[] = [];
  const lsDb = join(scratch, "litestream.db");
  const replica = join(scratch, "replica");
  const out = join(scratch, "restored.db");
  const clean = async (p: string) => {
    for (const s of ["", "-wal", "-shm", "-journal", "-litestream"]) await rm(`${p}${s}`, { recursive: true, force: true });
  };
  for (let i = 0; i < runs; i++) {
    const sides = [
      async () => {
        const m = succeeded(
          "litestream",
          "r2backup run",
          await runMeasured(
            process.execPath,
            [...nodeFlagsOf(BIN), BIN, "run", "--db", ours, "--source", "bench", "--kind", "full", "--tmp-dir", join(scratch, "tmp"), "--no-promote", "--json"],
            {
              env,
              cpu: true,
            },
          ),
        );
        const result = JSON.parse(m.stdout) as { id: string; storedBytes: number };
        ids.push(result.id);
        stored.push(result.storedBytes);
        full.push(m);
      },
      async () => {
        await clean(lsDb);
        await rm(replica, { recursive: true, force: true });
        await copyFile(options.dbPath, lsDb);
        ls.push(await litestreamFull(lsDb, replica, join(scratch, "litestream.yml")));
      },
    ];
    for (const side of i % 2 === 0 ? sides : sides.reverse()) await side();
    const restores = [
      async () => {
        await clean(out);
        restore.push(
          succeeded(
            "litestream",
            "r2backup restore",
            await runMeasured(process.execPath, [...nodeFlagsOf(BIN), BIN, "restore", "--to", out, "--at", ids.at(-1)!, "--integrity", "full", "--json"], { env, cpu: true }),
          ),
        );
      },
      async () => {
        await clean(out);
        const m = succeeded(
          "litestream",
          "litestream restore + integrity_check",
          await runMeasured("sh", ["-c", `"${LITESTREAM}" restore -o "$OUT" "file://${replica}" && sqlite3 "$OUT" "PRAGMA integrity_check"`], {
            env: { ...env, OUT: out },
            cpu: true,
            tree: true,
          }),
        );
        if (m.stdout.trim() !== "ok") throw new Error(`bench litestream: integrity_check of Litestream's restore said ${m.stdout.trim().slice(0, 200)}`);
        lsRestore.push(m);
      },
    ];
    for (const side of i % 2 === 0 ? restores : restores.reverse()) await side();
  }
  await clean(out);
  await clean(lsDb);
  await clean(ours);
  await rm(replica, { recursive: true, force: true });
  const med = (xs: number[]) => round(median(xs), 2);
  const r2 = {
    fullSeconds: med(full.map((m) => m.ms / 1000)),
    fullCpuSeconds: med(full.map((m) => m.cpuSeconds ?? Number.NaN)),
    fullPeakRssMiB: round(Math.max(...full.map((m) => m.peakRssMiB)), 1),
    storedBytes: median(stored),
    restoreSeconds: med(restore.map((m) => m.ms / 1000)),
    restoreCpuSeconds: med(restore.map((m) => m.cpuSeconds ?? Number.NaN)),
    restorePeakRssMiB: round(Math.max(...restore.map((m) => m.peakRssMiB)), 1),
    runs: { fullSeconds: full.map((m) => round(m.ms / 1000, 2)), restoreSeconds: restore.map((m) => round(m.ms / 1000, 2)) },
  };
  const litestream = {
    fullSeconds: med(ls.map((m) => m.ms / 1000)),
    fullCpuSeconds: med(ls.map((m) => m.cpuSeconds)),
    fullPeakRssMiB: round(Math.max(...ls.map((m) => m.peakRssMiB)), 1),
    storedBytes: median(ls.map((m) => m.storedBytes)),
    restoreSeconds: med(lsRestore.map((m) => m.ms / 1000)),
    restoreCpuSeconds: med(lsRestore.map((m) => m.cpuSeconds ?? Number.NaN)),
    restorePeakRssMiB: round(Math.max(...lsRestore.map((m) => m.peakRssMiB)), 1),
    runs: { fullSeconds: ls.map((m) => round(m.ms / 1000, 2)), restoreSeconds: lsRestore.map((m) => round(m.ms / 1000, 2)) },
  };
  const version = await new Promise<string>((resolve) => {
    const c = spawn(LITESTREAM, ["version"]);
    let v = "";
    c.stdout.on("data", (d: Buffer) => (v += d.toString()));
    c.on("close", () => resolve(v.trim()));
  });
  return {
    bench: "litestream",
    litestreamVersion: version,
    sizeBytes,
    runs,
    r2backup: r2,
    litestream,
    ratios: {
      fullWall: round(r2.fullSeconds / litestream.fullSeconds),
      fullCpu: round(r2.fullCpuSeconds / litestream.fullCpuSeconds),
      storedBytes: round(r2.storedBytes / litestream.storedBytes),
      restoreWall: round(r2.restoreSeconds / litestream.restoreSeconds),
    },
  };
}
