import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { writeWorkerBundle } from "../worker/bundle.ts";

/**
 * `npm run build` (and `prepack`): the installable package and the Worker bundle, both under dist/.
 * - dist/core, dist/job: `tsc -p tsconfig.build.json`, ESM JavaScript and .d.ts (what `npm pack` ships).
 *   Cleared first, so a renamed source never leaves a stale module in the tarball.
 * - dist/package.json: `{ type, version }`, because job/backup.ts reads the tool version it writes into
 *   every manifest from `../package.json` beside itself, which is dist/ once compiled.
 * - dist/worker/index.js: the Worker bundle (the Pulumi program bundles it again itself; not shipped).
 */
const root = fileURLToPath(new URL("../", import.meta.url));
const dist = (path: string) => fileURLToPath(new URL(`../dist/${path}`, import.meta.url));

for (const path of ["core", "job", "package.json"]) rmSync(dist(path), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const result = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: root, stdio: "inherit" });
if (result.status !== 0) {
  console.error(`build package 'dist/': tsc exited with ${result.status ?? result.signal}`);
  process.exit(1);
}
const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
writeFileSync(dist("package.json"), `${JSON.stringify({ type: "module", version: pkg.version, private: true }, null, 2)}\n`);
console.log(`built ${dist("job/index.js")} (and dist/core)`);

const worker = await writeWorkerBundle();
console.log(`built ${worker}`);
