import {
  ContractError,
  PREFIXES,
  catalogFromKeys,
  dayOfTimestamp,
  formatTimestamp,
  manifestKey,
  parseManifest,
  planRestore,
  type Catalog,
  type Manifest,
  type PlanSet,
  type RestorePlan,
  type RestoreStep,
} from "../../core/index.ts";
import { JobError } from "../errors.ts";
import type { BackupStore } from "../store/types.ts";

/**
 * Restore planning against the bucket: list it, read the manifests that can matter for `at`, and hand
 * them to core's pure `planRestore`. Only the manifests of complete sets in range are fetched: the daily
 * copies from the newest full's day on, and the incrementals after the chosen full.
 */

/** A plan plus the manifests of its steps, in order (the full first). */
export interface LoadedPlan {
  plan: RestorePlan;
  full: Manifest;
  chain: Manifest[];
  /** Every restorable full (own or daily) timestamp, oldest first: for "the next older candidate". */
  fullTimes: string[];
}

/** Reads and validates one manifest; a missing or invalid one is an error naming its key. */
export async function readManifest(store: BackupStore, key: string): Promise<Manifest> {
  const res = await store.get(key);
  if (!res) throw new JobError("notFound", `read manifest '${key}': it is gone`, { hint: "the bucket changed while restoring; run again" });
  const text = await new Response(res.body).text();
  try {
    return parseManifest(text, key);
  } catch (e) {
    throw new JobError("integrity", (e as Error).message, { cause: e });
  }
}

/** Lists the backup sets (full, incremental, daily) of the bucket. */
export async function loadCatalog(store: BackupStore): Promise<Catalog> {
  const keys: string[] = [];
  for (const prefix of [PREFIXES.full, PREFIXES.incremental, PREFIXES.daily]) {
    for (const o of await store.listAll(prefix)) keys.push(o.key);
  }
  return catalogFromKeys(keys);
}

function planError(e: unknown): never {
  if (e instanceof ContractError) throw new JobError("notFound", `${e.operation} ${e.thing} '${e.id}': ${e.reason}`, { hint: e.hint, cause: e });
  throw e;
}

/**
 * Plans a restore at `at`: the newest complete full (or daily copy) at or before it, then the contiguous
 * chain of complete incrementals. An unknown time or a gap is a `notFound` JobError naming it.
 */
export async function loadPlan(store: BackupStore, at: Date | "latest"): Promise<LoadedPlan> {
  const catalog = await loadCatalog(store);
  const limit = at === "latest" ? "99999999T999999Z" : formatTimestamp(at);
  const fulls: PlanSet[] = catalog.full.map((s) => ({ kind: "full", id: s.id, complete: s.complete }));
  const newestFull = fulls.filter((s) => s.complete && s.id <= limit).at(-1)?.id;
  const fromDay = newestFull ? dayOfTimestamp(newestFull) : "0000-00-00";
  const toDay = at === "latest" ? "9999-99-99" : dayOfTimestamp(limit);

  const dailies: PlanSet[] = [];
  const manifests = new Map<string, Manifest>();
  // A daily copy whose manifest is damaged is left out, so it blocks only a restore that needs it: one
  // whose own full is gone. Such a restore then fails naming the damaged manifest.
  const damaged: JobError[] = [];
  for (const s of catalog.daily) {
    if (!s.complete) {
      dailies.push({ kind: "daily", id: s.id, complete: false });
      continue;
    }
    // A daily copy can only beat the newest own full when its day is that full's day or later.
    if (s.id < fromDay || s.id > toDay) continue;
    let m: Manifest;
    try {
      m = await readManifest(store, manifestKey("daily", s.id));
    } catch (e) {
      if (!(e instanceof JobError && e.kind === "integrity")) throw e;
      damaged.push(e);
      dailies.push({ kind: "daily", id: s.id, complete: false });
      continue;
    }
    manifests.set(`daily/${s.id}`, m);
    dailies.push({ kind: "daily", id: s.id, complete: true, promotedFrom: m.promotedFrom ?? m.id });
  }

  let first: RestorePlan;
  try {
    first = planRestore(at, [...fulls, ...dailies]);
  } catch (e) {
    if (damaged[0]) throw damaged[0];
    planError(e);
  }
  const incrementals: PlanSet[] = [];
  for (const s of catalog.incremental) {
    if (s.id <= first.full.ts || s.id > limit) continue;
    if (!s.complete) {
      incrementals.push({ kind: "incremental", id: s.id, complete: false });
      continue;
    }
    const m = await readManifest(store, manifestKey("incremental", s.id));
    manifests.set(`incremental/${s.id}`, m);
    incrementals.push({ kind: "incremental", id: s.id, complete: true, base: m.base, previous: m.previous });
  }
  let plan: RestorePlan;
  try {
    plan = planRestore(at, [...fulls, ...dailies, ...incrementals]);
  } catch (e) {
    planError(e);
  }

  const fullKey = plan.full.kind === "daily" ? `daily/${plan.full.id}` : `full/${plan.full.id}`;
  const full = manifests.get(fullKey) ?? (await readManifest(store, manifestKey("full", plan.full.id)));
  checkStep(full, plan.full);
  const chain = plan.chain.map((step) => {
    const m = manifests.get(`incremental/${step.id}`)!;
    checkStep(m, step);
    return m;
  });
  const fullTimes = [...new Set([...fulls.filter((s) => s.complete).map((s) => s.id), ...dailies.filter((d) => d.complete).map((d) => d.promotedFrom!)])].sort();
  return { plan, full, chain, fullTimes };
}

function checkStep(m: Manifest, step: RestoreStep): void {
  const want = step.kind === "incremental" ? "incremental" : "full";
  if (m.kind !== want || m.id !== step.ts) {
    throw new JobError("integrity", `read manifest of ${step.kind} '${step.id}': it describes ${m.kind} ${m.id}`, { hint: "the manifest was written for another set" });
  }
}

/**
 * The restorable time just before a failed step, for the "--at" hint: the previous step of the chain, or
 * the next older full backup when the full itself failed. Undefined when nothing older exists.
 */
export function olderCandidate(loaded: LoadedPlan, failedTs: string): string | undefined {
  const steps = [loaded.plan.full.ts, ...loaded.plan.chain.map((c) => c.ts)];
  const i = steps.indexOf(failedTs);
  if (i > 0) return steps[i - 1];
  return loaded.fullTimes.filter((t) => t < loaded.plan.full.ts).at(-1);
}
