import {
  ContractError,
  dayOfTimestamp,
  formatTimestamp,
  manifestKey,
  entriesForRestore,
  type ChainEntry,
  type ChainSegmentRef,
  planRestore,
  type Manifest,
  type PlanSet,
  type RestorePlan,
  type RestoreStep,
} from "../../core/index.ts";
import { readCatalog, readEntryManifest, readEntryManifests, readManifestAt, readSegment } from "../chain.ts";
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

function planError(e: unknown): never {
  if (e instanceof ContractError) throw new JobError("notFound", `${e.operation} ${e.thing} '${e.id}': ${e.reason}`, { hint: e.hint, cause: e });
  throw e;
}

/**
 * Plans a restore at `at` from the chain (docs/design.md, "The chain"): the newest full whose data was read at or
 * before `at` (its daily copy when the full has expired), then every incremental after it up to `at`, by their
 * capture times on the Worker's clock. Sets outside the chain (a run that lost the race) are never used. A bucket
 * from before 0.3 has no chain: it is planned from the listing, as are times before the chain's first set.
 */
export async function loadPlan(store: BackupStore, at: Date | "latest", source?: string): Promise<LoadedPlan> {
  const { head } = await store.chain();
  if (!head) return loadPlanFromListing(store, at);
  const read = (ref: ChainSegmentRef) => readSegment(store, ref);
  const found = await entriesForRestore(head, at === "latest" ? "latest" : at.getTime(), read, source);
  if (!found && source !== undefined && !(await entriesForRestore(head, "latest", read, source))) {
    const newest = await entriesForRestore(head, "latest", read);
    throw new JobError("notFound", `plan restore of '${source}': no full backup in the chain holds it`, {
      hint: `the newest full holds ${newest?.full.sources.join(", ") ?? "nothing"}; r2backup list shows every set's databases`,
    });
  }
  if (!found) {
    const first = head.segments[0]?.first ?? head.tail[0]!.id;
    try {
      return await loadPlanFromListing(store, at, first);
    } catch (e) {
      if (!(e instanceof JobError && e.kind === "notFound")) throw e;
      throw new JobError(
        "notFound",
        `plan restore at '${at === "latest" ? "latest" : at.toISOString()}': no full backup in the chain at or before it; the oldest set is ${first}`,
        {
          hint: `use --at ${first} or later`,
        },
      );
    }
  }
  return loadPlanFromChain(store, at, found.full, found.after, head.tail, source);
}

/** Reads the manifests of a chain's full backup (or its daily copy) and incrementals, checked against their entries. */
async function loadPlanFromChain(store: BackupStore, at: Date | "latest", fullEntry: ChainEntry, after: ChainEntry[], tail: ChainEntry[], source?: string): Promise<LoadedPlan> {
  const atLabel = at === "latest" ? "latest" : at.toISOString();
  const notes: string[] = [];
  let full: Manifest;
  let fullStep: RestoreStep = { kind: "full", id: fullEntry.id, ts: fullEntry.id };
  try {
    full = await readEntryManifest(store, fullEntry);
    notes.push(`full ${fullEntry.id}: the chain's newest full backup${source === undefined ? "" : ` holding '${source}'`} read at or before ${atLabel}`);
  } catch (e) {
    if (!(e instanceof JobError && e.kind === "notFound")) throw e;
    const day = dayOfTimestamp(fullEntry.id);
    const daily = await readManifestAt(store, manifestKey("daily", day)).catch((error: unknown) => {
      if (error instanceof JobError && error.kind === "notFound") return undefined;
      throw error;
    });
    if (daily?.promotedFrom !== fullEntry.id) {
      throw new JobError("notFound", `plan restore at '${atLabel}': full backup ${fullEntry.id} has expired and daily/${day} is not a copy of it`, {
        hint: "restore a later time, or one whose daily copy is kept (r2backup list)",
      });
    }
    full = daily;
    fullStep = { kind: "daily", id: day, ts: fullEntry.id };
    notes.push(`full ${fullEntry.id} from daily/${day}: its own objects have expired`);
  }
  checkStep(full, fullStep);
  // The incrementals' manifests, 40 to a request (a set a minute makes hundreds of them between two fulls).
  const chain = await readEntryManifests(store, after, (i) => {
    const before = after[i - 1]?.id ?? fullEntry.id;
    return new JobError("notFound", `plan restore at '${atLabel}': gap in the chain: incremental ${after[i]!.id} is gone`, { hint: `restore up to ${before} with --at ${before}` });
  });
  for (const [i, m] of chain.entries()) {
    const entry = after[i]!;
    if (m.kind !== "incremental" || m.id !== entry.id || m.previous !== entry.previous || m.base !== fullEntry.id) {
      throw new JobError("integrity", `read manifest of incremental '${entry.id}': it describes ${m.kind} ${m.id} continuing ${m.previous}, the chain says ${entry.previous}`, {
        hint: "the manifest was written for another set; rebuild the index (r2backup chain --rebuild) and run again",
      });
    }
  }
  if (after.length > 0) notes.push(`then ${after.length} incremental(s) up to ${after.at(-1)!.id}`);
  // Two databases backed up into one bucket take turns in the chain: without --source the newest set wins.
  if (source === undefined) {
    const others = [...new Set(tail.flatMap((e) => e.sources))].filter((s) => !fullEntry.sources.includes(s)).sort();
    if (others.length > 0) {
      notes.push(`the chain also holds sets of ${others.join(", ")}; this restores ${fullEntry.sources.join(", ")} (restore another with --source <name>)`);
    }
  }
  const last = after.at(-1) ?? fullEntry;
  const plan: RestorePlan = {
    at: atLabel,
    full: fullStep,
    chain: after.map((e) => ({ kind: "incremental", id: e.id, ts: e.id })),
    restoresTo: last.id,
    capturedAt: last.capturedAt,
    notes,
  };
  const fullTimes = [...new Set([...tail.filter((e) => e.kind === "full" && e.id < fullEntry.id).map((e) => e.id), fullEntry.id])].sort();
  return { plan, full, chain, fullTimes };
}

/** The plan of a bucket without a chain (before 0.3), from its listing; `before`: only sets older than the chain's first. */
async function loadPlanFromListing(store: BackupStore, at: Date | "latest", before?: string): Promise<LoadedPlan> {
  const catalog = await readCatalog(store, before === undefined ? {} : { before });
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
      m = await readManifestAt(store, manifestKey("daily", s.id));
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
    const m = await readManifestAt(store, manifestKey("incremental", s.id));
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
  const full = manifests.get(fullKey) ?? (await readManifestAt(store, manifestKey("full", plan.full.id)));
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
