#!/usr/bin/env -S node --max-semi-space-size=1
// The `r2backup` command (also `npm run backup`, which passes the same flag).
// --max-semi-space-size=1: a 1 MiB young generation is scavenged often, so the Buffers a backup or restore
// streams through are freed within a MiB or two instead of piling up; at 1 GiB a restore peaks at ~125
// instead of ~170 MiB and, with fewer fresh pages to fault in, runs ~10% faster (bench/results). V8 reads
// the flag only at start-up, hence the shebang. Plain JavaScript so that, with Node's compile cache, a
// second run loads the TypeScript sources already stripped: start-up drops from ~0.6 s to ~0.3 s and
// ~110 to ~80 MiB. The cache lives in NODE_COMPILE_CACHE or the OS temp dir; NODE_DISABLE_COMPILE_CACHE=1
// turns it off.
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./cli-process.ts");
