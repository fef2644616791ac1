import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { benchBackup } from "./backup.ts";
import { cachedDemoDatabase } from "./livestore-db.ts";
import { describeMachine, renderMarkdown, renderSvg, type BenchReport, type BenchRow } from "./report.ts";
import { benchRestore } from "./restore.ts";
import { benchWorker } from "./worker.ts";

/**
 * `npm run bench [-- --sizes 100,1024] [--runs 3] [--only worker,backup,restore]`: every benchmark of the
 * issues with its baseline in the same run, written to bench/results/<date>.{json,md,svg}.
 */
const USAGE = `usage: npm run bench [-- --sizes <MiB,...>] [--runs <n>] [--only worker,backup,restore]

  --sizes   database (and object) sizes in MiB (default 100,1024: the 1 GiB targets, and flatness from 100 MiB)
  --runs    measurements per side, alternating which goes first; medians are reported (default 3)
  --only    run a subset
`;

const MiB = 1024 * 1024;
const RESULTS = fileURLToPath(new URL("./results/", import.meta.url));
type Loose = Record<string, any>;

function workerRows(r: Loose): BenchRow[] {
  const size = r.sizeBytes as number;
  const ms = (mbps: number) => (size / 1e6 / mbps) * 1000;
  return (["upload", "download"] as const).map((dir) => {
    const d = r[dir] as Loose;
    return {
      name: `worker ${dir}`,
      sizeBytes: size,
      medianMs: ms(d.workerMBps),
      baseline: { name: `R2 ${dir === "upload" ? "put" : "get"} without the Worker`, medianMs: ms(d.directMBps) },
      ratio: d.ratio,
      mbPerSecond: d.workerMBps,
      peakRssMiB: d.workerPeakRssMiB,
      target: "throughput ≥ 0.8× direct",
      pass: d.ratio >= 0.8,
      note: `peak RSS is the workerd process, which also runs Miniflare's simulated R2 (${d.directPeakRssMiB} MiB for the same transfer without the Worker; ${r.idleRssMiB} MiB idle)`,
    } satisfies BenchRow;
  });
}

function backupRows(r: Loose): BenchRow[] {
  const rows: BenchRow[] = [];
  for (const x of r.results as Loose[]) {
    const sizeBytes = Math.round(x.sizeMiB * MiB);
    rows.push({
      name: "full backup",
      sizeBytes,
      medianMs: x.fullSeconds * 1000,
      baseline: { name: "sqlite3 .backup + zstd -3 + curl", medianMs: x.baselineSeconds * 1000 },
      ratio: x.fullOverBaseline,
      peakRssMiB: x.fullPeakRssMiB,
      target: "≤ 1.2× baseline, ≤ 200 MiB",
      pass: x.fullOverBaseline <= 1.2 && x.fullPeakRssMiB <= 200,
    });
    rows.push({
      name: "incremental after 1% new rows",
      sizeBytes,
      medianMs: x.incrementalSeconds * 1000,
      baseline: { name: "full backup", medianMs: x.fullSeconds * 1000 },
      ratio: x.incrementalOverFull,
      peakRssMiB: x.incrementalPeakRssMiB,
      target: "≤ 0.10× the full backup",
      pass: x.incrementalOverFull <= 0.1,
    });
  }
  return rows;
}

function restoreRows(r: Loose): BenchRow[] {
  const sides: [string, Loose | undefined][] = [
    ["restore (integrity_check)", r.restore],
    ["restore (quick_check, as the baseline)", r.restoreQuick],
  ];
  return sides
    .filter((side): side is [string, Loose] => side[1] !== undefined)
    .map(([name, x]) => ({
      name,
      sizeBytes: r.sizeBytes,
      medianMs: x.medianMs,
      baseline: { name: "curl | zstd -d + sqlite3 quick_check", medianMs: r.baseline.medianMs },
      ratio: x.ratio,
      peakRssMiB: x.peakRssMiB,
      target: "≤ 1.2× baseline, ≤ 200 MiB",
      pass: x.ratio <= 1.2 && x.peakRssMiB <= 200,
    }));
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { sizes: { type: "string", default: "100,1024" }, runs: { type: "string", default: "3" }, only: { type: "string" }, help: { type: "boolean", short: "h" } },
    }));
  } catch (e) {
    process.stderr.write(`npm run bench: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const sizesMiB = values.sizes.split(",").map(Number);
  const runs = Number(values.runs);
  if (sizesMiB.some((s) => !Number.isFinite(s) || s < 1) || !Number.isInteger(runs) || runs < 1) {
    process.stderr.write(`npm run bench: --sizes '${values.sizes}' and --runs '${values.runs}': expected sizes in MiB (≥ 1) and a whole number of runs\n`);
    return 2;
  }
  const only = new Set((values.only ?? "worker,backup,restore").split(","));
  const sizesBytes = sizesMiB.map((m) => Math.round(m * MiB));
  const raw: Loose = {};
  const rows: BenchRow[] = [];
  const say = (s: string) => process.stderr.write(`bench: ${s}\n`);

  for (const sizeBytes of sizesBytes) {
    say(`preparing a ${Math.round(sizeBytes / MiB)} MiB LiveStore-shaped database (cached under bench/tmp/)`);
    await cachedDemoDatabase(sizeBytes);
  }
  if (only.has("worker")) {
    raw.worker = [];
    for (const sizeBytes of sizesBytes) {
      say(`worker: ${Math.round(sizeBytes / MiB)} MiB through the Worker and straight into R2`);
      const r = await benchWorker({ sizeBytes });
      raw.worker.push(r);
      rows.push(...workerRows(r));
    }
  }
  if (only.has("backup")) {
    say(`backup: full (vs sqlite3 + zstd + curl) and incremental, ${runs} run(s) per side`);
    raw.backup = await benchBackup({ sizesBytes, runs });
    rows.push(...backupRows(raw.backup));
  }
  if (only.has("restore")) {
    raw.restore = [];
    const { startLocalWorker } = await import("../worker/local.ts");
    for (const sizeBytes of sizesBytes) {
      say(`restore: ${Math.round(sizeBytes / MiB)} MiB (vs curl | zstd -d + sqlite3 quick_check), ${runs} run(s) per side`);
      const persistDir = join(RESULTS, "..", "tmp", `run-restore-${process.pid}`);
      const worker = await startLocalWorker({ persistDir });
      try {
        const r = await benchRestore({ dbPath: await cachedDemoDatabase(sizeBytes), workerUrl: worker.url, token: worker.bindings.SERVER_BYPASS_TOKEN!, runs });
        raw.restore.push(r);
        rows.push(...restoreRows(r));
      } finally {
        await worker.stop();
        const { rm } = await import("node:fs/promises");
        await rm(persistDir, { recursive: true, force: true });
      }
    }
  }

  const sqlite = (() => {
    const db = new DatabaseSync(":memory:");
    const v = (db.prepare("SELECT sqlite_version() AS v").get() as { v: string }).v;
    db.close();
    return v;
  })();
  const date = new Date().toISOString().slice(0, 10);
  const report: BenchReport = { date, machine: describeMachine(sqlite), rows };
  await mkdir(RESULTS, { recursive: true });
  const base = join(RESULTS, date);
  await writeFile(`${base}.json`, `${JSON.stringify({ ...report, runs, sizesMiB, raw }, null, 2)}\n`);
  const md = renderMarkdown(report);
  await writeFile(`${base}.md`, md);
  await writeFile(`${base}.svg`, renderSvg(report));
  process.stdout.write(md);
  process.stdout.write(`\nwritten: bench/results/${date}.json, .md, .svg\n`);
  return 0;
}

process.exit(await main(process.argv.slice(2)));
