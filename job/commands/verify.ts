import { COMMON_OPTIONS, WORKER_OPTIONS, WORKER_USAGE, parseFlags, prepareTmpDir, storeFromFlags, usageOf, type Command } from "../config.ts";
import { EXIT, exitCodeOf } from "../errors.ts";
import { metricsFromEnv } from "../notify.ts";
import { verify } from "../restore/index.ts";
import { parseAtFlag, parseIntegrityFlag, progressTo } from "./restore.ts";

/**
 * `r2backup verify`: the restore drill (docs/design.md, "Job"). Restores the backup at `--at` into a temporary
 * directory, checks it, records the result as `backups/drills/<ts>.json` (a failed drill too) and puts the
 * drill metrics. Replaces nothing. Exits non-zero when the drill failed or could not be recorded.
 */
const VERIFY_OPTIONS = { at: { type: "string" }, "tmp-dir": { type: "string" }, integrity: { type: "string" } } as const;

export const verifyCommand: Command = {
  usage: `r2backup verify [--at <time>|latest] [--tmp-dir <dir>] [--json]

${usageOf(VERIFY_OPTIONS, {
  at: { arg: "<time>", text: "a backup timestamp or an ISO time with a zone", fallback: "latest" },
  "tmp-dir": { arg: "<dir>", text: "where the drill restores; needs room for every database of the backup", env: "BACKUP_TMP_DIR", fallback: "the OS temp dir" },
  integrity: { arg: "full|quick", text: "PRAGMA integrity_check or quick_check (run's and restore's flag too)", fallback: "full" },
})}
${WORKER_USAGE}
  --json                    print the drill record as JSON
Metrics: with CLOUDWATCH_NAMESPACE (+ AWS_REGION and credentials) puts RestoreDrillAgeHours (0 after a good
drill, else the age of the last good one), RestoreDrillFailed and RestoreDrillDurationSeconds.

Exit codes: 0 the drill passed and was recorded; otherwise the restore's code (8 integrity, 9 nothing to
restore, ...), or 1 when the record could not be written.`,
  async run(args, ctx) {
    const { values } = parseFlags(args, { ...WORKER_OPTIONS, ...COMMON_OPTIONS, ...VERIFY_OPTIONS }, "verify");
    if (values.help) {
      ctx.io.stdout.write(`${this.usage}\n`);
      return 0;
    }
    const store = storeFromFlags(values, ctx.env, ctx.logger, ctx.io.signal);
    const metrics = metricsFromEnv(ctx.env);
    const tmpDir = values["tmp-dir"] ?? ctx.env.BACKUP_TMP_DIR;
    await prepareTmpDir(tmpDir);
    const result = await verify({
      store,
      at: parseAtFlag(values.at),
      check: parseIntegrityFlag(values.integrity),
      ...(tmpDir ? { tmpDir } : {}),
      ...(metrics ? { metrics } : {}),
      onProgress: progressTo(ctx),
      ...(ctx.io.signal ? { signal: ctx.io.signal } : {}),
    });
    const r = result.record;
    if (values.json) ctx.io.stdout.write(`${JSON.stringify({ ...r, key: result.key ?? null, recordError: result.recordError ?? null }, null, 2)}\n`);
    else {
      ctx.io.stdout.write(
        r.ok
          ? `drill ${r.ts}: ok, restored ${r.sources.join(", ")} to ${r.restoresTo} (full ${r.full} + ${r.chain.length} incremental(s), ${(r.bytes / 1024 / 1024).toFixed(1)} MiB, integrity ${r.integrity}) in ${(r.durationMs / 1000).toFixed(1)} s\n`
          : `drill ${r.ts}: FAILED: ${r.error}\n`,
      );
      ctx.io.stdout.write(result.key ? `recorded as ${result.key}\n` : `not recorded: ${result.recordError}\n`);
    }
    if (!r.ok) ctx.logger.error(`verify: the drill failed: ${r.error}`);
    if (result.recordError) ctx.logger.error(`verify: record the drill: ${result.recordError}`);
    if (result.metricsError) ctx.logger.warn(`put drill metrics: ${result.metricsError}`);
    if (!r.ok) return exitCodeOf(result.error);
    return result.key ? EXIT.ok : EXIT.failed;
  },
};
