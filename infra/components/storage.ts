import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import { lifecycleRules, lockRules, type LifecycleRule, type LockRule, type RetentionPolicy } from "../../core/index.ts";
import { physicalName } from "../naming.ts";

export interface StorageArgs {
  accountId: string;
  stack: string;
  /** Location hint; undefined lets Cloudflare choose. Used only when the bucket is created. */
  location?: string;
  jurisdiction: string;
  /** When set: a second bucket there, with the same rules (R2 does not replicate, docs/design.md fact 4). */
  replicaLocation?: string;
  retention: RetentionPolicy;
  /** Preview stacks: buckets can be destroyed. Otherwise protected and retained on delete. */
  preview: boolean;
}

/**
 * core's lifecycle rules as the provider's own input type, field by field: a field renamed in core, or
 * misspelled here, is a type error (a rule passed through whole would not be, TypeScript checks excess
 * properties only on object literals).
 */
export function providerLifecycleRules(rules: readonly LifecycleRule[]): cloudflare.types.input.R2BucketLifecycleRule[] {
  return rules.map((r) => {
    const rule: cloudflare.types.input.R2BucketLifecycleRule = { id: r.id, enabled: r.enabled, conditions: { prefix: r.conditions.prefix } };
    if (r.deleteObjectsTransition)
      rule.deleteObjectsTransition = { condition: { type: r.deleteObjectsTransition.condition.type, maxAge: r.deleteObjectsTransition.condition.maxAge } };
    if (r.abortMultipartUploadsTransition)
      rule.abortMultipartUploadsTransition = { condition: { type: r.abortMultipartUploadsTransition.condition.type, maxAge: r.abortMultipartUploadsTransition.condition.maxAge } };
    if (r.storageClassTransitions) {
      rule.storageClassTransitions = r.storageClassTransitions.map((t) => ({ storageClass: t.storageClass, condition: { type: t.condition.type, maxAge: t.condition.maxAge } }));
    }
    return rule;
  });
}

/** core's lock rules as the provider's own input type, field by field (see `providerLifecycleRules`). */
export function providerLockRules(rules: readonly LockRule[]): cloudflare.types.input.R2BucketLockRule[] {
  return rules.map((r) => ({ id: r.id, enabled: r.enabled, prefix: r.prefix, condition: { type: r.condition.type, maxAgeSeconds: r.condition.maxAgeSeconds } }));
}

/** One bucket with its lifecycle rules and lock. */
export interface BucketSet {
  bucket: cloudflare.R2Bucket;
  lifecycle: cloudflare.R2BucketLifecycle;
  lock: cloudflare.R2BucketLock | undefined;
}

/**
 * The backup buckets: the primary, and an optional replica in another location, each with the lifecycle
 * and lock rules derived from the one retention policy in `core/`. Outside previews, `pulumi destroy`
 * never deletes a bucket or lifts its lock: they are protected and retained on delete.
 */
export class Storage extends pulumi.ComponentResource {
  readonly bucketName: pulumi.Output<string>;
  readonly replicaBucketName: pulumi.Output<string> | undefined;
  readonly primary: BucketSet;
  readonly replica: BucketSet | undefined;

  constructor(name: string, args: StorageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("r2-sqlite-backup:storage:Storage", name, {}, opts);
    this.primary = this.bucketSet(`${name}-primary`, physicalName(args.stack, "backups"), args.location, args);
    this.bucketName = this.primary.bucket.name;
    if (args.replicaLocation !== undefined) {
      this.replica = this.bucketSet(`${name}-replica`, physicalName(args.stack, "backups-replica"), args.replicaLocation, args);
      this.replicaBucketName = this.replica.bucket.name;
    }
    this.registerOutputs({ bucketName: this.bucketName, replicaBucketName: this.replicaBucketName });
  }

  private bucketSet(name: string, bucketName: string, location: string | undefined, args: StorageArgs): BucketSet {
    const keep: pulumi.CustomResourceOptions = args.preview ? {} : { protect: true, retainOnDelete: true };
    const bucket = new cloudflare.R2Bucket(
      name,
      { accountId: args.accountId, name: bucketName, jurisdiction: args.jurisdiction, ...(location ? { location } : {}) },
      { parent: this, ...keep },
    );
    const target = { accountId: args.accountId, bucketName: bucket.name, jurisdiction: args.jurisdiction };
    const lifecycle = new cloudflare.R2BucketLifecycle(`${name}-lifecycle`, { ...target, rules: providerLifecycleRules(lifecycleRules(args.retention)) }, { parent: this });
    const rules = providerLockRules(lockRules(args.retention));
    // Removing the lock resource would lift the immutability of recent backups: kept like the bucket.
    const lock = rules.length === 0 ? undefined : new cloudflare.R2BucketLock(`${name}-lock`, { ...target, rules }, { parent: this, ...keep });
    return { bucket, lifecycle, lock };
  }
}
