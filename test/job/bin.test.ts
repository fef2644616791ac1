import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { nodeFlagsOf } from "../../bench/measure.ts";

/**
 * The `r2backup` entry points agree: the bin's shebang, `npm run backup`, and what the benchmarks run. The
 * package's bin is job/bin.js compiled to dist/ (test/e2e/package.test.ts runs it from node_modules).
 */
const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { bin: Record<string, string>; scripts: Record<string, string> };
const BIN = new URL("../../job/bin.js", import.meta.url);

describe("the r2backup bin", () => {
  it("is job/bin.js (compiled to dist/job/bin.js for the package), run by `npm run backup` with the Node flags on its shebang line", () => {
    expect(pkg.bin.r2backup).toBe("dist/job/bin.js");
    const flags = nodeFlagsOf(BIN.pathname);
    expect(flags).toContain("--max-semi-space-size=1");
    expect(pkg.scripts.backup).toBe(["node", ...flags, "job/bin.js"].join(" "));
  });

  it("reads no flags from a plain shebang or from a file without one", () => {
    const dir = mkdtempSync(join(tmpdir(), "bin-flags-"));
    try {
      writeFileSync(join(dir, "plain.js"), "#!/usr/bin/env node\nconsole.log(1);\n");
      writeFileSync(join(dir, "two.js"), "#!/usr/bin/env -S node --a=1 --b\n");
      expect(nodeFlagsOf(join(dir, "plain.js"))).toEqual([]);
      expect(nodeFlagsOf(new URL("../../scripts/start.ts", import.meta.url).pathname)).toEqual([]);
      expect(nodeFlagsOf(join(dir, "two.js"))).toEqual(["--a=1", "--b"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
