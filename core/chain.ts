import type { Catalog, CatalogSet } from "./catalog.ts";
import { ContractError, describeValue } from "./errors.ts";
import { PREFIXES, fileKey } from "./keys.ts";
import { formatTimestamp, isIsoTime, isTimestamp, parseTimestamp, type BackupTimestamp } from "./time.ts";

/**
 * The backup chain (docs/design.md, "The chain"): the one authority on which sets are the bucket's history and
 * in what order. Key names and clocks no longer decide it. The Worker owns the head: a set is part of the chain
 * only once `POST /api/chain` has appended it, a compare-and-swap on `backups/state/chain/head.json`, so two runs
 * can never both continue the same set. The head keeps the newest entries (its tail) and points at sealed
 * segments of older ones, so a chain of 43,200 sets (one a minute for 30 days) is read without listing the bucket.
 * Pure: the Worker bundles it.
 */

export const CHAIN_FORMAT = "r2-sqlite-backup/chain@1";
export const CHAIN_PREFIX = `${PREFIXES.state}chain/`;
export const CHAIN_HEAD_KEY = `${CHAIN_PREFIX}head.json`;
export const CHAIN_SEGMENT_PREFIX = `${CHAIN_PREFIX}segments/`;
/** Entries per sealed segment; the head's tail holds at most this many. */
export const CHAIN_SEGMENT_ENTRIES = 1000;

/** One set of the chain, as its manifest describes it. */
export interface ChainEntry {
  kind: "full" | "incremental";
  id: BackupTimestamp;
  /** The full backup its restore starts from (its own id for a full). */
  base: BackupTimestamp;
  /** The set an incremental continues; null for a full. */
  previous: BackupTimestamp | null;
  /**
   * When the set's data was read, on the Worker's clock (ISO, milliseconds): an upper bound, so a restore at any
   * time T from this set holds no change committed after T. Sets taken before 0.3 use their id.
   */
  capturedAt: string;
  /** The databases it holds (full) or carries changes of (incremental): its lineage. */
  sources: string[];
}

/** A sealed segment of older entries, as the head points at it. */
export interface ChainSegmentRef {
  key: string;
  /** Position of its first entry in the chain (0-based). */
  seq: number;
  first: BackupTimestamp;
  last: BackupTimestamp;
  count: number;
}

export interface ChainHead {
  format: typeof CHAIN_FORMAT;
  /** Entries in the chain, sealed and tail. */
  length: number;
  segments: ChainSegmentRef[];
  /** The newest entries, oldest first; never empty. */
  tail: ChainEntry[];
  /** When the Worker last moved the head (its clock). */
  updatedAt: string;
}

export interface ChainSegment {
  format: typeof CHAIN_FORMAT;
  seq: number;
  entries: ChainEntry[];
}

/** `GET /api/chain`: the head (null before the first commit) and the Worker's clock. */
export interface ApiChain {
  now: string;
  head: ChainHead | null;
}

/** `POST /api/chain?expect=<length>` (body: the manifest): the new head. 409 `chain_moved` carries the current one. */
export interface ApiChainCommit {
  key: string;
  entry: ChainEntry;
  head: ChainHead;
}

/** `GET /api/chain?sets=<kind>/<id>,...`: the manifests' text by set (null when missing). */
export interface ApiChainManifests {
  manifests: Record<string, string | null>;
}

/** Manifests per `GET /api/chain?sets=` (each is one subrequest of the Worker; the Free plan allows 50). */
export const MAX_MANIFESTS_PER_READ = 40;

/**
 * A catalog (from a listing) as the chain sees it: of the full and incremental sets from the chain's tail on, only
 * those the chain holds (a complete set it does not hold lost a race or was written around it, and is neither the
 * newest backup nor missing from a replica). Sets older than the tail are left as listed. Without a head: as is.
 */
export function catalogInChain<C extends Pick<Catalog, "full" | "incremental">>(catalog: C, head: ChainHead | null): C {
  if (!head) return catalog;
  const held = new Set(head.tail.map((e) => `${e.kind}/${e.id}`));
  const first = head.tail[0]!.id;
  const keep = (s: CatalogSet) => s.id < first || held.has(`${s.kind}/${s.id}`);
  return { ...catalog, full: catalog.full.filter(keep), incremental: catalog.incremental.filter(keep) };
}

/** The key of the segment whose first entry is at `seq`. */
export function segmentKey(seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new ContractError("format", "chain segment", describeValue(seq), "expected a position >= 0");
  return `${CHAIN_SEGMENT_PREFIX}${String(seq).padStart(9, "0")}.json`;
}

/** The newest entry of the chain. */
export function chainTip(head: ChainHead | null): ChainEntry | undefined {
  return head?.tail.at(-1);
}

/** The time a set's data was read, in ms (its `capturedAt`). */
export function entryTime(entry: ChainEntry): number {
  return Date.parse(entry.capturedAt);
}

const fail = (where: string, reason: string): never => {
  throw new ContractError("validate", "chain", where, reason, "rebuild the index from the manifests: r2backup chain --rebuild");
};

/** Checks one entry (of a head, a segment, or a rebuild). */
export function parseChainEntry(value: unknown, where: string): ChainEntry {
  const e = value as Partial<ChainEntry> | null;
  if (typeof e !== "object" || e === null) return fail(where, "an entry is not an object");
  if (e.kind !== "full" && e.kind !== "incremental") return fail(where, `entry kind ${describeValue(e.kind)} is not full or incremental`);
  if (typeof e.id !== "string" || !isTimestamp(e.id)) return fail(where, `entry id ${describeValue(e.id)} is not a timestamp`);
  if (typeof e.base !== "string" || !isTimestamp(e.base)) return fail(where, `entry ${e.id}: base ${describeValue(e.base)} is not a timestamp`);
  if (e.kind === "full" ? e.previous !== null || e.base !== e.id : typeof e.previous !== "string" || !isTimestamp(e.previous) || e.previous >= e.id || e.base >= e.id) {
    return fail(where, `entry ${e.id}: a full has base = its id and no previous; an incremental comes after its base and previous`);
  }
  if (!isIsoTime(e.capturedAt)) return fail(where, `entry ${e.id}: capturedAt ${describeValue(e.capturedAt)} is not an ISO time`);
  if (!Array.isArray(e.sources) || e.sources.length === 0 || !e.sources.every((s) => typeof s === "string" && s.length > 0)) {
    return fail(where, `entry ${e.id}: sources must name at least one database`);
  }
  return { kind: e.kind, id: e.id, base: e.base, previous: e.previous ?? null, capturedAt: e.capturedAt, sources: [...e.sources] };
}

/**
 * Checks that entries form one line: ids and capture times increasing, each incremental continuing the entry
 * before it. (A run commits only on the head it planned on, so its data was read after the tip's.)
 */
export function linearProblem(entries: readonly ChainEntry[], before?: ChainEntry): string | undefined {
  let prev = before;
  for (const e of entries) {
    if (prev && e.id <= prev.id) return `${e.id} does not come after ${prev.id}`;
    if (prev && entryTime(e) < entryTime(prev)) return `${e.id} was captured at ${e.capturedAt}, before ${prev.id} (${prev.capturedAt})`;
    if (e.kind === "incremental") {
      if (!prev) return `incremental ${e.id} continues ${e.previous}, which is not in the chain`;
      const base = prev.kind === "full" ? prev.id : prev.base;
      if (e.previous !== prev.id || e.base !== base) return `incremental ${e.id} continues ${e.previous} (base ${e.base}), but the chain's newest set is ${prev.id} (base ${base})`;
    }
    prev = e;
  }
  return undefined;
}

function parseJson(text: string | unknown, where: string): unknown {
  if (typeof text !== "string") return text;
  try {
    return JSON.parse(text);
  } catch (e) {
    return fail(where, `not JSON: ${(e as Error).message}`);
  }
}

/** Parses and checks the head (`backups/state/chain/head.json`). */
export function parseChainHead(text: string | unknown, where = "head"): ChainHead {
  const h = parseJson(text, where) as Partial<ChainHead> | null;
  if (typeof h !== "object" || h === null || h.format !== CHAIN_FORMAT) return fail(where, `expected format '${CHAIN_FORMAT}'`);
  if (!Array.isArray(h.tail) || h.tail.length === 0 || h.tail.length > CHAIN_SEGMENT_ENTRIES) return fail(where, `the tail holds 1 to ${CHAIN_SEGMENT_ENTRIES} entries`);
  if (!Array.isArray(h.segments)) return fail(where, "segments is not a list");
  const tail = h.tail.map((e) => parseChainEntry(e, where));
  let seq = 0;
  const segments = h.segments.map((s: Partial<ChainSegmentRef>) => {
    if (s?.key !== segmentKey(seq) || s.seq !== seq || !isTimestamp(s.first ?? "") || !isTimestamp(s.last ?? "") || !Number.isSafeInteger(s.count) || (s.count ?? 0) < 1) {
      return fail(where, `segment ${seq} is not {key, seq, first, last, count} in order`);
    }
    seq += s.count!;
    return { key: s.key, seq: s.seq, first: s.first!, last: s.last!, count: s.count! };
  });
  if (h.length !== seq + tail.length) return fail(where, `length ${describeValue(h.length)} is not the segments' ${seq} + the tail's ${tail.length} entries`);
  // The tail's first entry may continue the last sealed segment's last one.
  const problem = linearProblem(tail.slice(1), tail[0]);
  if (problem) return fail(where, problem);
  if (segments.length === 0 && tail[0]!.kind !== "full") return fail(where, "the chain does not start with a full backup");
  if (segments.length > 0 && segments.at(-1)!.last >= tail[0]!.id) return fail(where, "the tail does not come after the last segment");
  if (!isIsoTime(h.updatedAt)) return fail(where, "updatedAt is not an ISO time");
  return { format: CHAIN_FORMAT, length: h.length, segments, tail, updatedAt: h.updatedAt };
}

/** The stored text of a sealed segment (what `parseChainSegment` reads back): the Worker and the directory store write it. */
export function chainSegmentText(segment: ChainSegment): string {
  return JSON.stringify({ format: segment.format, seq: segment.seq, entries: segment.entries });
}

/** Parses and checks a sealed segment against the reference the head holds. */
export function parseChainSegment(text: string | unknown, ref: ChainSegmentRef): ChainSegment {
  const s = parseJson(text, ref.key) as Partial<ChainSegment> | null;
  if (typeof s !== "object" || s === null || s.format !== CHAIN_FORMAT || s.seq !== ref.seq || !Array.isArray(s.entries)) {
    return fail(ref.key, `expected format '${CHAIN_FORMAT}' and seq ${ref.seq}`);
  }
  const entries = s.entries.map((e) => parseChainEntry(e, ref.key));
  if (entries.length !== ref.count || entries[0]?.id !== ref.first || entries.at(-1)?.id !== ref.last) {
    return fail(ref.key, `it holds ${entries.length} entries ${entries[0]?.id}..${entries.at(-1)?.id}, the head says ${ref.count} ${ref.first}..${ref.last}`);
  }
  const problem = linearProblem(entries.slice(1), entries[0]);
  if (problem) return fail(ref.key, problem);
  return { format: CHAIN_FORMAT, seq: ref.seq, entries };
}

/**
 * The chain entry of a manifest (a parsed `metadata.json`), read by the Worker without the job's full schema:
 * only what the chain needs, checked.
 */
export function entryFromManifest(value: unknown, where = "metadata.json"): ChainEntry {
  const m = value as {
    format?: unknown;
    kind?: unknown;
    id?: unknown;
    base?: unknown;
    previous?: unknown;
    capturedAt?: unknown;
    sources?: { source?: unknown }[];
    databases?: { source?: unknown }[];
    to?: { source?: unknown }[];
  } | null;
  if (typeof m !== "object" || m === null || typeof m.format !== "string" || !m.format.startsWith("r2-sqlite-backup/manifest@")) {
    throw new ContractError("read", "manifest", where, "not a backup manifest (no 'format: r2-sqlite-backup/manifest@1')");
  }
  // Lineage: `sources` from 0.3 on; before, a full's databases, an incremental's watermarks.
  const listed = [m.sources, m.databases, m.to].find((l) => Array.isArray(l) && l.length > 0) ?? [];
  const named = [...new Set(listed.map((d) => d?.source))];
  const id = typeof m.id === "string" && isTimestamp(m.id) ? m.id : undefined;
  const capturedAt = m.capturedAt ?? (id ? parseTimestamp(id).toISOString() : undefined);
  return parseChainEntry({ kind: m.kind, id: m.id, base: m.base, previous: m.previous, capturedAt, sources: named }, where);
}

/** Why an entry may not be appended: 409 when the chain moved or the set is older than its tip, 400 for a set from the future. */
export interface AppendRefusal {
  status: 400 | 409;
  code: "chain_moved" | "clock_skew" | "bad_request";
  reason: string;
  hint: string;
}

/**
 * Checks that `entry` may become the chain's new tip, given the head the caller expected (`expectLength`), the
 * Worker's clock and the allowed skew. A full may follow anything older; an incremental must continue the tip.
 */
export function refuseAppend(head: ChainHead | null, entry: ChainEntry, expectLength: number, now: Date, maxSkewMs: number): AppendRefusal | undefined {
  const length = head?.length ?? 0;
  const tip = chainTip(head);
  const moved = (reason: string): AppendRefusal => ({
    status: 409,
    code: "chain_moved",
    reason,
    hint: "another run committed first; take the set again on the new head (r2backup run does this by itself)",
  });
  if (expectLength !== length) return moved(`the chain has ${length} sets, the run planned on ${expectLength}`);
  // The later of its id and its capture time, against the Worker's clock.
  const ahead = Math.max(parseTimestamp(entry.id).getTime(), entryTime(entry)) - now.getTime();
  if (ahead > maxSkewMs) {
    return {
      status: 400,
      code: "clock_skew",
      reason: `the set is dated ${Math.round(ahead / 1000)} s after the Worker's clock (${now.toISOString()}), more than the ${maxSkewMs / 1000} s allowed`,
      hint: "set ids come from the Worker's clock (GET /api/chain); check the clock of the machine that made it",
    };
  }
  if (entry.kind === "incremental" && !tip) {
    return { status: 409, code: "chain_moved", reason: "an empty chain starts with a full backup", hint: "run a full backup first: r2backup run --kind full" };
  }
  const problem = linearProblem([entry], tip);
  if (problem) return moved(problem);
  return undefined;
}

/** What a commit reads of one stored object: its size, and the SHA-256 the store checked, where it kept one. */
export interface StoredForCommit {
  size: number;
  sha256?: string | undefined;
}

/** Why a set may not be committed because of its objects: 400 for a manifest whose files cannot be read, 409 for an object not stored as listed. */
export interface SetRefusal {
  status: 400 | 409;
  code: "bad_request" | "incomplete_set";
  reason: string;
}

/**
 * Checks that every file the manifest lists is stored at its size (and with its SHA-256, where the store kept
 * one): a set that looks complete is complete. `lookup` answers one key, null when it is not stored. The
 * Worker's commit and the directory store's use this one rule.
 */
export async function refuseSetObjects(
  entry: ChainEntry,
  manifest: { files?: unknown },
  lookup: (key: string) => Promise<StoredForCommit | null>,
): Promise<SetRefusal | undefined> {
  const files = Array.isArray(manifest.files) ? (manifest.files as { name?: unknown; size?: unknown; sha256?: unknown }[]) : [];
  if (files.length === 0 || files.length > 1000) return { status: 400, code: "bad_request", reason: "the manifest lists no files (or too many)" };
  const keys: { f: (typeof files)[number]; key: string }[] = [];
  for (const f of files) {
    if (typeof f?.name !== "string" || typeof f.size !== "number") return { status: 400, code: "bad_request", reason: "a file entry has no name or size" };
    try {
      keys.push({ f, key: fileKey(entry.kind, entry.id, f.name) });
    } catch (e) {
      return { status: 400, code: "bad_request", reason: (e as Error).message };
    }
  }
  const found = await Promise.all(keys.map(async ({ f, key }) => ({ f, key, object: await lookup(key) })));
  for (const { f, key, object } of found) {
    const stored = object?.sha256;
    if (object === null || object.size !== f.size || (stored !== undefined && typeof f.sha256 === "string" && stored !== f.sha256)) {
      return {
        status: 409,
        code: "incomplete_set",
        reason: `'${key}' ${object === null ? "is not stored" : `does not match the manifest (${object.size} bytes stored, ${f.size} listed)`}; upload every object of the set before committing it`,
      };
    }
  }
  return undefined;
}

/**
 * The head after appending `entry` (checked with `refuseAppend` first). When the tail is full it is sealed into a
 * segment, returned to be written before the head.
 */
export function appendEntry(head: ChainHead | null, entry: ChainEntry, now: Date): { head: ChainHead; seal?: ChainSegment & { key: string } } {
  const updatedAt = now.toISOString();
  if (!head) return { head: { format: CHAIN_FORMAT, length: 1, segments: [], tail: [entry], updatedAt } };
  if (head.tail.length < CHAIN_SEGMENT_ENTRIES) return { head: { ...head, length: head.length + 1, tail: [...head.tail, entry], updatedAt } };
  const seq = head.length - head.tail.length;
  const key = segmentKey(seq);
  const ref: ChainSegmentRef = { key, seq, first: head.tail[0]!.id, last: head.tail.at(-1)!.id, count: head.tail.length };
  return {
    head: { format: CHAIN_FORMAT, length: head.length + 1, segments: [...head.segments, ref], tail: [entry], updatedAt },
    seal: { key, format: CHAIN_FORMAT, seq, entries: head.tail },
  };
}

/**
 * Rebuilds the chain from manifests (any order), sorted by id: a full joins, an incremental joins when it
 * continues the set just before it. A commit stores its manifest before it moves the head, so a run that lost
 * the race leaves a manifest outside the chain (an orphan): when an incremental continues an earlier set, the
 * sets between that one and it are such orphans (a run plans on the tip, and the Worker appends only on it)
 * and are left out, unless a later set continues one of them, or one is a full and no set continues the
 * incremental (then the incremental is the orphan). Of two incrementals continuing the same one that no set
 * continues, the newer stays. Every set left out is named with the reason.
 */
export function chainFromManifests(manifests: readonly unknown[]): { entries: ChainEntry[]; leftOut: { id: string; reason: string }[] } {
  const all = manifests.map((m, i) => entryFromManifest(m, `manifest ${i}`)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  // A set that another continues was in the chain when that one was planned: it is no orphan.
  const continued = new Set(all.flatMap((e) => (e.kind === "incremental" && e.previous !== null ? [e.previous] : [])));
  const entries: ChainEntry[] = [];
  const leftOut: { id: string; reason: string }[] = [];
  for (const e of all) {
    const problem = linearProblem([e], entries.at(-1));
    if (!problem) {
      entries.push(e);
      continue;
    }
    const at = e.kind === "incremental" ? entries.findIndex((x) => x.id === e.previous) : -1;
    const between = entries.slice(at + 1);
    // A full among them is left out only for a set proven in the chain (another continues it): an orphan of a
    // run that gave up also continues an earlier set, and must not take a committed full's place.
    const proven = continued.has(e.id) || between.every((x) => x.kind !== "full");
    if (at >= 0 && proven && !linearProblem([e], entries[at]) && between.every((x) => !continued.has(x.id))) {
      entries.splice(at + 1);
      for (const x of between) leftOut.push({ id: x.id, reason: `it lost the race to commit: ${e.id} continues ${e.previous}, the set before it` });
      entries.push(e);
    } else leftOut.push({ id: e.id, reason: problem });
  }
  leftOut.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { entries, leftOut };
}

/** A head and its sealed segments for a list of entries (a rebuild). */
export function headFromEntries(entries: readonly ChainEntry[], now: Date): { head: ChainHead; segments: (ChainSegment & { key: string })[] } {
  if (entries.length === 0) throw new ContractError("build", "chain", "(empty)", "a chain holds at least one set");
  const problem = linearProblem(entries);
  if (problem) throw new ContractError("build", "chain", entries[0]!.id, problem);
  const sealedCount = Math.floor((entries.length - 1) / CHAIN_SEGMENT_ENTRIES) * CHAIN_SEGMENT_ENTRIES;
  const segments: (ChainSegment & { key: string })[] = [];
  const refs: ChainSegmentRef[] = [];
  for (let seq = 0; seq < sealedCount; seq += CHAIN_SEGMENT_ENTRIES) {
    const part = entries.slice(seq, seq + CHAIN_SEGMENT_ENTRIES);
    const key = segmentKey(seq);
    segments.push({ key, format: CHAIN_FORMAT, seq, entries: part });
    refs.push({ key, seq, first: part[0]!.id, last: part.at(-1)!.id, count: part.length });
  }
  return { head: { format: CHAIN_FORMAT, length: entries.length, segments: refs, tail: entries.slice(sealedCount), updatedAt: now.toISOString() }, segments };
}

/**
 * The id of a new set: the Worker's time, rounded up to the second, and after the chain's tip (ids are
 * write-once keys, and the chain only grows forward).
 */
export function nextSetId(head: ChainHead | null, workerNow: Date): BackupTimestamp {
  const ceil = new Date(Math.ceil(workerNow.getTime() / 1000) * 1000);
  const tip = chainTip(head);
  if (tip && formatTimestamp(ceil) <= tip.id) return formatTimestamp(new Date(parseTimestamp(tip.id).getTime() + 1000));
  return formatTimestamp(ceil);
}

/**
 * The entries a restore at `at` (ms, or latest) needs, from the newest segments back: the newest full whose data
 * was read at or before `at`, and every entry after it up to `at`. A time that is exactly a set's id (`--at` with
 * an id from `list`) reaches that set too, whose data was read a little after its id was given. `readSegment`
 * fetches a sealed segment. Resolves to undefined when no full is at or before `at`. With `holds`, the newest full
 * that holds that database and the incrementals continuing it (two databases backed up into one bucket take
 * turns in the chain: each restores from its own sets).
 */
export async function entriesForRestore(
  head: ChainHead,
  at: number | "latest",
  readSegment: (ref: ChainSegmentRef) => Promise<ChainSegment>,
  holds?: string,
): Promise<{ full: ChainEntry; after: ChainEntry[] } | undefined> {
  const limit = at === "latest" ? Number.POSITIVE_INFINITY : at;
  const named = at !== "latest" && at % 1000 === 0 ? formatTimestamp(new Date(at)) : undefined;
  let window: ChainEntry[] = head.tail;
  for (let i = head.segments.length; ; i--) {
    // The entries are in order (ids and capture times both increase): the eligible ones are a prefix.
    const cut = window.reduce((n, e, k) => (entryTime(e) <= limit || e.id === named ? k + 1 : n), 0);
    const eligible = window.slice(0, cut);
    for (let j = eligible.length - 1; j >= 0; j--) {
      const e = eligible[j]!;
      if (e.kind !== "full" || (holds !== undefined && !e.sources.includes(holds))) continue;
      const next = eligible.findIndex((x, k) => k > j && x.kind === "full");
      return { full: e, after: eligible.slice(j + 1, next < 0 ? undefined : next) };
    }
    if (i === 0) return undefined;
    window = [...(await readSegment(head.segments[i - 1]!)).entries, ...window];
  }
}
