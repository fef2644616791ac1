import { mkdir, rm, stat } from "node:fs/promises";
import { CLI_BIN } from "./installed.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fileKey, objectPath } from "../core/index.ts";
import { backup } from "../job/backup.ts";
import { HttpStore } from "../job/store/http-store.ts";
import { cachedDemoDatabase } from "./livestore-db.ts";
import { nodeFlagsOf, runMeasured, succeeded, type Measured } from "./measure.ts";
import { median, round } from "./report.ts";

/**
 * Restore speed and memory (issue 6): `r2backup restore` of a full backup against the plain-tools baseline
 * `curl | zstd -d` then `sqlite3 <file> 'PRAGMA quick_check'`, both from the same Worker in the same run,
 * alternating, median of `runs`. Targets: restore ≤ 1.2× the baseline, restore peak RSS ≤ 200 MiB (VmHWM of
 * the CLI process). The restore does more than the baseline: sha256 of stored and restored bytes, the
 * manifest's plan, `PRAGMA integrity_check` (or quick_check with `check: "quick"`), fsync and rename.
 */
export interface BenchRestoreOptions {
  /** The database to back up and restore (created elsewhere, e.g. by createDemoDatabase). */
  dbPath: string;
  workerUrl: string;
  token: string;
  /** Scratch space for the restored files (default bench/tmp/restore-<pid>). */
  workDir?: string;
  /** Measurements of each side (default 3). */
  runs?: number;
  /** The restore's check before the rename (default integrity, as `r2backup restore` does). */
  check?: "integrity" | "quick";
  /** Also measure `--integrity quick` (default: when `check` is integrity). */
  alsoQuick?: boolean;
}

const BIN = CLI_BIN;

/** Backs up `dbPath` (one full backup), then measures restore against the baseline. */
export async function benchRestore(options: BenchRestoreOptions): Promise<Record<string, unknown>> {
  const runs = options.runs ?? 3;
  const check = options.check ?? "integrity";
  const workDir = options.workDir ?? fileURLToPath(new URL(`./tmp/restore-${process.pid}/`, import.meta.url));
  await mkdir(workDir, { recursive: true });
  const store = new HttpStore({ url: options.workerUrl, token: options.token });
  try {
    const sizeBytes = (await stat(options.dbPath)).size;
    const b = await backup({ store, databases: [{ path: options.dbPath, source: "bench" }], kind: "full", tmpDir: join(workDir, "backup"), lockFile: false, promote: false });
    const db = b.manifest.files.find((f) => f.role === "database")!;
    const key = fileKey("full", b.id, db.name);
    const out = join(workDir, "restored.db");
    const env = { ...process.env, R2_WORKER_URL: options.workerUrl, SERVER_BYPASS_TOKEN: options.token, OBJECT_URL: `${options.workerUrl}${objectPath(key)}`, OUT: out };
    const baselineScript = 'curl -sSf -H "Authorization: Bearer $SERVER_BYPASS_TOKEN" "$OBJECT_URL" | zstd -d -q -f -o "$OUT" && sqlite3 "$OUT" "PRAGMA quick_check"';

    const baseline: Measured[] = [];
    const restored: Measured[] = [];
    const restoredQuick: Measured[] = [];
    const clean = async () => {
      for (const s of ["", "-wal", "-shm", "-journal"]) await rm(`${out}${s}`, { force: true });
    };
    const sides = {
      baseline: async () => {
        const m = await runMeasured("sh", ["-c", baselineScript], { env, tree: true });
        succeeded("restore", "the baseline", m, 800);
        if (m.stdout.trim() !== "ok") throw new Error(`bench restore: the baseline's quick_check said ${m.stdout.trim()}`);
        baseline.push(m);
      },
      restore: async () => {
        const m = await runMeasured(
          process.execPath,
          [...nodeFlagsOf(BIN), BIN, "restore", "--to", out, "--at", b.id, "--integrity", check === "integrity" ? "full" : "quick", "--json"],
          { env },
        );
        succeeded("restore", "r2backup restore", m, 800);
        restored.push(m);
      },
      restoreQuick: async () => {
        const m = await runMeasured(process.execPath, [...nodeFlagsOf(BIN), BIN, "restore", "--to", out, "--at", b.id, "--integrity", "quick", "--json"], { env });
        succeeded("restore", "r2backup restore --integrity quick", m, 800);
        restoredQuick.push(m);
      },
    };
    const names = (options.alsoQuick ?? check !== "quick") ? (["baseline", "restore", "restoreQuick"] as const) : (["baseline", "restore"] as const);
    for (let i = 0; i < runs; i++) {
      // Rotate which side goes first, so none always meets a warm or a cold page cache.
      for (let j = 0; j < names.length; j++) {
        await clean();
        await sides[names[(i + j) % names.length]!]();
      }
    }
    await clean();
    const baseMs = median(baseline.map((m) => m.ms));
    const row = (ms: Measured[], c: string) => ({
      command: `r2backup restore --to f --at ${b.id} --integrity ${c === "integrity" ? "full" : "quick"}`,
      medianMs: Math.round(median(ms.map((m) => m.ms))),
      runsMs: ms.map((m) => Math.round(m.ms)),
      peakRssMiB: round(Math.max(...ms.map((m) => m.peakRssMiB))),
      ratio: round(median(ms.map((m) => m.ms)) / baseMs),
    });
    const main = row(restored, check);
    return {
      name: "restore",
      sizeBytes,
      storedBytes: db.size,
      runs,
      backupMs: Math.round(b.durationMs),
      baseline: {
        command: "curl | zstd -d -o f && sqlite3 f 'PRAGMA quick_check'",
        medianMs: Math.round(baseMs),
        runsMs: baseline.map((m) => Math.round(m.ms)),
        peakRssMiB: round(Math.max(...baseline.map((m) => m.peakRssMiB))),
      },
      restore: main,
      ...(restoredQuick.length ? { restoreQuick: row(restoredQuick, "quick") } : {}),
      ratio: main.ratio,
      target: "restore <= 1.2x baseline, peak RSS <= 200 MiB",
      pass: main.ratio <= 1.2 && main.peakRssMiB <= 200,
    };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

// Alone: `npm exec -- node bench/restore.ts [sizeMiB]` (default 1024) starts a local Worker, builds (or
// reuses) a LiveStore-shaped database of that size under bench/tmp/, and prints the result as JSON.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { startLocalWorker } = await import("../worker/local.ts");
  const sizeMiB = Number(process.argv[2] ?? process.env.BENCH_RESTORE_MIB ?? 1024);
  const tmp = fileURLToPath(new URL("./tmp/", import.meta.url));
  await mkdir(tmp, { recursive: true });
  const dbPath = await cachedDemoDatabase(sizeMiB * 1024 * 1024, tmp);
  const persistDir = join(tmp, `restore-worker-${process.pid}`);
  const worker = await startLocalWorker({ persistDir });
  try {
    const result = await benchRestore({ dbPath, workerUrl: worker.url, token: worker.bindings.SERVER_BYPASS_TOKEN! });
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await worker.stop();
    await rm(persistDir, { recursive: true, force: true });
  }
}
