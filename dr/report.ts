import type { RecoveryReport, StepStatus } from "./recover.ts";

/** The recovery report for people: one line per step, then the error and what to do about it. */

const MARK: Record<StepStatus, string> = { ok: "ok     ", failed: "FAILED ", skipped: "skipped", planned: "plan   " };

export function formatReport(report: RecoveryReport): string {
  const what = `stack '${report.stack}' (pulumi ${report.action}), restore ${report.at === "latest" ? "the newest complete backup" : `at ${report.at}`} to ${report.to}`;
  const head = report.dryRun ? `Disaster recovery plan (dry run: nothing was created, deployed or restored) for ${what}` : `Disaster recovery of ${what}`;
  const lines = [head];
  const width = Math.max(...report.steps.map((s) => s.step.length));
  for (const s of report.steps) {
    const time = s.status === "ok" || s.status === "failed" ? ` (${formatDuration(s.durationMs)})` : "";
    lines.push(`  ${MARK[s.status]} ${s.step.padEnd(width)}  ${s.detail}${time}`);
  }
  if (report.restore && report.restore.notes.length > 0) {
    lines.push("  notes:");
    for (const note of report.restore.notes) lines.push(`    - ${note}`);
  }
  if (report.error) {
    lines.push("", `error (${report.error.step} step): ${report.error.message}`);
    if (report.error.hint) lines.push(`what to do: ${report.error.hint}`);
    lines.push(`exit code ${report.exitCode} after ${formatDuration(report.durationMs)}`);
  } else {
    lines.push(
      "",
      report.dryRun ? `Plan complete in ${formatDuration(report.durationMs)}. Run again without --dry-run to carry it out.` : `Recovered in ${formatDuration(report.durationMs)}.`,
    );
  }
  return `${lines.join("\n")}\n`;
}

function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}
