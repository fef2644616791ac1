import { spawn, type ChildProcess } from "node:child_process";
import { CLI_BIN } from "./installed.ts";
import { once } from "node:events";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { nodeFlagsOf, runMeasured } from "./measure.ts";
import { round } from "./report.ts";

/**
 * What a full backup does to the app's own writes (issue 16): a writer in another process (bench/writer.ts)
 * commits one row every 10 ms through its own connection; its commit latency is taken for `idleMs` alone, then
 * during `r2backup run --kind full` (the CLI, as the agent runs it), in WAL mode and in rollback-journal mode
 * (a copy of the database switched to `journal_mode=DELETE`), on a database whose app takes SQLite's locks. Reported: p50, p99 and max of the commits'
 * own durations, and the p99 of how late commits started against the 10 ms schedule (a stalled writer
 * shows there too). Target: p99 ≤ 50 ms during the backup in both modes.
 */
const HERE = fileURLToPath(new URL("./", import.meta.url));
const BIN = CLI_BIN;
const WRITER = join(HERE, "writer.ts");

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

interface WriterLog {
  commits: number;
  latencies: number[];
  late: number[];
  at: number[];
}

async function startWriter(db: string): Promise<{ child: ChildProcess; result: Promise<WriterLog> }> {
  const child = spawn(process.execPath, [WRITER, db, "10"], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  while (!out.includes("ready")) {
    if (child.exitCode !== null) throw new Error(`bench writer: exited ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const result = once(child, "close").then(() => JSON.parse(out.trim().split("\n").at(-1)!) as WriterLog);
  return { child, result };
}

function window(log: WriterLog, from: number, to: number) {
  const idx = log.at.map((t, i) => [t, i] as const).filter(([t]) => t >= from && t < to);
  const lat = idx.map(([, i]) => log.latencies[i]!);
  const late = idx.map(([, i]) => log.late[i]!);
  return { commits: lat.length, p50Ms: round(percentile(lat, 50)), p99Ms: round(percentile(lat, 99)), maxMs: round(Math.max(0, ...lat)), lateP99Ms: round(percentile(late, 99)) };
}

/** One journal mode: idle window, then a full backup with the writer running. */
async function oneMode(mode: "wal" | "rollback", cached: string, scratch: string, env: NodeJS.ProcessEnv, idleMs: number, extraArgs: string[]) {
  const db = join(scratch, `writer-${mode}.db`);
  for (const s of ["", "-wal", "-shm", "-journal"]) await rm(db + s, { force: true });
  await copyFile(cached, db);
  {
    // An app that takes SQLite's locks: without LiveStore's sync-status table the job does not take the file for
    // LiveStore's lock-free one (fact 7), whose writer no copy can block and whose copies are retaken instead.
    const c = new DatabaseSync(db);
    c.exec("DROP TABLE IF EXISTS __livestore_sync_status");
    if (mode === "rollback") c.exec("PRAGMA journal_mode = DELETE");
    c.close();
  }
  const { child, result } = await startWriter(db);
  const idleFrom = Date.now();
  await new Promise((r) => setTimeout(r, idleMs));
  const from = Date.now();
  const m = await runMeasured(
    process.execPath,
    [...nodeFlagsOf(BIN), BIN, "run", "--db", db, "--source", `writer-${mode}`, "--kind", "full", "--tmp-dir", join(scratch, "tmp"), "--no-promote", ...extraArgs],
    {
      env,
      cpu: true,
    },
  );
  const to = Date.now();
  child.kill("SIGTERM");
  const log = await result;
  for (const s of ["", "-wal", "-shm", "-journal"]) await rm(db + s, { force: true });
  if (m.code !== 0) throw new Error(`bench writer: r2backup run (${mode}) exited ${m.code}: ${m.stderr.slice(-1500)}`);
  return {
    mode,
    args: extraArgs.join(" "),
    backupSeconds: round(m.ms / 1000),
    backupCpuSeconds: m.cpuSeconds,
    idle: window(log, idleFrom, from),
    duringBackup: window(log, from, to),
  };
}

export async function benchWriterLatency(options: { dbPath: string; workerUrl: string; token: string; scratch: string; idleMs?: number }): Promise<Record<string, unknown>> {
  await mkdir(options.scratch, { recursive: true });
  const env = { ...process.env, R2_WORKER_URL: options.workerUrl, SERVER_BYPASS_TOKEN: options.token };
  const modes = [];
  // Each mode without a cap and with `--cpu 1` (one of the machine's cores left to the app): the cap's effect.
  for (const mode of ["wal", "rollback"] as const) {
    for (const args of [[], ["--cpu", "1"]]) modes.push(await oneMode(mode, options.dbPath, options.scratch, env, options.idleMs ?? 3000, args));
  }
  const uncapped = modes.filter((m) => m.args === "");
  return { bench: "writer latency", everyMs: 10, modes, target: "p99 ≤ 50 ms during the full backup, both modes", pass: uncapped.every((m) => m.duringBackup.p99Ms <= 50) };
}
