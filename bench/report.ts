import { cpus, totalmem, release, platform, arch } from "node:os";
import type { LitestreamBench } from "./litestream.ts";

/**
 * The benchmark report: one row per measurement, rendered as JSON, a markdown table and an SVG chart of
 * time and memory against database size. Pure apart from `describeMachine`.
 */
export interface BenchRow {
  /** What was measured, e.g. "full backup" or "worker upload". */
  name: string;
  /** The database or object size the row is about. */
  sizeBytes: number;
  /** Median wall time of the measured command (ms). */
  medianMs: number;
  /** The baseline it is compared with, measured in the same run. */
  baseline?: { name: string; medianMs: number };
  /** The ratio compared with the target (measured / baseline, or a throughput ratio). */
  ratio?: number;
  /** Peak resident memory of the measured process (MiB). */
  peakRssMiB?: number;
  /** Throughput (MB/s), where it is the figure of merit. */
  mbPerSecond?: number;
  /** The target as text, e.g. "≤ 1.2× baseline, ≤ 200 MiB", and whether this row meets it. */
  target?: string;
  pass?: boolean;
  note?: string;
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  sqlite?: string;
}

export interface BenchReport {
  date: string;
  machine: Machine;
  rows: BenchRow[];
}

export function describeMachine(sqliteVersion?: string): Machine {
  const c = cpus();
  return {
    cpu: c[0]?.model.trim() ?? "unknown",
    cores: c.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${platform()} ${release()} ${arch()}`,
    node: process.version,
    ...(sqliteVersion ? { sqlite: sqliteVersion } : {}),
  };
}

const MiB = 1024 * 1024;
export const formatSize = (bytes: number) => (bytes === 0 ? "—" : bytes >= 1024 * MiB ? `${Math.round((bytes / (1024 * MiB)) * 100) / 100} GiB` : `${Math.round(bytes / MiB)} MiB`);
const fmtMs = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`);

/** Rounds to `digits` decimals (2 by default), for figures in results. */
export const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

/** The median of samples (the mean of the middle two for an even count). */
export function median(samples: readonly number[]): number {
  if (samples.length === 0) throw new Error("median of no samples");
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  const lines = [
    `# Benchmarks, ${report.date}`,
    "",
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}; Node ${m.node}${m.sqlite ? `; SQLite ${m.sqlite}` : ""}.`,
    "Medians of the runs; baselines measured in the same run. Produced by `npm run bench`.",
    "",
    "| benchmark | size | median | baseline | ratio | throughput | peak RSS | target | meets it |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  const cell = (text: string) => text.replaceAll("|", "\\|");
  for (const r of report.rows) {
    lines.push(
      `| ${r.name} | ${formatSize(r.sizeBytes)} | ${fmtMs(r.medianMs)} | ${r.baseline ? cell(`${r.baseline.name}: ${fmtMs(r.baseline.medianMs)}`) : ""} | ${r.ratio === undefined ? "" : r.ratio.toFixed(2)} | ${
        r.mbPerSecond === undefined ? "" : `${r.mbPerSecond.toFixed(0)} MB/s`
      } | ${r.peakRssMiB === undefined ? "" : `${Math.round(r.peakRssMiB)} MiB`} | ${cell(r.target ?? "")} | ${r.pass === undefined ? "" : r.pass ? "yes" : "**no**"} |`,
    );
  }
  const growth = memoryGrowth(report.rows);
  if (growth.length) lines.push("", "Peak memory against size (flat means it does not grow with the database):", ...growth.map((g) => `- ${g}`));
  const notes = report.rows.filter((r) => r.note).map((r) => `- ${r.name} (${formatSize(r.sizeBytes)}): ${r.note}`);
  if (notes.length) lines.push("", "Notes:", ...notes);
  return `${lines.join("\n")}\n`;
}

/** Bytes in MB (10^6), rounded, for the report's text. */
export const mb = (bytes: number) => `${Math.round(bytes / 1e6)} MB`;

/**
 * The issue's side-by-side table, from one run: r2backup, Litestream to a file replica, and Litestream to
 * the same local R2 as r2backup over its S3 endpoint, each with the CPU of workerd (the Worker and the
 * simulated R2) beside the client's; then the storage floor, the local R2 alone taking and serving r2backup's bytes.
 */
export function renderLitestreamTable(r: LitestreamBench): string {
  const a = r.r2backup;
  const d = r.r2backupDir;
  const b = r.litestream;
  const c = r.litestreamS3;
  const f = r.floor;
  const q = r.ratios;
  const q3 = r.ratiosS3;
  const qd = r.ratiosDir;
  const row = (step: string, cell: (x: LitestreamBench["r2backup"]) => string, ratio = "", ratioS3 = "", ratioDir = "") =>
    `| ${step} | ${cell(a)} | ${cell(c)} | ${ratioS3} | ${cell(d)} | ${cell(b)} | ${ratioDir} | ${ratio} |`;
  const v = r.litestreamVersion;
  const lines = [
    `## r2backup and Litestream side by side (${Math.round(r.sizeBytes / MiB)} MiB, medians of ${r.runs})`,
    "",
    `| step | r2backup → local R2 (Worker) | Litestream ${v} → local R2 over S3 | ratio | r2backup → directory | Litestream ${v} → file | ratio | ratio, r2backup → local R2 over Litestream → file |`,
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    row("full backup, wall", (x) => `${x.fullSeconds} s`, `${q.fullWall}`, `${q3.fullWall}`, `${qd.fullWall}`),
    row("full backup, CPU (user+sys)", (x) => `${x.fullCpuSeconds} s`, `${q.fullCpu}`, `${q3.fullCpu}`, `${qd.fullCpu}`),
    row("full backup, workerd CPU (Worker + local R2)", (x) => `${x.fullWorkerdCpuSeconds} s`),
    row("full backup, peak RSS", (x) => `${x.fullPeakRssMiB} MiB`),
    row("bytes stored", (x) => mb(x.storedBytes), `${q.storedBytes}`, `${q3.storedBytes}`, `${qd.storedBytes}`),
    row("restore + integrity_check, wall", (x) => `${x.restoreSeconds} s`, `${q.restoreWall}`, `${q3.restoreWall}`, `${qd.restoreWall}`),
    row("restore, CPU", (x) => `${x.restoreCpuSeconds} s`),
    row("restore, workerd CPU (Worker + local R2)", (x) => `${x.restoreWorkerdCpuSeconds} s`),
    row("restore, peak RSS", (x) => `${x.restorePeakRssMiB} MiB`),
    "",
    "Ratios are r2backup's figure over Litestream's on the same storage: the local R2 (Miniflare's, r2backup through the Worker, Litestream through the same R2's S3 endpoint, SigV4, path-style), and local disk (r2backup's `--dir` store, Litestream's `file://` replica). The last column sets r2backup through the local R2 against Litestream to a file. workerd's CPU is that of the one process running the Worker and Miniflare's simulated R2 during the step (about 0 on local disk).",
    "",
    `Storage floor: of r2backup's ${a.fullSeconds} s full backup, the local R2 alone needs ${f.uploadSeconds} s to take its ${mb(f.bytes)} (a multipart upload through the Worker in ${Math.round(f.partBytes / MiB)} MiB parts, 2 in flight, from memory; workerd CPU ${f.uploadWorkerdCpuSeconds} s); of its ${a.restoreSeconds} s restore, ${f.downloadSeconds} s to serve them back (a GET drained; workerd CPU ${f.downloadWorkerdCpuSeconds} s).`,
  ];
  return `${lines.join("\n")}\n`;
}

/** For each benchmark measured at several sizes: its peak RSS at the smallest and the largest, and the growth. */
export function memoryGrowth(rows: readonly BenchRow[]): string[] {
  const byName = new Map<string, BenchRow[]>();
  for (const r of rows) if (r.peakRssMiB !== undefined) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
  const out: string[] = [];
  for (const [name, list] of byName) {
    if (list.length < 2) continue;
    const sorted = [...list].sort((a, b) => a.sizeBytes - b.sizeBytes);
    const first = sorted[0]!;
    const last = sorted.at(-1)!;
    const pct = Math.round(((last.peakRssMiB! - first.peakRssMiB!) / first.peakRssMiB!) * 100);
    out.push(
      `${name}: ${Math.round(first.peakRssMiB!)} MiB at ${formatSize(first.sizeBytes)}, ${Math.round(last.peakRssMiB!)} MiB at ${formatSize(last.sizeBytes)} (${pct >= 0 ? "+" : ""}${pct}% for ${Math.round(last.sizeBytes / first.sizeBytes)}x the data)`,
    );
  }
  return out;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/** Two panels, time and peak memory against size, one line per benchmark name (rows with that metric). */
export function renderSvg(report: BenchReport): string {
  const W = 860;
  const H = 360;
  const panel = (x0: number, title: string, metric: (r: BenchRow) => number | undefined, unit: string) => {
    const series = new Map<string, { x: number; y: number }[]>();
    for (const r of report.rows) {
      const y = metric(r);
      if (y === undefined) continue;
      const list = series.get(r.name) ?? [];
      list.push({ x: r.sizeBytes / MiB, y });
      series.set(r.name, list);
    }
    const all = [...series.values()].flat();
    const maxX = Math.max(1, ...all.map((p) => p.x));
    const maxY = Math.max(1, ...all.map((p) => p.y)) * 1.1;
    const pw = 360;
    const ph = 240;
    const px = (x: number) => x0 + 50 + (x / maxX) * pw;
    const py = (y: number) => 40 + ph - (y / maxY) * ph;
    const out = [
      `<text x="${x0 + 50}" y="24" font-size="14" font-weight="bold">${title}</text>`,
      `<line x1="${px(0)}" y1="${py(0)}" x2="${px(maxX)}" y2="${py(0)}" stroke="#333"/>`,
      `<line x1="${px(0)}" y1="${py(0)}" x2="${px(0)}" y2="${py(maxY)}" stroke="#333"/>`,
      `<text x="${px(maxX / 2)}" y="${py(0) + 32}" font-size="11" text-anchor="middle">database size (MiB)</text>`,
      `<text x="${x0 + 12}" y="${py(maxY / 2)}" font-size="11" transform="rotate(-90 ${x0 + 12} ${py(maxY / 2)})" text-anchor="middle">${unit}</text>`,
    ];
    for (let i = 0; i <= 4; i++) {
      const y = (maxY / 4) * i;
      const x = (maxX / 4) * i;
      out.push(`<text x="${px(0) - 6}" y="${py(y) + 4}" font-size="10" text-anchor="end">${y >= 100 ? Math.round(y) : y.toFixed(1)}</text>`);
      out.push(`<text x="${px(x)}" y="${py(0) + 16}" font-size="10" text-anchor="middle">${Math.round(x)}</text>`);
    }
    let i = 0;
    for (const [name, points] of series) {
      const color = COLORS[i % COLORS.length]!;
      const sorted = points.sort((a, b) => a.x - b.x);
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${sorted.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(" ")}"/>`);
      for (const p of sorted) out.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3" fill="${color}"/>`);
      out.push(`<text x="${x0 + 60}" y="${336 + 13 * i}" font-size="11" fill="${color}">— ${escapeXml(name)}</text>`);
      i++;
    }
    return out.join("\n");
  };
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H + 60}" viewBox="0 0 ${W} ${H + 60}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    panel(0, "Wall time (s)", (r) => r.medianMs / 1000, "seconds"),
    panel(430, "Peak RSS (MiB)", (r) => r.peakRssMiB, "MiB"),
    `</svg>`,
  ].join("\n");
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);
}
