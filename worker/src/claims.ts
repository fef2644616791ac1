import { WRITE_CLAIM_TTL_MS } from "../../core/api.ts";
import { CLAIMS_PREFIX, isOverwritableKey } from "../../core/keys.ts";
import { HttpError, describeError } from "./errors.ts";
import { toHex } from "./r2.ts";

/**
 * Atomic write-once for every create path (single PUT, form upload, multipart completion). A create-only
 * put is atomic in R2, but `complete()` of a multipart upload takes no condition, so a check-then-complete
 * can overwrite a PUT or another completion. Every writer of a new key therefore first takes the key's
 * claim, an object at `.claims/<sha256 of the key>` created with `If-None-Match: *` (only one creator
 * wins), then checks the key is absent, writes, and deletes the claim. A writer that meets a live claim
 * gets 409. A claim older than `WRITE_CLAIM_TTL_MS` was left by a Worker that died; it is taken over with
 * a compare-and-swap on its etag, so of several takers one wins.
 */

/** A claim this request holds: its object key and the etag it was written with. */
export interface Claim {
  claimKey: string;
  etag: string;
}

/** The claim object of a key: `.claims/<lowercase hex sha256 of the key>`. */
export async function claimKeyOf(key: string): Promise<string> {
  return `${CLAIMS_PREFIX}${toHex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)))}`;
}

/** When a claim was taken: its `takenAt` metadata (the Worker's clock), else its upload time. */
function takenAt(claim: R2Object): Date {
  const at = new Date(claim.customMetadata?.takenAt ?? "");
  return Number.isNaN(at.getTime()) ? claim.uploaded : at;
}

function inProgress(key: string, since: Date, exists: boolean): HttpError {
  return new HttpError(
    409,
    "write_in_progress",
    `write backup key '${key}': another upload of this key is in progress (since ${since.toISOString()}); the key ${exists ? "exists already" : "does not exist yet"} (backups are write-once: write a new key, or wait for that upload to finish; a claim left by a Worker that died is taken over after ${WRITE_CLAIM_TTL_MS / 60_000} minutes)`,
  );
}

/**
 * Takes the claim of `key` for `owner` (a request id, or the multipart uploadId) at `now`: creates it, or
 * takes over a stale one. A live claim (or a lost takeover) is a 409 that says another upload is under way.
 */
export async function takeClaim(bucket: R2Bucket, key: string, owner: string, now: Date): Promise<Claim> {
  const claimKey = await claimKeyOf(key);
  const body = JSON.stringify({ key, owner, takenAt: now.toISOString() });
  const customMetadata = { key, owner, takenAt: now.toISOString() };
  // Three tries: a claim can be released between our failed create and our look at it.
  for (let attempt = 0; attempt < 3; attempt++) {
    const created = await bucket.put(claimKey, body, { onlyIf: new Headers({ "If-None-Match": "*" }), customMetadata });
    if (created !== null) return { claimKey, etag: created.etag };
    const held = await bucket.head(claimKey);
    if (held === null) continue;
    const since = takenAt(held);
    if (now.getTime() - since.getTime() <= WRITE_CLAIM_TTL_MS) throw inProgress(key, since, (await bucket.head(key)) !== null);
    // Stale: whoever swaps the etag it had wins; the others see a fresh claim on their next look.
    const taken = await bucket.put(claimKey, body, { onlyIf: { etagMatches: held.etag }, customMetadata });
    if (taken !== null) {
      console.warn(`write backup key '${key}': took over a claim left at ${since.toISOString()} by '${held.customMetadata?.owner ?? "?"}'`);
      return { claimKey, etag: taken.etag };
    }
  }
  throw inProgress(key, now, (await bucket.head(key)) !== null);
}

/**
 * Deletes a claim when it is still ours (R2's delete takes no condition: the etag is checked just before,
 * so only a claim taken over in that instant, after a whole TTL, could be lost). Never throws: a claim
 * left behind only makes the next writer of this key wait out the TTL.
 */
export async function releaseClaim(bucket: R2Bucket, claim: Claim): Promise<void> {
  try {
    const held = await bucket.head(claim.claimKey);
    if (held?.etag === claim.etag) await bucket.delete(claim.claimKey);
  } catch (error) {
    console.error(`release write claim '${claim.claimKey}': ${describeError(error)}`);
  }
}

/**
 * Runs `write` as the one writer of a new `key`: takes the claim, refuses a key that exists (409), writes,
 * and releases the claim whatever happened. `backups/state/` keys are overwritable and take no claim.
 * `exists` is the 409 for a key that exists (the caller's wording).
 */
export async function writeOnce<T>(bucket: R2Bucket, key: string, owner: string, now: Date, exists: () => HttpError, write: () => Promise<T>): Promise<T> {
  if (isOverwritableKey(key)) return write();
  const claim = await takeClaim(bucket, key, owner, now);
  try {
    if ((await bucket.head(key)) !== null) throw exists();
    return await write();
  } finally {
    await releaseClaim(bucket, claim);
  }
}
