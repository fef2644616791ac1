import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileKey, formatTimestamp, manifestKey, type ChainEntry } from "../core/index.ts";
import { backup } from "../job/backup.ts";
import { chainPosition } from "../job/chain.ts";
import { loadPlan } from "../job/restore/plan.ts";
import { HttpStore } from "../job/store/http-store.ts";
import { ONE_BYTE, oneByteSetFile, oneByteSetManifest, writeLiveStoreDb } from "../test/job/backup-fixtures.ts";
import { startLocalWorker } from "../worker/local.ts";
import { round } from "./report.ts";

/**
 * The chain at scale (issue 13): a set a minute for 30 days (43,200 sets, a full every 6 hours) in the local
 * Worker's chain, then the time to commit one more set (read the head, then the compare-and-swap that stores
 * its manifest) and to plan a restore (the newest full before a time and the incrementals after it, their
 * manifests read) with it. Targets: under 1 s each.
 */

const MINUTE = 60_000;
/** `count` entries a minute apart ending `endMs`, a full every `fullEvery`. */
export function syntheticChain(count: number, endMs: number, fullEvery = 360): ChainEntry[] {
  const entries: ChainEntry[] = [];
  let base = "";
  for (let i = 0; i < count; i++) {
    const at = endMs - (count - 1 - i) * MINUTE;
    const id = formatTimestamp(new Date(at));
    const full = i % fullEvery === 0;
    if (full) base = id;
    entries.push({ kind: full ? "full" : "incremental", id, base, previous: full ? null : entries[i - 1]!.id, capturedAt: new Date(at + 500).toISOString(), sources: ["app"] });
  }
  return entries;
}

export interface ChainBench {
  sets: number;
  commitMs: number[];
  planMs: number[];
  planIncrementals: number;
  fullBackupMs: number;
  incrementalBackupMs: number;
}

export async function benchChain(options: { sets?: number; runs?: number; say?: (s: string) => void } = {}): Promise<ChainBench> {
  const sets = options.sets ?? 43_200;
  const runs = options.runs ?? 3;
  const say = options.say ?? (() => {});
  const worker = await startLocalWorker();
  const dir = await mkdtemp(join(tmpdir(), "bench-chain-"));
  try {
    const store = new HttpStore({ url: worker.url, token: worker.bindings.SERVER_BYPASS_TOKEN! });
    const admin = new HttpStore({ url: worker.url, token: worker.bindings.ADMIN_TOKEN! });
    // Ends an hour ago: the real backups below come after it on the Worker's clock.
    const entries = syntheticChain(sets, Date.now() - 60 * MINUTE);
    const lastFull = entries.findLastIndex((e) => e.kind === "full");
    const needed = entries.slice(lastFull);
    say(`chain: writing ${needed.length} manifests and an index of ${sets} sets`);
    for (let i = 0; i < needed.length; i += 16)
      await Promise.all(needed.slice(i, i + 16).map((e) => admin.put(manifestKey(e.kind, e.id), oneByteSetManifest(e), { contentType: "application/json" })));
    await admin.rebuildChain(entries);

    const planMs: number[] = [];
    const at = new Date(needed.at(-1)!.capturedAt);
    let planIncrementals = 0;
    for (let r = 0; r < runs; r++) {
      const t = performance.now();
      const loaded = await loadPlan(store, at);
      planMs.push(performance.now() - t);
      planIncrementals = loaded.chain.length;
    }

    // Commit: read the head (the run's plan), then the compare-and-swap with the manifest.
    const commitMs: number[] = [];
    let tip = entries.at(-1)!;
    for (let r = 0; r < runs; r++) {
      const at = Date.parse(tip.capturedAt) + 1000;
      const entry: ChainEntry = {
        kind: "incremental",
        id: formatTimestamp(new Date(at)),
        base: tip.base,
        previous: tip.id,
        capturedAt: new Date(at + 1).toISOString(),
        sources: ["app"],
      };
      await store.put(fileKey(entry.kind, entry.id, oneByteSetFile(entry.kind)), ONE_BYTE);
      const t = performance.now();
      const position = await chainPosition(store);
      const outcome = await store.commitSet(oneByteSetManifest(entry), position.expect);
      commitMs.push(performance.now() - t);
      if (!("committed" in outcome)) throw new Error(`bench chain: the commit moved: ${outcome.moved}`);
      tip = entry;
    }

    // Real runs on top of it, end to end (a small database): a full, then an incremental.
    const db = join(dir, "app.db");
    writeLiveStoreDb(db, { events: 1000 });
    const opts = { store, databases: [{ path: db, source: "app" }], tmpDir: join(dir, "tmp"), lockFile: false as const, promote: false };
    let t = performance.now();
    await backup({ ...opts, kind: "full" });
    const fullBackupMs = performance.now() - t;
    writeLiveStoreDb(db, { from: 1001, events: 10 });
    t = performance.now();
    await backup({ ...opts, kind: "incremental" });
    const incrementalBackupMs = performance.now() - t;
    say(`chain: commit ${commitMs.map((m) => round(m)).join(", ")} ms; plan (${planIncrementals} incrementals) ${planMs.map((m) => round(m)).join(", ")} ms`);
    return { sets, commitMs, planMs, planIncrementals, fullBackupMs, incrementalBackupMs };
  } finally {
    await worker.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await benchChain({ say: (s) => process.stderr.write(`${s}\n`) });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
