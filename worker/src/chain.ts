import { MAX_CLOCK_SKEW_MS, PATHS } from "../../core/api.ts";
import {
  CHAIN_HEAD_KEY,
  CHAIN_PREFIX,
  MAX_MANIFESTS_PER_READ,
  appendEntry,
  chainSegmentText,
  entryFromManifest,
  headFromEntries,
  parseChainEntry,
  parseChainHead,
  parseChainSegment,
  refuseAppend,
  refuseSetObjects,
  type ApiChain,
  type ApiChainCommit,
  type ApiChainManifests,
  type ChainEntry,
  type ChainHead,
  type ChainSegmentRef,
} from "../../core/chain.ts";
import { ContractError } from "../../core/errors.ts";
import { manifestKey } from "../../core/keys.ts";
import { isTimestamp } from "../../core/time.ts";
import { requireAdmin, type Role } from "./auth.ts";
import type { Env } from "./env.ts";
import { HttpError, json } from "./errors.ts";
import { readLimited } from "./http.ts";
import { writeOnce } from "./claims.ts";
import { existsConflict, putObject, r2Call, storedSha256, toHex } from "./r2.ts";

/**
 * The chain endpoint (docs/design.md, "The chain"): `GET /api/chain` answers the head and the Worker's clock;
 * `POST /api/chain?expect=<length>` with a manifest as its body stores the manifest and appends its set to the
 * chain in one compare-and-swap on the head; `POST /api/chain?rebuild` (admin) replaces the index with entries
 * rebuilt from the manifests. Chain keys are written here and nowhere else.
 */

/** A manifest is a few KiB; one with thousands of tables stays far below this. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** A rebuild of 43,200 entries is about 9 MB. */
const MAX_REBUILD_BYTES = 64 * 1024 * 1024;

/** True for keys only this module writes. */
export function isChainKey(key: string): boolean {
  return key.startsWith(CHAIN_PREFIX);
}

/** The head as stored, with its etag for the compare-and-swap; null before the first commit. */
export async function readHead(bucket: R2Bucket): Promise<{ head: ChainHead; etag: string } | null> {
  const object = await bucket.get(CHAIN_HEAD_KEY);
  if (object === null) return null;
  const text = await object.text();
  try {
    return { head: parseChainHead(text, CHAIN_HEAD_KEY), etag: object.etag };
  } catch (e) {
    console.error((e as Error).message);
    throw new HttpError(500, "chain_damaged", `read chain '${CHAIN_HEAD_KEY}': the head is damaged (rebuild it from the manifests: r2backup chain --rebuild with the admin token)`);
  }
}

export async function chainRoute(request: Request, url: URL, env: Env, role: Role): Promise<Response> {
  if ((request.method === "GET" || request.method === "HEAD") && url.searchParams.has("sets")) return manifests(url, env);
  if (request.method === "GET" || request.method === "HEAD") {
    const answer: ApiChain = { now: new Date().toISOString(), head: (await readHead(env.BACKUP_BUCKET))?.head ?? null };
    return json(answer);
  }
  if (request.method !== "POST") throw new HttpError(405, "method_not_allowed", `request '${PATHS.chain}': method not allowed (allowed: GET, POST)`, { Allow: "GET, POST" });
  if (url.searchParams.has("rebuild")) return rebuild(request, env, role);
  return commit(request, url, env);
}

/**
 * `GET /api/chain?sets=full/<id>,incremental/<id>,...`: up to MAX_MANIFESTS_PER_READ manifests in one answer, so
 * planning a restore over hundreds of incrementals is a few requests (each manifest is one subrequest; the Free
 * plan allows 50 per request). A missing one is null.
 */
async function manifests(url: URL, env: Env): Promise<Response> {
  const raw = url.searchParams.get("sets") ?? "";
  const sets = raw === "" ? [] : raw.split(",");
  if (sets.length === 0 || sets.length > MAX_MANIFESTS_PER_READ) {
    throw new HttpError(400, "bad_request", `read manifests '${raw.slice(0, 60)}': expected 1 to ${MAX_MANIFESTS_PER_READ} comma-separated sets (full/<ts> or incremental/<ts>)`);
  }
  const keys = sets.map((set) => {
    const [kind, id, extra] = set.split("/");
    if ((kind !== "full" && kind !== "incremental") || id === undefined || extra !== undefined || !isTimestamp(id)) {
      throw new HttpError(400, "bad_request", `read manifests '${set.slice(0, 60)}': expected full/<ts> or incremental/<ts>`);
    }
    return [set, manifestKey(kind, id)] as const;
  });
  const texts = await Promise.all(keys.map(async ([, key]) => (await env.BACKUP_BUCKET.get(key))?.text() ?? null));
  const answer: ApiChainManifests = { manifests: Object.fromEntries(keys.map(([set], i) => [set, texts[i]!])) };
  return json(answer);
}

async function commit(request: Request, url: URL, env: Env): Promise<Response> {
  const raw = url.searchParams.get("expect") ?? "";
  if (!/^\d{1,9}$/.test(raw)) throw new HttpError(400, "bad_request", `commit set: expect '${raw.slice(0, 20)}' must be the chain length the run planned on (GET ${PATHS.chain})`);
  const expect = Number(raw);
  const bytes = await readLimited(request, MAX_MANIFEST_BYTES, "commit set", `a manifest is at most ${MAX_MANIFEST_BYTES} bytes`);
  let entry: ChainEntry;
  let manifest: { files?: unknown };
  try {
    manifest = JSON.parse(new TextDecoder().decode(bytes)) as { files?: unknown };
    entry = entryFromManifest(manifest);
  } catch (e) {
    throw new HttpError(400, "bad_request", `commit set: the body is not a backup manifest (${e instanceof ContractError ? e.reason : "not JSON"})`);
  }
  const operation = `commit ${entry.kind} set '${entry.id}'`;
  const bucket = env.BACKUP_BUCKET;
  const current = await readHead(bucket);
  const now = new Date();
  const refusal = refuseAppend(current?.head ?? null, entry, expect, now, MAX_CLOCK_SKEW_MS);
  if (refusal) throw new HttpError(refusal.status, refusal.code, `${operation}: ${refusal.reason} (${refusal.hint})`);

  // Every object the manifest lists must be stored, at its size (and its SHA-256 where R2 kept one): a set that
  // looks complete is complete.
  await checkSetObjects(bucket, entry, manifest, operation);

  // The manifest first: a head never points at a set without one. A retry of this same commit finds it stored.
  const key = manifestKey(entry.kind, entry.id);
  const sha256 = toHex(await crypto.subtle.digest("SHA-256", bytes));
  const existing = await bucket.head(key);
  // Under the key's claim, like every create-only write (worker/src/claims.ts).
  if (existing === null)
    await writeOnce(
      bucket,
      key,
      crypto.randomUUID(),
      now,
      () => existsConflict(key),
      () => putObject(bucket, key, new Blob([bytes]), { sha256, contentType: "application/json" }),
    );
  else if (storedSha256(existing) !== sha256) {
    throw new HttpError(409, "conflict", `${operation}: another manifest is stored at '${key}' (take the set again under a new id)`);
  }
  const { head, seal } = appendEntry(current?.head ?? null, entry, now);
  if (seal) await r2Call("seal chain segment", seal.key, () => bucket.put(seal.key, chainSegmentText(seal)));
  const onlyIf = current ? { etagMatches: current.etag } : new Headers({ "If-None-Match": "*" });
  const moved = (await r2Call("move chain head", CHAIN_HEAD_KEY, () => bucket.put(CHAIN_HEAD_KEY, JSON.stringify(head), { onlyIf }))) === null;
  if (moved) {
    throw new HttpError(
      409,
      "chain_moved",
      `${operation}: another run moved the chain while this one committed (take the set again on the new head; r2backup run does this by itself)`,
    );
  }
  const answer: ApiChainCommit = { key, entry, head };
  return json(answer, 201);
}

async function checkSetObjects(bucket: R2Bucket, entry: ChainEntry, manifest: { files?: unknown }, operation: string): Promise<void> {
  const refusal = await refuseSetObjects(entry, manifest, async (key) => {
    const object = await bucket.head(key);
    return object === null ? null : { size: object.size, sha256: storedSha256(object) };
  });
  if (refusal) throw new HttpError(refusal.status, refusal.code, `${operation}: ${refusal.reason}`);
}

async function rebuild(request: Request, env: Env, role: Role): Promise<Response> {
  requireAdmin(role, "rebuild chain");
  const bytes = await readLimited(request, MAX_REBUILD_BYTES, "rebuild chain", `at most ${MAX_REBUILD_BYTES} bytes of entries`);
  let built: ReturnType<typeof headFromEntries>;
  try {
    const body = JSON.parse(new TextDecoder().decode(bytes)) as { entries?: unknown[] };
    if (!Array.isArray(body.entries)) throw new ContractError("rebuild", "chain", "body", 'expected {"entries": [...]}');
    const entries = body.entries.map((e, i) => parseChainEntry(e, `entries[${i}]`));
    built = headFromEntries(entries, new Date());
  } catch (e) {
    throw new HttpError(400, "bad_request", `rebuild chain: ${e instanceof ContractError ? e.message : 'the body is not JSON {"entries": [...]}'}`);
  }
  for (const s of built.segments) await r2Call("write chain segment", s.key, () => env.BACKUP_BUCKET.put(s.key, chainSegmentText(s)));
  await r2Call("write chain head", CHAIN_HEAD_KEY, () => env.BACKUP_BUCKET.put(CHAIN_HEAD_KEY, JSON.stringify(built.head)));
  const answer: ApiChain = { now: built.head.updatedAt, head: built.head };
  return json(answer, 201);
}

/**
 * Makes `to`'s chain index the prefix of `from`'s chain up to its newest set that `to` holds complete (the replica
 * copy calls this after copying sets; in failover the served replica is `from`). Sealed segments are copied as
 * they are: the same positions hold the same entries. Sets outside `from`'s chain are never indexed in `to`.
 */
export async function mirrorChain(from: R2Bucket, to: R2Bucket, holds: (entry: ChainEntry) => boolean): Promise<{ length: number } | undefined> {
  const source = await readHead(from);
  if (!source) return undefined;
  const segmentText = async (ref: ChainSegmentRef) => {
    const object = await from.get(ref.key);
    if (object === null) throw new Error(`mirror chain: segment '${ref.key}' is missing from the source`);
    return object.text();
  };
  let segments = source.head.segments.length;
  let window = source.head.tail;
  let end = -1;
  for (;;) {
    for (let i = window.length - 1; i >= 0 && end < 0; i--) if (holds(window[i]!)) end = i;
    if (end >= 0 || segments === 0) break;
    const ref = source.head.segments[--segments]!;
    window = parseChainSegment(await segmentText(ref), ref).entries;
  }
  if (end < 0) return undefined;
  const refs = source.head.segments.slice(0, segments);
  const tail = window.slice(0, end + 1);
  const length = refs.reduce((n, r) => n + r.count, 0) + tail.length;
  const current = await readHead(to).catch(() => null);
  if (current && current.head.length === length && current.head.tail.at(-1)?.id === tail.at(-1)!.id) return { length };
  for (const ref of refs) {
    const has = current?.head.segments.some((r) => r.key === ref.key && r.first === ref.first && r.last === ref.last && r.count === ref.count);
    if (!has) await to.put(ref.key, await segmentText(ref));
  }
  const head: ChainHead = { format: source.head.format, length, segments: refs, tail, updatedAt: new Date().toISOString() };
  await to.put(CHAIN_HEAD_KEY, JSON.stringify(head));
  return { length };
}
