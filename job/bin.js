#!/usr/bin/env -S node --max-semi-space-size=1
// The `r2backup` command (also `npm run backup`, which passes the same flag).
// --max-semi-space-size=1: a 1 MiB young generation is scavenged often, so the Buffers a backup or restore
// streams through are freed within a MiB or two instead of piling up; at 1 GiB a restore peaks at ~125
// instead of ~170 MiB and, with fewer fresh pages to fault in, runs ~10% faster (bench/results). V8 reads
// the flag only at start-up, hence the shebang. Plain JavaScript so that, with Node's compile cache, a
// second run loads the TypeScript sources already stripped: start-up drops from ~0.6 s to ~0.3 s and
// ~110 to ~80 MiB. The cache lives in NODE_COMPILE_CACHE or the OS temp dir; NODE_DISABLE_COMPILE_CACHE=1
// turns it off.
//
// The Node version is checked first, with nothing imported yet: an older Node fails on the imports below
// (a SyntaxError on Node 20) before any of the CLI could say what is wrong.
// The Nodes of package.json's engines (^22.16.0 || >=24): no Node 23 has both node:sqlite's backup() and
// isTransaction.
const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
if (!((major === 22 && minor >= 16) || major >= 24)) {
  const message = `r2backup: needs Node.js 22.16+ or 24+ (node:sqlite's backup(), zstd); this is Node ${process.versions.node} (install Node 24 LTS, e.g. \`nvm install 24\`, or run \`npm run backup -- <command>\` in the repository, which uses its pinned Node 24)`;
  process.stderr.write(
    process.stderr.isTTY ? `error: ${message}\n` : `${JSON.stringify({ time: new Date().toISOString(), level: "error", message, exitCode: 2, kind: "usage" })}\n`,
  );
  process.exit(2);
}
const { enableCompileCache } = await import("node:module");
enableCompileCache();
await import("./cli-process.ts");
