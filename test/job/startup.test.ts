import { readdir, readFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * What the CLI loads before it runs a command (issue 16: peak RSS): `r2backup --help` imports no command, and
 * the heavy modules are imported by the code that needs them, when it runs. Read from the sources' static
 * imports, so a new top-level import of one fails here rather than in a benchmark.
 */
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const IMPORT_RE = /^(?:import|export)\s+(?!type\b)(?:[^;]*?\sfrom\s+)?"([^"]+)";/gm;

/** The value imports of a module (type-only ones are erased). */
async function importsOf(file: string): Promise<string[]> {
  const text = await readFile(join(ROOT, file), "utf8");
  return [...text.matchAll(IMPORT_RE)].map((m) => m[1]!);
}

/** Every module a module loads statically: repository files relative to the root, packages and builtins by name. */
async function staticGraph(entry: string): Promise<Set<string>> {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    if (!file.endsWith(".ts")) continue;
    for (const spec of await importsOf(file)) todo.push(spec.startsWith(".") ? relative(ROOT, resolve(ROOT, dirname(file), spec)) : spec);
  }
  return seen;
}

describe("the CLI's start-up", () => {
  it("`r2backup --help` loads no command, and none of the backup's, the restore's or the metrics' modules", async () => {
    const graph = [...(await staticGraph("job/cli-process.ts"))];
    expect(graph.filter((m) => m.startsWith("job/commands/") && m !== "job/commands/index.ts")).toEqual([]);
    for (const heavy of ["job/backup.ts", "job/store/http-store.ts", "tar-stream", "@aws-sdk/client-cloudwatch", "node:http", "node:https", "node:sqlite", "zod"]) {
      expect(graph).not.toContain(heavy);
    }
  });

  it("a backup without documents does not load tar-stream", async () => {
    expect(await staticGraph("job/backup.ts")).not.toContain("tar-stream");
  });

  it("no module of job/ or core/ imports node:http (an ESM import reads its lazy WebSocket: Node's undici, 13 MiB)", async () => {
    const files = [...(await readdir(join(ROOT, "job"), { recursive: true })).map((f) => `job/${f}`), ...(await readdir(join(ROOT, "core"))).map((f) => `core/${f}`)];
    const importers: string[] = [];
    for (const f of files.filter((f) => f.endsWith(".ts"))) if ((await importsOf(f)).includes("node:http")) importers.push(f);
    expect(importers).toEqual([]);
  });
});
