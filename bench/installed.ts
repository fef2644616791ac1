import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/**
 * What the benchmarks run: the package as an app installs it, `dist/` (compiled JavaScript, what `r2backup`'s bin
 * link and `import ... from "r2-sqlite-backup"` load), built from the sources by `buildInstalled()` first. The
 * TypeScript sources under Node's type stripping cost ~20 MiB more RSS and a slower first start, which no user
 * pays.
 */
export const CLI_BIN = fileURLToPath(new URL("../dist/job/bin.js", import.meta.url));
export const LIBRARY = fileURLToPath(new URL("../dist/job/index.js", import.meta.url));

/** Builds dist/ from the sources (scripts/build.ts, ~4 s), so the benchmark measures this checkout. */
export function buildInstalled(): void {
  execFileSync(process.execPath, [fileURLToPath(new URL("../scripts/build.ts", import.meta.url))], { stdio: ["ignore", "ignore", "inherit"] });
}
