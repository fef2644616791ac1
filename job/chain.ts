import {
  catalogFromKeys,
  type Catalog,
  MAX_MANIFESTS_PER_READ,
  PREFIXES,
  chainFromManifests,
  entriesForRestore,
  manifestKey,
  parseChainSegment,
  parseManifest,
  type ChainEntry,
  type ChainHead,
  type ChainSegment,
  type ChainSegmentRef,
  type Manifest,
} from "../core/index.ts";
import { JobError } from "./errors.ts";
import type { BackupStore, ChainView, StoredObject } from "./store/types.ts";

/**
 * The job's side of the chain (docs/design.md, "The chain"): read the head and its segments, find what a backup
 * continues and what a restore needs, commit a set, and rebuild the index from the manifests. Backup, restore,
 * list and verify read the chain here and nowhere else.
 */

/**
 * Lists the backup sets of the bucket by key (`areas`: default full, incremental and daily; drills too when
 * asked): the catalog and the listed objects (for sizes). The chain says which sets count; the listing says what
 * is stored. `before`: only full and incremental sets older than it (the sets before a chain began).
 */
export async function readCatalog(store: BackupStore, options: { before?: string; areas?: readonly string[] } = {}): Promise<Catalog & { objects: StoredObject[] }> {
  const objects: StoredObject[] = [];
  for (const prefix of options.areas ?? [PREFIXES.full, PREFIXES.incremental, PREFIXES.daily]) objects.push(...(await store.listAll(prefix)));
  const catalog = catalogFromKeys(objects.map((o) => o.key));
  const { before } = options;
  if (before === undefined) return { ...catalog, objects };
  return { ...catalog, full: catalog.full.filter((s) => s.id < before), incremental: catalog.incremental.filter((s) => s.id < before), objects };
}

/** A manifest's text (undefined: not stored) as a validated manifest; missing is `notFound`, invalid is `integrity`. */
function manifestFromText(text: string | null | undefined, key: string, missing?: () => Error): Manifest {
  if (text === null || text === undefined)
    throw missing?.() ?? new JobError("notFound", `read manifest '${key}': not found`, { hint: "the set expired or the bucket changed; run again" });
  try {
    return parseManifest(text, key);
  } catch (e) {
    throw new JobError("integrity", (e as Error).message, { cause: e });
  }
}

/** Reads and validates one manifest; a missing or invalid one is an error naming its key. */
export async function readManifestAt(store: BackupStore, key: string): Promise<Manifest> {
  const res = await store.get(key);
  return manifestFromText(res && (await new Response(res.body).text()), key);
}

/** The manifest of a set of the chain. */
export function readEntryManifest(store: BackupStore, entry: Pick<ChainEntry, "kind" | "id">): Promise<Manifest> {
  return readManifestAt(store, manifestKey(entry.kind, entry.id));
}

/**
 * The manifests of many sets of the chain, in order, read MAX_MANIFESTS_PER_READ per request and a few requests at
 * once. A missing one is a `notFound` error naming its set (`onMissing` may turn it into a better one).
 */
export async function readEntryManifests(store: BackupStore, entries: readonly Pick<ChainEntry, "kind" | "id">[], onMissing?: (index: number) => Error): Promise<Manifest[]> {
  const out: Manifest[] = new Array(entries.length);
  const batches: number[] = [];
  for (let i = 0; i < entries.length; i += MAX_MANIFESTS_PER_READ) batches.push(i);
  let next = 0;
  const work = async () => {
    while (next < batches.length) {
      const start = batches[next++]!;
      const part = entries.slice(start, start + MAX_MANIFESTS_PER_READ);
      const texts = await store.readManifests(part.map((e) => `${e.kind}/${e.id}`));
      for (const [j, e] of part.entries()) {
        out[start + j] = manifestFromText(texts[`${e.kind}/${e.id}`], manifestKey(e.kind, e.id), onMissing && (() => onMissing(start + j)));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, batches.length) }, work));
  return out;
}

/** Reads one sealed segment of the chain, checked against the head's reference. */
export async function readSegment(store: BackupStore, ref: ChainSegmentRef): Promise<ChainSegment> {
  const res = await store.get(ref.key);
  if (!res)
    throw new JobError("integrity", `read chain segment '${ref.key}': it is gone`, { hint: "rebuild the index from the manifests: r2backup chain --rebuild (admin token)" });
  try {
    return parseChainSegment(await new Response(res.body).text(), ref);
  } catch (e) {
    throw new JobError("integrity", (e as Error).message, { cause: e });
  }
}

/** Every entry of the chain, oldest first (reads every sealed segment: for list and rebuild checks, not for a run). */
export async function allEntries(store: BackupStore, head: ChainHead | null): Promise<ChainEntry[]> {
  if (!head) return [];
  const entries: ChainEntry[] = [];
  for (const ref of head.segments) entries.push(...(await readSegment(store, ref)).entries);
  return [...entries, ...head.tail];
}

/** Where a new set goes: the tip it continues, the newest full of the chain, and the chain's length to commit on. */
export interface ChainPosition {
  view: ChainView;
  expect: number;
  tip: ChainEntry | undefined;
  /** The newest full backup in the chain. */
  full: ChainEntry | undefined;
}

/** Reads the head and finds the chain's tip and newest full (reading segments only when the tail has no full). */
export async function chainPosition(store: BackupStore): Promise<ChainPosition> {
  const view = await store.chain();
  const head = view.head;
  if (!head) return { view, expect: 0, tip: undefined, full: undefined };
  const found = await entriesForRestore(head, "latest", (ref) => readSegment(store, ref));
  return { view, expect: head.length, tip: head.tail.at(-1), full: found?.full };
}

/**
 * Reads the manifests of every complete set under full/ and incremental/ and rebuilds the chain from them: the
 * line of sets each continuing the one before (forks that lost and orphans left out, with the reason).
 */
export async function chainFromBucket(store: BackupStore): Promise<ReturnType<typeof chainFromManifests>> {
  const catalog = await readCatalog(store, { areas: [PREFIXES.full, PREFIXES.incremental] });
  const complete = [...catalog.full, ...catalog.incremental].filter((s) => s.complete);
  return chainFromManifests(await readEntryManifests(store, complete as { kind: "full" | "incremental"; id: string }[]));
}

/** `r2backup chain --rebuild`: writes the index rebuilt from the manifests (admin token). */
export async function rebuildChain(store: BackupStore): Promise<{ head: ChainHead; leftOut: { id: string; reason: string }[] }> {
  const { entries, leftOut } = await chainFromBucket(store);
  if (entries.length === 0) throw new JobError("notFound", "rebuild chain: the bucket holds no complete backup set", { hint: "run a full backup first: r2backup run --kind full" });
  return { head: await store.rebuildChain(entries), leftOut };
}
