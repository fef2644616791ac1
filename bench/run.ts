import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { spawn } from "node:child_process";
import { benchBackup } from "./backup.ts";
import { benchChain, type ChainBench } from "./chain.ts";
import { S3_KEYS, benchLitestream } from "./litestream.ts";
import { benchProfile } from "./profile.ts";
import { benchWriterLatency } from "./writer-latency.ts";
import { cachedDemoDatabase } from "./livestore-db.ts";
import { describeMachine, mb, median, renderLitestreamTable, round, renderMarkdown, renderSvg, type BenchReport, type BenchRow } from "./report.ts";
import { benchRestore } from "./restore.ts";
import { benchWorker } from "./worker.ts";
import { buildInstalled } from "./installed.ts";

/**
 * `npm run bench [-- --sizes 100,1024] [--runs 3] [--only ...]`: every benchmark of the
 * issues with its baseline in the same run, written to bench/results/<date>.{json,md,svg}.
 */
const ALL = "worker,backup,restore,litestream,writer,library,profile,chain";
const USAGE = `usage: npm run bench [-- --sizes <MiB,...>] [--runs <n>] [--only ${ALL}]

  --sizes   database (and object) sizes in MiB (default 100,1024: the 1 GiB targets, and flatness from 100 MiB)
  --runs    measurements per side, alternating which goes first; medians are reported (default 3)
  --only    run a subset; litestream (r2backup vs Litestream 0.3.13 to a file replica and to the same local R2
            over S3, full backup and restore, and the local R2's own time for the bytes), writer (a
            writer's commit latency during a full backup) and profile (per stage) run at the largest size,
            library (RSS a backup adds to a host process) at every size; chain (commit a set and plan a
            restore with 43,200 sets in the chain)
`;

const MiB = 1024 * 1024;
const RESULTS = fileURLToPath(new URL("./results/", import.meta.url));
type Loose = Record<string, any>;

function chainRows(r: ChainBench): BenchRow[] {
  const row = (name: string, samples: number[], note: string): BenchRow => {
    const ms = median(samples);
    return { name, sizeBytes: 0, medianMs: ms, target: "< 1 s", pass: ms < 1000, note };
  };
  return [
    row(`commit a set, ${r.sets} sets in the chain`, r.commitMs, "read the head, then the compare-and-swap that stores the manifest (local Worker)"),
    row(`plan a restore, ${r.sets} sets in the chain`, r.planMs, `the newest full before the time and the ${r.planIncrementals} incrementals after it, their manifests read`),
  ];
}

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

function litestreamRows(r: Loose): BenchRow[] {
  const a = r.r2backup as Loose;
  const b = r.litestream as Loose;
  const c = r.litestreamS3 as Loose;
  const q = r.ratios as Loose;
  const q3 = r.ratiosS3 as Loose;
  const f = r.floor as Loose;
  const d = r.r2backupDir as Loose;
  const qd = r.ratiosDir as Loose;
  const full = q.fullWall <= 1.2 && q.fullCpu <= 1.5 && q.storedBytes <= 0.75 && a.fullPeakRssMiB <= 80;
  const fullDir = qd.fullWall <= 1.2 && qd.fullCpu <= 1.5 && qd.storedBytes <= 0.75 && d.fullPeakRssMiB <= 80;
  return [
    // Like for like on local disk: r2backup's directory store against Litestream's file replica.
    {
      name: "full backup to a directory vs Litestream (file replica)",
      sizeBytes: r.sizeBytes,
      medianMs: d.fullSeconds * 1000,
      baseline: { name: `Litestream ${r.litestreamVersion} to a file replica`, medianMs: b.fullSeconds * 1000 },
      ratio: qd.fullWall,
      peakRssMiB: d.fullPeakRssMiB,
      target: "wall ≤ 1.2×, CPU ≤ 1.5×, bytes ≤ 0.75× Litestream; CLI ≤ 80 MiB",
      pass: fullDir,
      note: `CPU ${d.fullCpuSeconds} s vs ${b.fullCpuSeconds} s (${qd.fullCpu}×); stored ${mb(d.storedBytes)} vs ${mb(b.storedBytes)} (${qd.storedBytes}×); Litestream's peak RSS ${b.fullPeakRssMiB} MiB`,
    },
    {
      name: "restore from a directory + integrity_check vs Litestream (file replica)",
      sizeBytes: r.sizeBytes,
      medianMs: d.restoreSeconds * 1000,
      baseline: { name: "litestream restore + sqlite3 integrity_check", medianMs: b.restoreSeconds * 1000 },
      ratio: qd.restoreWall,
      peakRssMiB: d.restorePeakRssMiB,
      target: "≤ 1.0× Litestream",
      pass: qd.restoreWall <= 1.0,
      note: `CPU ${d.restoreCpuSeconds} s vs ${b.restoreCpuSeconds} s; Litestream's restore peak RSS ${b.restorePeakRssMiB} MiB (with sqlite3's)`,
    },
    {
      name: "full backup vs Litestream (file replica)",
      sizeBytes: r.sizeBytes,
      medianMs: a.fullSeconds * 1000,
      baseline: { name: `Litestream ${r.litestreamVersion} to a file replica`, medianMs: b.fullSeconds * 1000 },
      ratio: q.fullWall,
      peakRssMiB: a.fullPeakRssMiB,
      target: "wall ≤ 1.2×, CPU ≤ 1.5×, bytes ≤ 0.75× Litestream; CLI ≤ 80 MiB",
      pass: full,
      note: `CPU ${a.fullCpuSeconds} s vs ${b.fullCpuSeconds} s (${q.fullCpu}×); stored ${mb(a.storedBytes)} vs ${mb(b.storedBytes)} (${q.storedBytes}×); Litestream's peak RSS ${b.fullPeakRssMiB} MiB`,
    },
    {
      name: "restore + integrity_check vs Litestream",
      sizeBytes: r.sizeBytes,
      medianMs: a.restoreSeconds * 1000,
      baseline: { name: "litestream restore + sqlite3 integrity_check", medianMs: b.restoreSeconds * 1000 },
      ratio: q.restoreWall,
      peakRssMiB: a.restorePeakRssMiB,
      target: "≤ 1.0× Litestream",
      pass: q.restoreWall <= 1.0,
      note: `CPU ${a.restoreCpuSeconds} s vs ${b.restoreCpuSeconds} s; Litestream's restore peak RSS ${b.restorePeakRssMiB} MiB (with sqlite3's)`,
    },
    // Like for like on the storage: Litestream writes to the same local R2 as r2backup (Miniflare's S3 endpoint).
    {
      name: "full backup vs Litestream (local R2 over S3)",
      sizeBytes: r.sizeBytes,
      medianMs: a.fullSeconds * 1000,
      baseline: { name: `Litestream ${r.litestreamVersion} to the local R2 over S3`, medianMs: c.fullSeconds * 1000 },
      ratio: q3.fullWall,
      peakRssMiB: a.fullPeakRssMiB,
      note: `CPU ${a.fullCpuSeconds} s vs ${c.fullCpuSeconds} s (${q3.fullCpu}×), workerd (Worker + local R2) ${a.fullWorkerdCpuSeconds} s vs ${c.fullWorkerdCpuSeconds} s; stored ${mb(a.storedBytes)} vs ${mb(c.storedBytes)}; Litestream's peak RSS ${c.fullPeakRssMiB} MiB`,
    },
    {
      name: "restore + integrity_check vs Litestream (local R2 over S3)",
      sizeBytes: r.sizeBytes,
      medianMs: a.restoreSeconds * 1000,
      baseline: { name: "litestream restore (S3) + sqlite3 integrity_check", medianMs: c.restoreSeconds * 1000 },
      ratio: q3.restoreWall,
      peakRssMiB: a.restorePeakRssMiB,
      note: `CPU ${a.restoreCpuSeconds} s vs ${c.restoreCpuSeconds} s, workerd ${a.restoreWorkerdCpuSeconds} s vs ${c.restoreWorkerdCpuSeconds} s; Litestream's restore peak RSS ${c.restorePeakRssMiB} MiB (with sqlite3's)`,
    },
    {
      name: "storage floor: the local R2 alone takes r2backup's stored bytes",
      sizeBytes: r.sizeBytes,
      medianMs: f.uploadSeconds * 1000,
      baseline: { name: "r2backup's full backup", medianMs: a.fullSeconds * 1000 },
      ratio: round(f.uploadSeconds / a.fullSeconds),
      note: `${mb(f.bytes)} through the Worker, ${Math.round(f.partBytes / MiB)} MiB parts, 2 in flight, workerd CPU ${f.uploadWorkerdCpuSeconds} s; served back (a GET drained) in ${f.downloadSeconds} s of r2backup's ${a.restoreSeconds} s restore, workerd CPU ${f.downloadWorkerdCpuSeconds} s`,
    },
  ];
}

function writerRows(r: Loose, sizeBytes: number): BenchRow[] {
  return (r.modes as Loose[]).map((m) => ({
    name: `writer p99 during a full backup (${m.mode === "wal" ? "WAL" : "rollback journal"}${m.args ? `, ${m.args}` : ""})`,
    sizeBytes,
    medianMs: m.duringBackup.p99Ms,
    baseline: { name: "idle p99", medianMs: m.idle.p99Ms },
    target: "p99 ≤ 50 ms",
    pass: m.duringBackup.p99Ms <= 50,
    note: `${m.duringBackup.commits} commits in the ${m.backupSeconds} s backup (CPU ${m.backupCpuSeconds} s): p50 ${m.duringBackup.p50Ms} ms, max ${m.duringBackup.maxMs} ms, p99 lateness against the 10 ms schedule ${m.duringBackup.lateP99Ms} ms (idle: p50 ${m.idle.p50Ms}, max ${m.idle.maxMs})`,
  }));
}

/** Runs bench/library-host.ts (a host process running two full backups, in-process or on a thread of its own) and returns its figures. */
async function libraryHost(dbPath: string, tmpDir: string, workerUrl: string, token: string, onThread = false): Promise<Loose> {
  const host = fileURLToPath(new URL("./library-host.ts", import.meta.url));
  const { mkdir, copyFile, rm } = await import("node:fs/promises");
  await mkdir(tmpDir, { recursive: true });
  const db = join(tmpDir, "host.db");
  await copyFile(dbPath, db);
  try {
    const out = await new Promise<string>((resolve, reject) => {
      const c = spawn(process.execPath, ["--expose-gc", host, db, join(tmpDir, "tmp"), ...(onThread ? ["--thread"] : [])], {
        env: { ...process.env, R2_WORKER_URL: workerUrl, SERVER_BYPASS_TOKEN: token },
        stdio: ["ignore", "pipe", "inherit"],
      });
      let s = "";
      c.stdout.on("data", (d: Buffer) => (s += d.toString()));
      c.on("error", reject);
      c.on("close", (code) => (code === 0 ? resolve(s) : reject(new Error(`bench library: host exited ${code}`))));
    });
    return JSON.parse(out.trim().split("\n").at(-1)!) as Loose;
  } finally {
    for (const s of ["", "-wal", "-shm"]) await rm(db + s, { force: true });
  }
}

function libraryRows(list: Loose[], onThread = false): BenchRow[] {
  const added = list.map((x) => x.addedMiB as number);
  const flat = added.length < 2 || Math.max(...added) - Math.min(...added) <= 8;
  return list.map((x) => ({
    name: onThread ? "library backups on a worker thread of the host, RSS added" : "library backups in-process, RSS added to the host",
    sizeBytes: x.sizeBytes,
    medianMs: x.ms,
    peakRssMiB: Math.round(x.addedMiB * 10) / 10,
    ...(onThread ? {} : { target: "≤ 32 MiB added, flat across sizes", pass: x.addedMiB <= 32 && flat }),
    note: `two backups per host process, peak over both against the RSS before them; median of ${x.addedMiBRuns.length} hosts (added ${x.addedMiBRuns.join(", ")} MiB); host RSS ${Math.round(x.rssBeforeMiB)} MiB before, peak ${Math.round(x.peakMiB)} MiB (after the first backup ${Math.round(x.runs[0].peakMiB)} MiB); the host's event loop: a 10 ms timer fired up to ${x.timerLateMaxMs} ms late (median host; runs ${x.timerLateMaxMsRuns.join(", ")} ms), loop delay p99 ${x.loopDelayP99Ms} ms`,
  }));
}

/** The per-stage profile as a markdown table. */
function profileTable(r: Loose): string {
  const lines = [
    `## Full backup, per stage (${Math.round(r.sizeBytes / MiB)} MiB, one run, in one process)`,
    "",
    "| stage | wall | CPU | CPU / wall |",
    "| --- | --- | --- | --- |",
    ...(r.stages as Loose[]).map((s) => `| ${s.stage} | ${(s.wallMs / 1000).toFixed(2)} s | ${(s.cpuMs / 1000).toFixed(2)} s | ${s.cpuShare} |`),
  ];
  return `${lines.join("\n")}\n`;
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
  const only = new Set((values.only ?? ALL).split(","));
  const sizesBytes = sizesMiB.map((m) => Math.round(m * MiB));
  const raw: Loose = {};
  const rows: BenchRow[] = [];
  const say = (s: string) => process.stderr.write(`bench: ${s}\n`);

  say("building dist/ (the CLI and library as installed are what is measured)");
  buildInstalled();
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

  const largest = sizesBytes.at(-1)!;
  const extra: string[] = [];
  if (only.has("litestream") || only.has("writer") || only.has("library") || only.has("profile")) {
    const { startLocalWorker } = await import("../worker/local.ts");
    const scratch = join(RESULTS, "..", "tmp", `run-16-${process.pid}`);
    // The S3 endpoint is for Litestream's side on the same local R2 as r2backup's (bench/litestream.ts).
    const worker = await startLocalWorker({ persistDir: join(scratch, "worker"), s3Credentials: S3_KEYS });
    const token = worker.bindings.SERVER_BYPASS_TOKEN!;
    try {
      const dbPath = await cachedDemoDatabase(largest);
      if (only.has("litestream")) {
        say(`litestream: ${Math.round(largest / MiB)} MiB, r2backup vs Litestream (file replica and local R2 over S3), full backup and restore, ${runs} run(s) per side`);
        raw.litestream = await benchLitestream({ dbPath, worker, runs, scratch: join(scratch, "litestream") });
        rows.push(...litestreamRows(raw.litestream));
        extra.push(renderLitestreamTable(raw.litestream));
      }
      if (only.has("writer")) {
        say(`writer: commit latency of a writer (every 10 ms) during a full backup of ${Math.round(largest / MiB)} MiB, WAL and rollback journal`);
        raw.writer = await benchWriterLatency({ dbPath, workerUrl: worker.url, token, scratch: join(scratch, "writer") });
        rows.push(...writerRows(raw.writer, largest));
      }
      if (only.has("library")) {
        // In the host's process, then on a worker thread of the host (which keeps its event loop free, at a cost in memory).
        for (const onThread of [false, true]) {
          const list: Loose[] = [];
          for (const sizeBytes of sizesBytes) {
            say(
              `library: RSS added to a host process and its event loop's delay, full backups of ${Math.round(sizeBytes / MiB)} MiB ${onThread ? "on a thread of the host" : "in-process"}`,
            );
            // The host's young generation is collected when V8 decides, so the figure varies from run to run: median.
            const samples: Loose[] = [];
            for (let i = 0; i < runs; i++) samples.push(await libraryHost(await cachedDemoDatabase(sizeBytes), join(scratch, "library"), worker.url, token, onThread));
            const mid = [...samples].sort((a, b) => a.addedMiB - b.addedMiB)[samples.length >> 1]!;
            const late = [...samples].sort((a, b) => a.timerLateMaxMs - b.timerLateMaxMs)[samples.length >> 1]!;
            list.push({
              sizeBytes,
              ...mid,
              timerLateMaxMs: late.timerLateMaxMs,
              loopDelayP99Ms: late.loopDelayP99Ms,
              addedMiBRuns: samples.map((x) => Math.round(x.addedMiB * 10) / 10),
              timerLateMaxMsRuns: samples.map((x) => x.timerLateMaxMs),
            });
          }
          if (onThread) raw.libraryThread = list;
          else raw.library = list;
          rows.push(...libraryRows(list, onThread));
        }
      }
      if (only.has("profile")) {
        say(`profile: the full backup's stages, ${Math.round(largest / MiB)} MiB`);
        raw.profile = await benchProfile({ dbPath, workerUrl: worker.url, token, scratch: join(scratch, "profile") });
        extra.push(profileTable(raw.profile));
      }
    } finally {
      await worker.stop();
      const { rm } = await import("node:fs/promises");
      await rm(scratch, { recursive: true, force: true });
    }
  }

  if (only.has("chain")) {
    say("chain: commit a set and plan a restore with 43,200 sets in the chain");
    raw.chain = await benchChain({ runs, say });
    rows.push(...chainRows(raw.chain));
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
  const md = renderMarkdown(report) + extra.map((e) => `\n${e}`).join("");
  await writeFile(`${base}.md`, md);
  await writeFile(`${base}.svg`, renderSvg(report));
  process.stdout.write(md);
  process.stdout.write(`\nwritten: bench/results/${date}.json, .md, .svg\n`);
  return 0;
}

process.exit(await main(process.argv.slice(2)));
