import { describe, expect, it } from "vitest";
import type { LitestreamBench, LitestreamSide } from "../../bench/litestream.ts";
import { median, renderLitestreamTable, renderMarkdown, renderSvg, type BenchReport } from "../../bench/report.ts";
import { runMeasured } from "../../bench/measure.ts";

const report: BenchReport = {
  date: "2026-11-29",
  machine: { cpu: "Test CPU", cores: 2, memoryGiB: 24, os: "linux", node: "v24.21.0", sqlite: "3.50.4" },
  rows: [
    {
      name: "full backup",
      sizeBytes: 100 * 2 ** 20,
      medianMs: 1200,
      baseline: { name: "sqlite3+zstd+curl", medianMs: 1100 },
      ratio: 1.09,
      peakRssMiB: 90,
      target: "≤ 1.2×",
      pass: true,
    },
    {
      name: "full backup",
      sizeBytes: 2 ** 30,
      medianMs: 14_000,
      baseline: { name: "sqlite3+zstd+curl", medianMs: 10_000 },
      ratio: 1.4,
      peakRssMiB: 95,
      target: "≤ 1.2×",
      pass: false,
      note: "slow disk",
    },
  ],
};

describe("the benchmark report", () => {
  it("renders a markdown table with the machine, ratios, memory and which targets are missed", () => {
    const md = renderMarkdown(report);
    expect(md).toContain("Machine: Test CPU, 2 cores, 24 GiB");
    expect(md).toContain("| full backup | 100 MiB | 1.20 s | sqlite3+zstd+curl: 1.10 s | 1.09 |  | 90 MiB | ≤ 1.2× | yes |");
    expect(md).toContain("| full backup | 1 GiB | 14.0 s | sqlite3+zstd+curl: 10.0 s | 1.40 |  | 95 MiB | ≤ 1.2× | **no** |");
    expect(md).toContain("- full backup (1 GiB): slow disk");
    expect(md).toContain("- full backup: 90 MiB at 100 MiB, 95 MiB at 1 GiB (+6% for 10x the data)");
  });

  it("escapes a pipe in a cell so the table keeps its columns", () => {
    const md = renderMarkdown({ ...report, rows: [{ name: "restore", sizeBytes: 2 ** 20, medianMs: 10, baseline: { name: "curl | zstd -d", medianMs: 5 } }] });
    expect(md).toContain("| curl \\| zstd -d: 5 ms |");
  });

  it("charts time and memory against size, one line per benchmark", () => {
    const svg = renderSvg(report);
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg.match(/<circle/g)).toHaveLength(4);
  });

  it("puts r2backup beside Litestream on the same storage (the local R2, local disk), with workerd's CPU and the storage floor", () => {
    const side = (full: number, cpu: number, workerd: number, stored: number, restore: number): LitestreamSide => ({
      fullSeconds: full,
      fullCpuSeconds: cpu,
      fullWorkerdCpuSeconds: workerd,
      fullPeakRssMiB: 40,
      storedBytes: stored,
      restoreSeconds: restore,
      restoreCpuSeconds: 1,
      restoreWorkerdCpuSeconds: workerd / 2,
      restorePeakRssMiB: 50,
      runs: { fullSeconds: [full], restoreSeconds: [restore] },
    });
    const r: LitestreamBench = {
      bench: "litestream",
      litestreamVersion: "v0.3.13",
      sizeBytes: 2 ** 30,
      runs: 3,
      r2backup: side(20, 30, 25, 300e6, 12),
      r2backupDir: side(18, 26, 0, 300e6, 9),
      litestream: side(25, 20, 0, 400e6, 10),
      litestreamS3: side(40, 22, 12, 400e6, 14),
      floor: { bytes: 300e6, partBytes: 5 * 2 ** 20, uploadSeconds: 8, uploadWorkerdCpuSeconds: 7.5, downloadSeconds: 3, downloadWorkerdCpuSeconds: 2 },
      ratios: { fullWall: 0.8, fullCpu: 1.5, storedBytes: 0.75, restoreWall: 1.2 },
      ratiosS3: { fullWall: 0.5, fullCpu: 1.36, storedBytes: 0.75, restoreWall: 0.86 },
      ratiosDir: { fullWall: 0.72, fullCpu: 1.3, storedBytes: 0.75, restoreWall: 0.9 },
    };
    const md = renderLitestreamTable(r);
    expect(md).toContain("## r2backup and Litestream side by side (1024 MiB, medians of 3)");
    expect(md).toContain(
      "| step | r2backup → local R2 (Worker) | Litestream v0.3.13 → local R2 over S3 | ratio | r2backup → directory | Litestream v0.3.13 → file | ratio | ratio, r2backup → local R2 over Litestream → file |",
    );
    expect(md).toContain("| full backup, wall | 20 s | 40 s | 0.5 | 18 s | 25 s | 0.72 | 0.8 |");
    expect(md).toContain("| full backup, workerd CPU (Worker + local R2) | 25 s | 12 s |  | 0 s | 0 s |  |  |");
    expect(md).toContain("| bytes stored | 300 MB | 400 MB | 0.75 | 300 MB | 400 MB | 0.75 | 0.75 |");
    expect(md).toContain("| restore + integrity_check, wall | 12 s | 14 s | 0.86 | 9 s | 10 s | 0.9 | 1.2 |");
    expect(md).toContain("Storage floor: of r2backup's 20 s full backup, the local R2 alone needs 8 s to take its 300 MB (a multipart upload through the Worker in 5 MiB parts");
    expect(md).toContain("of its 12 s restore, 3 s to serve them back");
    // Every table row has the eight columns.
    for (const line of md.split("\n").filter((l) => l.startsWith("| "))) expect(line.split(" | ")).toHaveLength(8);
  });

  it("takes the median of the runs", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow("median of no samples");
  });

  it("measures a child's wall time and peak memory", async () => {
    const m = await runMeasured(process.execPath, ["-e", "const b = Buffer.alloc(64 * 1024 * 1024, 1); setTimeout(() => console.log(b[0]), 300)"]);
    expect(m.code).toBe(0);
    expect(m.stdout.trim()).toBe("1");
    expect(m.peakRssMiB).toBeGreaterThan(64);
  });
});
