import { PREFIXES, catalogInChain, summarizeStatus } from "../../core/index.ts";
import { readCatalog } from "../chain.ts";
import { COMMON_OPTIONS, WORKER_OPTIONS, WORKER_USAGE, intFlag, parseFlags, storeFromFlags, usageOf, type Command } from "../config.ts";

/**
 * `r2backup status`: the newest complete full, incremental, daily and drill with their ages, computed from
 * the bucket listing with core's `summarizeStatus` (the same rule as the Worker's `/api/status`).
 * Exits 0 when healthy, 1 when not, so a cron or a probe can use it.
 */
const STATUS_OPTIONS = { "max-age-hours": { type: "string" } } as const;
/** The age at which the newest full backup makes the bucket unhealthy: 6-hourly backups plus an hour. */
const DEFAULT_MAX_AGE_HOURS = 7;

export const statusCommand: Command = {
  usage: `r2backup status [--json] [--max-age-hours <h>]\n\n${usageOf(STATUS_OPTIONS, {
    "max-age-hours": { arg: "<h>", text: "a full backup older than this is unhealthy", env: "MAX_BACKUP_AGE_HOURS", fallback: DEFAULT_MAX_AGE_HOURS },
  })}\n${WORKER_USAGE}\n  --json                    print the status as JSON`,
  async run(args, ctx) {
    const { values } = parseFlags(args, { ...WORKER_OPTIONS, ...COMMON_OPTIONS, ...STATUS_OPTIONS }, "status");
    if (values.help) {
      ctx.io.stdout.write(`${this.usage}\n`);
      return 0;
    }
    const store = storeFromFlags(values, ctx.env, ctx.logger, ctx.io.signal);
    // core parses drill keys (passed `<ts>.json`, failed `<ts>.failed.json`); a failed one is a warning.
    // Ages on the Worker's clock (the one set ids come from), whatever this machine's says; the newest sets are the chain's.
    const chain = await store.chain();
    const withDrills = catalogInChain(await readCatalog(store, { areas: [PREFIXES.full, PREFIXES.incremental, PREFIXES.daily, PREFIXES.drills] }), chain.head);
    const status = summarizeStatus(withDrills, chain.clock(), intFlag(values["max-age-hours"] ?? ctx.env.MAX_BACKUP_AGE_HOURS, "max-age-hours", DEFAULT_MAX_AGE_HOURS, 1));
    if (Math.abs(chain.skewMs) > 60_000) {
      status.warnings.push(`this machine's clock is ${Math.round(chain.skewMs / 1000)} s off the Worker's; ages and set ids use the Worker's (check timedatectl or chrony here)`);
    }
    if (values.json) ctx.io.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
    else {
      const row = (label: string, e: { id: string; ageHours: number } | null) => `  ${label.padEnd(12)}${e ? `${e.id}  (${e.ageHours} h ago)` : "none"}`;
      ctx.io.stdout.write(
        `${[
          `${status.healthy ? "healthy" : "UNHEALTHY"}`,
          row("full", status.full),
          row("incremental", status.incremental),
          row("daily", status.daily),
          row("drill", status.drill),
          ...status.problems.map((p) => `  problem: ${p}`),
          ...status.warnings.map((w) => `  warning: ${w}`),
        ].join("\n")}\n`,
      );
    }
    return status.healthy ? 0 : 1;
  },
};
