import { parseArgs } from "node:util";
import { relative } from "node:path";
import { runDemo, type DemoSummary } from "./demo.ts";

/**
 * `npm start [-- --db <path>] [--events N] [--json]`: the whole data path on this machine, no account.
 * Exits 0 only when every check passed.
 */
const USAGE = `usage: npm start [-- --db <path>] [--events <n>] [--json]

  --db <path>    back up (and restore a copy of) your own SQLite database instead of the demo
  --events <n>   app actions (todo created, completed, deleted) before the full backup (default 600)
  --json         print the summary as JSON
`;

function kib(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

function print(s: DemoSummary): void {
  const rel = (p: string) => relative(process.cwd(), p) || ".";
  const timed = s.sets.filter((x) => x.kind !== "daily");
  const out = [
    "",
    `Worker: ${s.workerUrl} (Miniflare, local R2 in ${rel(s.paths.r2)})`,
    `Database: ${rel(s.database)}`,
    "",
    "Backups taken:",
    ...s.backups.map(
      (b) =>
        `  ${b.kind.padEnd(11)} ${b.id}  ${String(b.objects).padStart(2)} objects  ${kib(b.uncompressedBytes).padStart(9)} -> ${kib(b.storedBytes).padStart(9)}  ${b.durationMs} ms${b.promoted ? `  (promoted to ${b.promoted})` : ""}`,
    ),
    "",
    "Restores:",
    ...s.restores.map((r) => `  at ${r.at.padEnd(16)} -> reaches ${r.restoresTo} with ${r.chain} incremental(s), ${r.durationMs} ms: ${rel(r.to)}`),
    "",
    "Checks:",
    ...s.checks.map((c) => `  ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`),
    "",
    `In the bucket (earlier runs included; the newest ${Math.min(12, timed.length)} of ${timed.length} full and incremental sets, then the daily copies):`,
    ...[...timed.slice(-12), ...s.sets.filter((x) => x.kind === "daily")].map((x) => `  ${x.kind.padEnd(11)} ${x.id}${x.complete ? "" : "  (incomplete: never restored)"}`),
    "",
    `The bucket now holds ${s.bucket.full} full, ${s.bucket.incremental} incremental and ${s.bucket.daily} daily backup(s)${s.bucket.incomplete ? `, and ${s.bucket.incomplete} incomplete set(s) that nothing restores from` : ""}.`,
    "Run again to add to the same local bucket; `npm run dev` keeps the Worker up; `rm -rf .mf-data .local` starts over.",
    "",
  ];
  process.stdout.write(out.join("\n"));
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { db: { type: "string" }, events: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } }));
  } catch (e) {
    process.stderr.write(`npm start: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const events = values.events === undefined ? undefined : Number(values.events);
  if (events !== undefined && (!Number.isInteger(events) || events < 10)) {
    process.stderr.write(`npm start: --events '${values.events}': expected a whole number of at least 10\n`);
    return 2;
  }
  const summary = await runDemo({
    ...(values.db ? { db: values.db } : {}),
    ...(events ? { events } : {}),
    log: values.json ? undefined : (line) => process.stderr.write(`- ${line.replaceAll(`${process.cwd()}/`, "")}\n`),
  });
  if (values.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else print(summary);
  return summary.ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    const err = e as Error & { exitCode?: number };
    process.stderr.write(`npm start failed: ${err.message}\n`);
    process.exit(typeof err.exitCode === "number" ? err.exitCode : 1);
  },
);
