import { ContractError, describeValue } from "./errors.ts";
import { validateObjectKey } from "./keys.ts";

/**
 * The Worker API (docs/design.md, "Worker API"): paths, headers, limits and the JSON shapes the Worker answers
 * and the job reads. The Worker and the job's HTTP store both import these; neither spells a path itself.
 */
export const API_PREFIX = "/api";
export const PATHS = {
  health: "/api/health",
  uploadBackup: "/api/upload-backup",
  backups: "/api/backups",
  status: "/api/status",
  /** The backup chain's head and the Worker's clock (GET); commit a set (POST ?expect=); rebuild (POST ?rebuild, admin). */
  chain: "/api/chain",
} as const;

export const HEADERS = {
  /** The seed's token header; `Authorization: Bearer <token>` is accepted too. */
  serverToken: "X-Server-Token",
  authorization: "Authorization",
  /** Lowercase hex SHA-256 of the body; the Worker hands it to R2, which rejects a mismatch. */
  contentSha256: "X-Content-SHA256",
} as const;

/** Bindings, secrets and variables of the Worker (also the names infra binds). */
export const BINDINGS = {
  bucket: "BACKUP_BUCKET",
  replicaBucket: "BACKUP_REPLICA_BUCKET",
  serverToken: "SERVER_BYPASS_TOKEN",
  /** During a rotation of the job's token: the old one, still accepted until every caller has the new one. */
  serverTokenPrevious: "SERVER_BYPASS_TOKEN_PREVIOUS",
  adminToken: "ADMIN_TOKEN",
  maxBackupAgeHours: "MAX_BACKUP_AGE_HOURS",
  alertWebhookUrl: "ALERT_WEBHOOK_URL",
  replicaMaxLagHours: "REPLICA_MAX_LAG_HOURS",
} as const;

/**
 * One clock (issue 13): the Worker refuses a write whose set id (the `<ts>` of `full/`, `incremental/`,
 * `drills/`, the day of `daily/`) is more than this after its own clock. The job takes set ids from the
 * Worker's time (`GET /api/health` answers `now`), so only a stray or skewed writer is ever this far ahead;
 * `status` judges a set this far in the future as a problem, never as fresh. 5 minutes.
 */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;
/** The shortest token accepted: `up` refuses a shorter one set by hand, the agent a shorter BACKUP_AGENT_TOKEN. */
export const MIN_TOKEN_LENGTH = 16;
/**
 * Write-once is kept by a per-key claim (worker/src/claims.ts, docs/design.md "Worker API"). A claim older
 * than this was left by a Worker that died, and the next writer may take it over. Longer than any write
 * that holds one: a completion takes seconds, a single PUT of 100 MB over 1 Mbit/s about 14 minutes.
 */
export const WRITE_CLAIM_TTL_MS = 15 * 60 * 1000;

/** Workers accept request bodies of at most 100 MB on Free/Pro (docs/design.md fact 2). */
export const MAX_REQUEST_BYTES = 100_000_000;
/** The largest single `PUT`; above it the client must use multipart. */
export const MAX_SINGLE_PUT_BYTES = MAX_REQUEST_BYTES;
/** The seed's form upload buffers the whole body (`formData()`): small files only. */
export const MAX_FORM_UPLOAD_BYTES = 10 * 1024 * 1024;
/** R2 multipart: parts of equal size (but the last), 5 MiB at least, at most 10,000 of them. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
export const MAX_PART_BYTES = 95 * 1024 * 1024;
export const MAX_PARTS = 10_000;
/** R2 fails multipart uploads with more than 2-3 parts in flight (docs/design.md fact 2). */
export const MAX_PARTS_IN_FLIGHT = 2;
export const DEFAULT_PART_BYTES = 16 * 1024 * 1024;

/**
 * The part size for an upload of at most `maxBytes` (an upper bound: a compressed stream's size is not
 * known in advance): `preferred`, grown to whole MiB when needed so the count stays within 10,000.
 */
export function choosePartSize(maxBytes: number, preferred = DEFAULT_PART_BYTES): number {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
    throw new ContractError("plan", "multipart upload of", describeValue(maxBytes), "expected a non-negative whole number of bytes");
  }
  if (!Number.isSafeInteger(preferred) || preferred < MIN_PART_BYTES || preferred > MAX_PART_BYTES) {
    throw new ContractError("plan", "part size", describeValue(preferred), `expected ${MIN_PART_BYTES} to ${MAX_PART_BYTES} bytes`);
  }
  const MiB = 1024 * 1024;
  const needed = Math.ceil(Math.ceil(maxBytes / MAX_PARTS) / MiB) * MiB;
  const size = Math.max(preferred, needed);
  if (size > MAX_PART_BYTES) {
    throw new ContractError(
      "plan",
      "multipart upload of",
      `${maxBytes} bytes`,
      `needs parts of ${size} bytes, over the ${MAX_PART_BYTES}-byte request limit of a Worker`,
      "the largest object that fits is 10,000 parts of 95 MiB",
    );
  }
  return size;
}

/**
 * The Worker's origin from a URL an operator gave as `name` (`R2_WORKER_URL`, `--worker-url`), or why it cannot
 * be one. The Worker serves its API at the root of its own host (a custom domain or workers.dev): a path, query
 * or fragment would be sent with every request and answered 404; credentials are never part of it (the token
 * goes in its own variable). `shown` is the URL as an error may print it: no credentials, no query (it may hold
 * a secret).
 */
export function checkWorkerUrl(raw: string, name = "the URL"): { origin: string } | { shown: string; reason: string; hint: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { shown: raw.replace(/[?#].*$/, "?..."), reason: "not a URL", hint: `set ${name} to the Worker's origin, e.g. https://backups.example.com` };
  }
  // Another scheme: `user:secret@host` without one parses as scheme `user:`, so nothing after it is shown.
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return { shown: `${url.protocol}...`, reason: `the scheme is '${url.protocol}' (not http or https)`, hint: `${name} starts with https:// (http:// for a local Worker)` };
  }
  const shown = `${url.protocol}//${url.host}${url.pathname}${url.search ? "?..." : ""}${url.hash ? "#..." : ""}`;
  if (url.username || url.password)
    return { shown, reason: "the URL carries credentials (user:password@)", hint: `remove them from ${name}; the Worker's token goes in SERVER_BYPASS_TOKEN` };
  if (/\/api\/?$/.test(url.pathname) && !url.search && !url.hash) {
    return { shown, reason: "the URL ends with the API path", hint: `drop '/api': ${name}=${url.origin}${url.pathname.replace(/\/api\/?$/, "")}` };
  }
  if (url.pathname !== "/" || url.search || url.hash) {
    return { shown, reason: "the URL has a path, query or fragment after the host", hint: `${name} is the Worker's origin: ${name}=${url.origin}` };
  }
  return { origin: url.origin };
}

/** The API path of an object key: each segment percent-encoded. */
export function objectPath(key: string): string {
  validateObjectKey(key);
  return `${PATHS.backups}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

/**
 * The key of an API path under `/api/backups/`, percent-decoded then validated (400 on failure in the
 * Worker). Returns undefined when the path is not an object path at all.
 */
export function keyFromPath(pathname: string): string | undefined {
  const prefix = `${PATHS.backups}/`;
  if (!pathname.startsWith(prefix)) return undefined;
  let key: string;
  try {
    key = decodeURIComponent(pathname.slice(prefix.length));
  } catch {
    throw new ContractError("decode", "backup key", pathname.slice(prefix.length), "is not valid percent-encoding");
  }
  return validateObjectKey(key);
}

/** Every error body of the Worker. */
export interface ApiError {
  error: string;
  message: string;
}

/** One object of a listing. */
export interface ApiObject {
  key: string;
  size: number;
  etag: string;
  uploaded: string;
  sha256?: string;
}

/** `GET /api/backups?prefix=&cursor=&delimiter=` */
export interface ApiListing {
  objects: ApiObject[];
  prefixes: string[];
  cursor?: string;
  truncated: boolean;
}

/** `POST ...?uploads` */
export interface ApiMultipartCreated {
  key: string;
  uploadId: string;
}

/** `PUT ...?uploadId=&partNumber=` */
export interface ApiPart {
  partNumber: number;
  etag: string;
}

/** `GET /api/status` */
export interface ApiStatus {
  healthy: boolean;
  now: string;
  maxBackupAgeHours: number;
  full: ApiStatusEntry | null;
  incremental: ApiStatusEntry | null;
  daily: ApiStatusEntry | null;
  drill: ApiStatusEntry | null;
  /** When a replica bucket is bound: complete sets the replica lacks (see `ApiReplicaStatus`). */
  replica?: ApiReplicaStatus;
  /** What makes the bucket unhealthy (the scheduled check alerts on these). */
  problems: string[];
  /** Worth a look but not an alert from the Worker (a failed drill has its own CloudWatch alarm). */
  warnings: string[];
}

/**
 * The replica's lag: how many complete sets `BACKUP_REPLICA_BUCKET` lacks, which, and how old the oldest
 * of them is. `behind` is true when that age is over `maxLagHours` (the lag alarm of docs/design.md).
 */
export interface ApiReplicaStatus {
  lag: number;
  missing: string[];
  /** Hours since the oldest missing set was taken (0 when none is missing). */
  oldestMissingAgeHours: number;
  maxLagHours: number;
  behind: boolean;
}

export interface ApiStatusEntry {
  id: string;
  at: string;
  ageHours: number;
}
