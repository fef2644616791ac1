import { ContractError } from "./errors.ts";
import { CLAIMS_PREFIX, PREFIXES } from "./keys.ts";
import { object, wholeNumber } from "./validate.ts";

/**
 * The retention policy, one object: infra derives the R2 lifecycle and lock rules from it, and the job
 * explains it. Ages are in days here and in SECONDS in the rules (the R2 API's unit, docs/design.md fact 3).
 */
export interface RetentionPolicy {
  /** `backups/full/`: deleted after this many days (the seed's "30 days of hourly"). */
  fullDays: number;
  /** `backups/incremental/`: deleted after this many days. */
  incrementalDays: number;
  /** `backups/daily/`: moved to InfrequentAccess, then deleted ("12 months of daily"). */
  dailyInfrequentAccessDays: number;
  dailyDays: number;
  /** `backups/drills/`: drill records are small; kept for a year of history. */
  drillDays: number;
  /** Incomplete multipart uploads are aborted after this many days. */
  abortMultipartDays: number;
  /** Bucket lock: objects under each protected prefix cannot be deleted or overwritten for this long. 0 = no lock. */
  lockDays: number;
}

/** The policy's shape: whole days, and no other field (a misspelt one would silently keep the default). */
const retentionPolicy = object<RetentionPolicy>(
  {
    fullDays: wholeNumber(1),
    incrementalDays: wholeNumber(1),
    dailyInfrequentAccessDays: wholeNumber(1),
    dailyDays: wholeNumber(1),
    drillDays: wholeNumber(1),
    abortMultipartDays: wholeNumber(1),
    lockDays: wholeNumber(0),
  },
  "reject",
);

export const DAY_SECONDS = 86_400;

/** The policy of docs/design.md, "Retention". */
export const DEFAULT_RETENTION: RetentionPolicy = Object.freeze({
  fullDays: 30,
  incrementalDays: 30,
  dailyInfrequentAccessDays: 90,
  dailyDays: 365,
  drillDays: 365,
  abortMultipartDays: 1,
  lockDays: 7,
});

/** The prefixes a bucket lock protects: everything under `backups/` except `backups/state/`. */
export const LOCKED_PREFIXES = [PREFIXES.full, PREFIXES.incremental, PREFIXES.daily, PREFIXES.drills] as const;

/** Validates a policy (e.g. from stack config merged over the default); throws naming every problem. */
export function validateRetentionPolicy(value: unknown): RetentionPolicy {
  const problems: string[] = [];
  const p = retentionPolicy(value, "", problems);
  if (problems.length > 0) throw new ContractError("validate", "retention policy", JSON.stringify(value), problems.join("; "));
  if (p.dailyInfrequentAccessDays >= p.dailyDays) {
    problems.push(`dailyInfrequentAccessDays (${p.dailyInfrequentAccessDays}) must be less than dailyDays (${p.dailyDays}): a delete within a day of a transition wins`);
  }
  for (const [name, days] of [
    ["fullDays", p.fullDays],
    ["incrementalDays", p.incrementalDays],
    ["dailyDays", p.dailyDays],
    ["drillDays", p.drillDays],
  ] as const) {
    if (p.lockDays > days) problems.push(`lockDays (${p.lockDays}) must not exceed ${name} (${days}): the lock would keep objects past their deletion`);
  }
  if (problems.length > 0) throw new ContractError("validate", "retention policy", JSON.stringify(value), problems.join("; "));
  return p;
}

/** One R2 lifecycle rule, in the shape of `@pulumi/cloudflare`'s `R2BucketLifecycle` rules (ages in seconds). */
export interface LifecycleRule {
  id: string;
  enabled: boolean;
  conditions: { prefix: string };
  deleteObjectsTransition?: { condition: { type: "Age"; maxAge: number } };
  storageClassTransitions?: { storageClass: "InfrequentAccess"; condition: { type: "Age"; maxAge: number } }[];
  abortMultipartUploadsTransition?: { condition: { type: "Age"; maxAge: number } };
}

/** One R2 bucket-lock rule, in the shape of `R2BucketLock` rules. */
export interface LockRule {
  id: string;
  enabled: boolean;
  prefix: string;
  condition: { type: "Age"; maxAgeSeconds: number };
}

const age = (days: number) => ({ type: "Age" as const, maxAge: days * DAY_SECONDS });

/** The lifecycle rules of a policy. One action per rule where possible (a Wrangler bug once mixed them up). */
export function lifecycleRules(policy: RetentionPolicy): LifecycleRule[] {
  const p = validateRetentionPolicy(policy);
  return [
    { id: "expire-full", enabled: true, conditions: { prefix: PREFIXES.full }, deleteObjectsTransition: { condition: age(p.fullDays) } },
    { id: "expire-incremental", enabled: true, conditions: { prefix: PREFIXES.incremental }, deleteObjectsTransition: { condition: age(p.incrementalDays) } },
    {
      id: "daily-to-infrequent-access",
      enabled: true,
      conditions: { prefix: PREFIXES.daily },
      storageClassTransitions: [{ storageClass: "InfrequentAccess", condition: age(p.dailyInfrequentAccessDays) }],
    },
    { id: "expire-daily", enabled: true, conditions: { prefix: PREFIXES.daily }, deleteObjectsTransition: { condition: age(p.dailyDays) } },
    { id: "expire-drills", enabled: true, conditions: { prefix: PREFIXES.drills }, deleteObjectsTransition: { condition: age(p.drillDays) } },
    { id: "abort-incomplete-multipart", enabled: true, conditions: { prefix: "" }, abortMultipartUploadsTransition: { condition: age(p.abortMultipartDays) } },
    // A write claim (worker/src/claims.ts) is deleted by the write that took it; one left by a Worker that died is
    // stale after WRITE_CLAIM_TTL_MS (15 minutes) and only ever taken over. A day is the lifecycle's finest unit.
    { id: "expire-stale-claims", enabled: true, conditions: { prefix: CLAIMS_PREFIX }, deleteObjectsTransition: { condition: age(STALE_CLAIM_DAYS) } },
  ];
}

/** Days after which a write claim left behind is deleted by the lifecycle (not a policy choice: a claim is stale after 15 minutes). */
export const STALE_CLAIM_DAYS = 1;

/**
 * The bucket-lock rules: one per protected prefix, since R2 has no exemption rule and the strictest rule
 * wins (so `backups/state/` stays writable). Empty when `lockDays` is 0 (preview stacks).
 */
export function lockRules(policy: RetentionPolicy): LockRule[] {
  const p = validateRetentionPolicy(policy);
  if (p.lockDays === 0) return [];
  return LOCKED_PREFIXES.map((prefix) => ({
    id: `lock-${prefix.slice("backups/".length, -1)}`,
    enabled: true,
    prefix,
    condition: { type: "Age" as const, maxAgeSeconds: p.lockDays * DAY_SECONDS },
  }));
}

/** What the policy will do to an object: when it becomes InfrequentAccess, when it is deleted, and why. */
export interface RetentionFate {
  key: string;
  deleteAt: Date | undefined;
  infrequentAccessAt: Date | undefined;
  lockedUntil: Date | undefined;
  reason: string;
}

/** Explains a key's fate under the policy (pure; `uploaded` is the object's upload time). */
export function explainRetention(policy: RetentionPolicy, key: string, uploaded: Date): RetentionFate {
  const p = validateRetentionPolicy(policy);
  const plus = (days: number) => new Date(uploaded.getTime() + days * DAY_SECONDS * 1000);
  const lockedUntil = p.lockDays > 0 && LOCKED_PREFIXES.some((x) => key.startsWith(x)) ? plus(p.lockDays) : undefined;
  const base = { key, lockedUntil, infrequentAccessAt: undefined as Date | undefined };
  if (key.startsWith(PREFIXES.full)) return { ...base, deleteAt: plus(p.fullDays), reason: `full backups are kept ${p.fullDays} days` };
  if (key.startsWith(PREFIXES.incremental)) return { ...base, deleteAt: plus(p.incrementalDays), reason: `incrementals are kept ${p.incrementalDays} days` };
  if (key.startsWith(PREFIXES.daily)) {
    return {
      ...base,
      infrequentAccessAt: plus(p.dailyInfrequentAccessDays),
      deleteAt: plus(p.dailyDays),
      reason: `daily backups move to InfrequentAccess after ${p.dailyInfrequentAccessDays} days and are kept ${p.dailyDays} days`,
    };
  }
  if (key.startsWith(PREFIXES.drills)) return { ...base, deleteAt: plus(p.drillDays), reason: `drill records are kept ${p.drillDays} days` };
  return { ...base, deleteAt: undefined, reason: "state pointers are overwritten, never expired" };
}
