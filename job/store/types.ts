import type { ApiChainCommit, ChainEntry, ChainHead } from "../../core/chain.ts";
import { JobError } from "../errors.ts";

/**
 * A store's answer that is not a result, with the Worker API's status for callers that branch on it (409: the key
 * exists, another run took it; 404: gone). HttpStore throws it for the Worker's answers, DirStore for the same cases.
 */
export class HttpStatusError extends JobError {
  readonly status: number;
  constructor(kind: ConstructorParameters<typeof JobError>[0], status: number, message: string, hint?: string) {
    super(kind, message, hint === undefined ? {} : { hint });
    this.status = status;
  }
}

/**
 * The storage interface of the job: what the backup, list, restore and verify commands need from the
 * bucket. `HttpStore` implements it over the Worker API; tests run one conformance suite against it.
 */
export interface StoredObject {
  key: string;
  size: number;
  etag: string;
  uploaded: Date;
  /** Lowercase hex sha256 that R2 checked on upload, when the upload carried one. */
  sha256?: string;
}

export interface ListPage {
  objects: StoredObject[];
  prefixes: string[];
  cursor?: string;
  truncated: boolean;
}

export interface GetResult extends StoredObject {
  /** The bytes (all, or the requested range), streamed. */
  body: ReadableStream<Uint8Array>;
  /** The range actually served, when one was asked for. */
  range?: { offset: number; length: number };
}

/**
 * Bytes of a local file as a request body: read afresh from the file on every attempt, never held in memory
 * (the backup's compressed output is spooled to its temp dir and its parts are ranges of that file).
 */
export interface FileRange {
  path: string;
  offset: number;
  length: number;
}

/** What a PUT or a part sends: bytes in memory, or a range of a local file. */
export type Body = Uint8Array | FileRange;

/** The byte length of a body. */
export function bodyLength(body: Body): number {
  return body instanceof Uint8Array ? body.byteLength : body.length;
}

export interface PutOptions {
  /** Lowercase hex sha256 of the body; the store rejects a mismatch and stores nothing. */
  sha256?: string;
  contentType?: string;
}

/** The chain as the Worker answered it, with the Worker's clock mapped onto this process's monotonic clock. */
export interface ChainView {
  head: ChainHead | null;
  /** The Worker's time now, from its answer and the time since (never this machine's wall clock). */
  clock: () => Date;
  /** This machine's clock minus the Worker's, in ms (positive: ahead), for status and warnings. */
  skewMs: number;
}

/** A commit's outcome: the set is in the chain, or another run moved the head first (take the set again). */
export type CommitOutcome = { committed: ApiChainCommit } | { moved: string };

export interface BackupStore {
  /** The chain's head and the Worker's clock (`GET /api/chain`). */
  chain(): Promise<ChainView>;
  /** Stores the manifest and appends its set to the chain, if the chain still has `expect` sets (`POST /api/chain`). */
  commitSet(manifest: string, expect: number): Promise<CommitOutcome>;
  /** The text of up to MAX_MANIFESTS_PER_READ sets' manifests (`full/<id>`, `incremental/<id>`), null when missing. */
  readManifests(sets: readonly string[]): Promise<Record<string, string | null>>;
  /** Replaces the chain's index with these entries (admin token). */
  rebuildChain(entries: readonly ChainEntry[]): Promise<ChainHead>;
  /**
   * Stores an object in one request. Throws `exists` (409) for an existing key outside backups/state/. A file
   * range needs `options.sha256`.
   */
  put(key: string, body: Body | string, options?: PutOptions): Promise<StoredObject>;
  /** Streams an object, or part of it; undefined when it does not exist. */
  get(key: string, options?: { offset?: number; length?: number }): Promise<GetResult | undefined>;
  head(key: string): Promise<StoredObject | undefined>;
  /** One page of a listing. */
  list(prefix: string, options?: { cursor?: string; delimiter?: string; limit?: number }): Promise<ListPage>;
  /** Every key under a prefix, following the cursor. */
  listAll(prefix: string): Promise<StoredObject[]>;
  /** Deletes an object (admin token only; the job's token gets 403). */
  delete(key: string): Promise<void>;
  createMultipart(key: string, options?: { contentType?: string }): Promise<string>;
  uploadPart(key: string, uploadId: string, partNumber: number, body: Body): Promise<{ partNumber: number; etag: string }>;
  completeMultipart(key: string, uploadId: string, parts: { partNumber: number; etag: string }[]): Promise<StoredObject>;
  abortMultipart(key: string, uploadId: string): Promise<void>;
}

/** Every object under a prefix, following the cursor page by page: `listAll` of each store. */
export async function listEvery(store: Pick<BackupStore, "list">, prefix: string): Promise<StoredObject[]> {
  const all: StoredObject[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list(prefix, cursor ? { cursor } : {});
    all.push(...page.objects);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return all;
}
