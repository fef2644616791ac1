import { describe, expect, it } from "vitest";
import { median, renderMarkdown, renderSvg, type BenchReport } from "../../bench/report.ts";
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
