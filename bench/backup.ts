import { copyFile, mkdir, rm, stat } from "node:fs/promises";
import { CLI_BIN } from "./installed.ts";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { appendDemoEvents, cachedDemoDatabase } from "./livestore-db.ts";
import { nodeFlagsOf, runMeasured, succeeded, type Measured } from "./measure.ts";
import { median, round } from "./report.ts";

/**
 * Backup speed and memory (issue 5). For each size, on a LiveStore-shaped database (eventlog, documents,
 * conversations) and the local Worker (Miniflare, R2 persisted on disk), in the same run:
 * - baseline: `sqlite3 db ".backup snap"`, `zstd -3`, then `curl -T` PUT when the result is <= 95 MB, else an
 *   R2 multipart upload through the same Worker API with curl (`split -b 16M`, 2 parts in flight, complete);
 * - the job: `r2backup run --kind full --no-promote` as a child process (wall time, peak RSS from VmHWM);
 * - an incremental after appending 1% more events (LiveStore's state changes are events): `--kind incremental`.
 * The job does more than the baseline: quick_check and row counts of the snapshot, sha256 of both sides,
 * a kept compressed copy for promotion, the manifest. Targets: full <= 1.2x baseline, peak RSS <= 200 MiB
 * and flat across sizes, incremental <= 10% of the full.
 */
export interface BenchBackupOptions {
  sizesBytes: number[];
  /** Measurements of each side per size, alternating which goes first (default 1). */
  runs?: number;
  /** An already running Worker (default: one started here with R2 on disk under bench/tmp/). */
  workerUrl?: string;
  token?: string;
}

const HERE = fileURLToPath(new URL("./", import.meta.url));
const TMP = join(HERE, "tmp");
const BIN = CLI_BIN;

const BASELINE = `
set -e
rm -rf "$WORK"; mkdir -p "$WORK/parts"
sqlite3 "$DB" ".backup '$WORK/snap.db'"
zstd -3 -q -f "$WORK/snap.db" -o "$WORK/snap.db.zst"
SIZE=$(stat -c %s "$WORK/snap.db.zst")
AUTH="Authorization: Bearer $SERVER_BYPASS_TOKEN"
if [ "$SIZE" -le 95000000 ]; then
  curl -sS --fail-with-body -T "$WORK/snap.db.zst" -H "$AUTH" "$URL" >&2
  exit 0
fi
UP=$(curl -sS --fail-with-body -X POST -H "$AUTH" "$URL?uploads" | sed -E 's/.*"uploadId":"([^"]+)".*/\\1/')
split -b 16777216 -d -a 5 "$WORK/snap.db.zst" "$WORK/parts/p"
n=0
for f in "$WORK"/parts/p*; do
  n=$((n+1))
  curl -sS --fail-with-body -o "$f.json" -T "$f" -H "$AUTH" "$URL?uploadId=$UP&partNumber=$n" &
  if [ $((n % 2)) -eq 0 ]; then wait; fi
done
wait
for j in "$WORK"/parts/p*.json; do grep -q '"etag"' "$j" || { echo "part upload failed: $j: $(cat "$j")" >&2; exit 1; }; done
printf '{"parts":[%s]}' "$(for j in "$WORK"/parts/p*.json; do cat "$j"; echo; done | paste -sd, -)" > "$WORK/complete.json"
curl -sS --fail-with-body -o "$WORK/done.json" -X POST -H "$AUTH" -H "content-type: application/json" --data-binary @"$WORK/complete.json" "$URL?uploadId=$UP" || { echo "complete failed: $(cat "$WORK/done.json")" >&2; exit 1; }
`;

function tsKey(n: number): string {
  const d = new Date(Date.UTC(2001, 0, 1) + n * 1000);
  return d
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}

/** The cached database of a size (shared with the other benches): bench/tmp/livestore-<MiB>MiB.db. */
function countEvents(path: string): number {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return Number((db.prepare("SELECT count(*) AS n FROM eventlog").get() as { n: number }).n);
  } finally {
    db.close();
  }
}

/** Runs the benchmark and returns its results (printed as JSON when run alone). */
export async function benchBackup(options: BenchBackupOptions): Promise<Record<string, unknown>> {
  const runs = options.runs ?? 1;
  const scratch = join(TMP, `backup-${process.pid}`);
  await mkdir(scratch, { recursive: true });
  let stopWorker: (() => Promise<void>) | undefined;
  let url = options.workerUrl;
  let token = options.token;
  if (!url) {
    const { startLocalWorker } = await import("../worker/local.ts");
    const worker = await startLocalWorker({ persistDir: join(scratch, "worker") });
    url = worker.url;
    token = worker.bindings.SERVER_BYPASS_TOKEN!;
    stopWorker = () => worker.stop();
  }
  const env = { ...process.env, R2_WORKER_URL: url, SERVER_BYPASS_TOKEN: token! };
  const results: Record<string, unknown>[] = [];
  let keyN = Math.floor(Date.now() / 1000) % 1_000_000;
  try {
    for (const sizeBytes of options.sizesBytes) {
      const cached = await cachedDemoDatabase(sizeBytes, TMP);
      // The incremental appends to the database: work on a copy, never on the shared cache.
      const db = join(scratch, "work.db");
      await copyFile(cached, db);
      const dbBytes = (await stat(db)).size;
      const events = countEvents(db);
      const tmpDir = join(scratch, "job-tmp");
      const jobArgs = (kind: string) => [...nodeFlagsOf(BIN), BIN, "run", "--db", db, "--source", "bench", "--kind", kind, "--tmp-dir", tmpDir, "--no-promote"];
      const baseline: Measured[] = [];
      const job: Measured[] = [];
      for (let i = 0; i < runs; i++) {
        const runBaseline = async () => {
          const key = `backups/full/${tsKey(keyN++)}/baseline.db.zst`;
          baseline.push(
            succeeded(
              "backup",
              "baseline",
              await runMeasured("sh", ["-c", BASELINE], { env: { ...env, DB: db, WORK: join(scratch, "baseline"), URL: `${url}/api/backups/${key}` }, tree: true }),
            ),
          );
        };
        const runJob = async () => {
          job.push(succeeded("backup", "r2backup run --kind full", await runMeasured(process.execPath, jobArgs("full"), { env })));
        };
        if (i % 2 === 0) {
          await runBaseline();
          await runJob();
        } else {
          await runJob();
          await runBaseline();
        }
      }
      await rm(join(scratch, "baseline"), { recursive: true, force: true });
      const added = Math.ceil(events * 0.01);
      appendDemoEvents(db, added, 99);
      const incremental = succeeded("backup", "r2backup run --kind incremental", await runMeasured(process.execPath, jobArgs("incremental"), { env }));
      const lastJob = job.at(-1)!;
      const summary = /complete: .*$/m.exec(lastJob.stdout)?.[0] ?? "";
      const fullMs = median(job.map((m) => m.ms));
      const baseMs = median(baseline.map((m) => m.ms));
      results.push({
        sizeMiB: round(dbBytes / 1024 / 1024, 1),
        events,
        baselineSeconds: round(baseMs / 1000),
        fullSeconds: round(fullMs / 1000),
        fullOverBaseline: round(fullMs / baseMs),
        fullPeakRssMiB: round(Math.max(...job.map((m) => m.peakRssMiB)), 1),
        jobSummary: summary,
        incrementalRowsAdded: added,
        incrementalSeconds: round(incremental.ms / 1000),
        incrementalOverFull: round(incremental.ms / fullMs, 3),
        incrementalPeakRssMiB: round(incremental.peakRssMiB, 1),
        runs: { baselineSeconds: baseline.map((m) => round(m.ms / 1000)), fullSeconds: job.map((m) => round(m.ms / 1000)) },
      });
      await rm(db, { force: true });
      for (const s of ["-wal", "-shm"]) await rm(db + s, { force: true });
    }
  } finally {
    await stopWorker?.();
    await rm(scratch, { recursive: true, force: true });
  }
  const rss = results.map((r) => r.fullPeakRssMiB as number);
  return {
    bench: "backup",
    baseline: "sqlite3 .backup + zstd -3 + curl -T (PUT <= 95 MB, else curl multipart via the Worker API, 16 MiB parts, 2 in flight)",
    results,
    targets: {
      // On the 1 GiB database, as the issue states; at 100 MiB the job's ~1.5 s Node start is a large share.
      fullAtMost1_2xBaselineAtLargest: ((results.at(-1)?.fullOverBaseline as number | undefined) ?? 9) <= 1.2,
      peakRssAtMost200MiB: rss.every((r) => r <= 200),
      peakRssFlat: rss.length < 2 || Math.max(...rss) - Math.min(...rss) <= 0.25 * Math.min(...rss),
      // The target is on the 1 GiB database; at small sizes the ~2 s process start dominates both runs.
      incrementalAtMost10pctOfFullAtLargest: ((results.at(-1)?.incrementalOverFull as number | undefined) ?? 1) <= 0.1,
    },
  };
}

// Alone: `npm exec -- node bench/backup.ts [sizeMiB...]` (default 100 1024) prints the result as JSON.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const sizes = process.argv
    .slice(2)
    .map(Number)
    .filter((n) => n > 0);
  const sizesBytes = (sizes.length ? sizes : [100, 1024]).map((m) => m * 1024 * 1024);
  const result = await benchBackup({ sizesBytes, runs: Number(process.env.BENCH_RUNS ?? 1) });
  console.log(JSON.stringify(result, null, 2));
}
