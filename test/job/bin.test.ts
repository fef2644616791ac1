import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

  it("on a Node outside engines (20, 23) it says which Node it needs and what to do, exit 2, not a SyntaxError", () => {
    for (const version of ["20.1.0", "22.15.0", "23.11.0"]) {
      // The running Node, told it is `version` before bin.js loads: the check reads process.versions.
      const fake = `data:text/javascript,Object.defineProperty(process,'versions',{value:{...process.versions,node:'${version}'}})`;
      const r = spawnSync(process.execPath, ["--import", fake, BIN.pathname, "--help"], { encoding: "utf8" });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toContain(`needs Node.js 22.16+ or 24+ (node:sqlite's backup(), zstd); this is Node ${version} (install Node 24 LTS`);
      expect(r.stderr).not.toMatch(/SyntaxError/);
      expect(r.stdout).toBe("");
    }
  });

  it.skipIf(!isOldNode("/usr/bin/node"))("the system's Node 20, where there is one, gets the same message", () => {
    const r = spawnSync("/usr/bin/node", [BIN.pathname, "--help"], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/needs Node\.js 22\.16\+ or 24\+/);
  });
});

function isOldNode(path: string): boolean {
  if (!existsSync(path)) return false;
  const [major = 0, minor = 0] = spawnSync(path, ["-p", "process.versions.node"], { encoding: "utf8" }).stdout.trim().split(".").map(Number);
  return !((major === 22 && minor >= 16) || major >= 24);
}
