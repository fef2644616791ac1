import { PREFIXES, type CatalogSet } from "../../core/index.ts";
import { COMMON_OPTIONS, WORKER_OPTIONS, WORKER_USAGE, parseFlags, storeFromFlags, type Command } from "../config.ts";
import { allEntries, readCatalog } from "../chain.ts";
import type { StoredObject } from "../store/types.ts";

/** `r2backup list`: every backup set in the bucket, complete or not, with its files and stored size. */

export interface ListedSet extends CatalogSet {
  bytes: number;
  /** Full and incremental sets: whether the chain holds it (a complete set outside it lost a race, or predates the chain). */
  inChain?: boolean;
}

function withSizes(sets: CatalogSet[], objects: StoredObject[], prefix: string): ListedSet[] {
  const sizes = new Map<string, number>();
  for (const o of objects) {
    const id = o.key.slice(prefix.length).split("/")[0]!;
    sizes.set(id, (sizes.get(id) ?? 0) + o.size);
  }
  return sets.map((s) => ({ ...s, bytes: sizes.get(s.id) ?? 0 }));
}

export const listCommand: Command = {
  usage: `r2backup list [--json]\n\n${WORKER_USAGE}\n  --json                    print the sets as JSON`,
  async run(args, ctx) {
    const { values } = parseFlags(args, { ...WORKER_OPTIONS, ...COMMON_OPTIONS }, "list");
    if (values.help) {
      ctx.io.stdout.write(`${this.usage}\n`);
      return 0;
    }
    const store = storeFromFlags(values, ctx.env, ctx.logger, ctx.io.signal);
    const catalog = await readCatalog(store);
    const area = (prefix: string) => catalog.objects.filter((o) => o.key.startsWith(prefix));
    const objects = { full: area(PREFIXES.full), incremental: area(PREFIXES.incremental), daily: area(PREFIXES.daily) };
    const { head } = await store.chain();
    const chained = new Set((await allEntries(store, head)).map((e) => `${e.kind}/${e.id}`));
    const member = (list: ListedSet[]) => (head ? list.map((s) => ({ ...s, inChain: chained.has(`${s.kind}/${s.id}`) })) : list);
    const sets = [
      ...member(withSizes(catalog.full, objects.full, PREFIXES.full)),
      ...member(withSizes(catalog.incremental, objects.incremental, PREFIXES.incremental)),
      ...withSizes(catalog.daily, objects.daily, PREFIXES.daily),
    ];
    if (values.json) {
      ctx.io.stdout.write(`${JSON.stringify({ sets, unknown: catalog.unknown }, null, 2)}\n`);
      return 0;
    }
    if (sets.length === 0) {
      ctx.io.stdout.write("no backups yet (run: r2backup run --db <path> --kind full)\n");
      return 0;
    }
    const lines = [["KIND", "ID", "STATE", "SIZE", "FILES"]];
    for (const s of sets) {
      lines.push([
        s.kind,
        s.id,
        !s.complete ? "INCOMPLETE" : s.inChain === false ? "not in chain" : "complete",
        s.bytes < 1024 * 1024 ? `${(s.bytes / 1024).toFixed(1)} KiB` : `${(s.bytes / 1024 / 1024).toFixed(1)} MiB`,
        s.files.filter((f) => f !== "metadata.json").join(","),
      ]);
    }
    const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
    ctx.io.stdout.write(`${lines.map((l) => l.map((c, i) => (i === l.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n")}\n`);
    return 0;
  },
};
