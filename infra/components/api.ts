import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import { BINDINGS } from "../../core/index.ts";
import { COMPATIBILITY_DATE, COMPATIBILITY_FLAGS, WORKER_MAIN_MODULE, type WorkerBundle } from "../../worker/bundle.ts";
import type { FailoverMode } from "../config.ts";
import { EmptyBucketOnDestroy } from "../empty-bucket.ts";
import { physicalName } from "../naming.ts";
import { WorkersSubdomain } from "../workers-subdomain.ts";

export interface ApiArgs {
  accountId: string;
  stack: string;
  preview: boolean;
  /** Built by `bundleWorker()` when the program runs, before any resource: never inside an apply. */
  bundle: WorkerBundle;
  bucketName: pulumi.Input<string>;
  replicaBucketName?: pulumi.Input<string>;
  /** Which bucket serves (config `failover`; "off" when not given). */
  failover?: FailoverMode;
  /** The replica lag alarm's limit (`REPLICA_MAX_LAG_HOURS`), bound when a replica is. */
  replicaMaxLagHours?: number;
  jurisdiction: string;
  serverToken: pulumi.Output<string>;
  /** During a rotation: the old job token, still accepted (config `serverTokenPrevious`). */
  serverTokenPrevious?: pulumi.Output<string>;
  adminToken: pulumi.Output<string>;
  alertWebhookUrl?: pulumi.Output<string>;
  maxBackupAgeHours: number;
  freshnessCheckSchedule: string;
  /** Non-preview stacks: the Worker's custom domain `<hostname>` on this zone. */
  zoneId?: string;
  hostname?: string;
  /** Preview stacks: served on `<script>.<subdomain>.workers.dev`; looked up from the account when not given. */
  workersDevSubdomain?: string;
  /** Deploy as Worker + WorkerVersion + WorkersDeployment (gradual rollout, rollback) instead of one WorkersScript. */
  versions?: WorkerVersionsArgs;
}

/**
 * Which physical bucket the Worker binds as `BACKUP_BUCKET` (served, written) and which as
 * `BACKUP_REPLICA_BUCKET` (filled from it by the cron), per `failover` (docs/design.md, "Replica and failover"):
 * off: primary, replica; replica: replica, primary (the way back: what was written during the failover flows
 * into the primary); replica-only: the replica alone (the primary's region or bucket is lost).
 */
export function servedBuckets<T>(failover: FailoverMode, primary: T, replica: T | undefined): { bucket: T; replicaBucket?: T } {
  if (failover === "off" || replica === undefined) return replica === undefined ? { bucket: primary } : { bucket: primary, replicaBucket: replica };
  return failover === "replica" ? { bucket: replica, replicaBucket: primary } : { bucket: replica };
}

/** The Worker's bindings (docs/design.md, "Worker API"), names from `core/`. Secrets are `secret_text`. */
export function workerBindings(args: ApiArgs): cloudflare.types.input.WorkersScriptBinding[] {
  const jurisdiction = args.jurisdiction === "default" ? {} : { jurisdiction: args.jurisdiction };
  const served = servedBuckets(args.failover ?? "off", args.bucketName, args.replicaBucketName);
  const bindings: cloudflare.types.input.WorkersScriptBinding[] = [
    { type: "r2_bucket", name: BINDINGS.bucket, bucketName: served.bucket, ...jurisdiction },
    { type: "secret_text", name: BINDINGS.serverToken, text: args.serverToken },
    { type: "secret_text", name: BINDINGS.adminToken, text: args.adminToken },
    ...(args.serverTokenPrevious !== undefined ? [{ type: "secret_text", name: BINDINGS.serverTokenPrevious, text: args.serverTokenPrevious }] : []),
    { type: "plain_text", name: BINDINGS.maxBackupAgeHours, text: String(args.maxBackupAgeHours) },
  ];
  if (served.replicaBucket !== undefined) {
    bindings.push({ type: "r2_bucket", name: BINDINGS.replicaBucket, bucketName: served.replicaBucket, ...jurisdiction });
    if (args.replicaMaxLagHours !== undefined) bindings.push({ type: "plain_text", name: BINDINGS.replicaMaxLagHours, text: String(args.replicaMaxLagHours) });
  }
  // A webhook URL often embeds its own credential (Slack, Discord): bound as a secret, read the same way.
  if (args.alertWebhookUrl !== undefined) bindings.push({ type: "secret_text", name: BINDINGS.alertWebhookUrl, text: args.alertWebhookUrl });
  return bindings;
}

/**
 * The backup API: the Worker bundled from `worker/`, deployed as an ES module with its bindings, reachable
 * on its custom domain in the configured zone (or, for preview stacks, on workers.dev only), and, outside previews,
 * a cron trigger that runs its freshness check.
 */
export class Api extends pulumi.ComponentResource {
  readonly scriptName: pulumi.Output<string>;
  readonly url: pulumi.Output<string>;
  /** The single-resource Worker (the default), or undefined when deployed as versions. */
  readonly script: cloudflare.WorkersScript | undefined;
  /** With `versions`: the version this `up` uploaded (`pulumi stack output workerVersionId`). */
  readonly versionId: pulumi.Output<string> | undefined;
  /** What serves requests once `up` is done: whatever must wait for the Worker's new bindings waits for these. */
  readonly live: pulumi.Resource[];

  constructor(name: string, args: ApiArgs, opts?: pulumi.ComponentResourceOptions) {
    super("r2-sqlite-backup:api:Api", name, {}, opts);
    const scriptName = physicalName(args.stack, "api");
    // What answers requests once `up` is done: the script, or the deployment of a version.
    let live: pulumi.Resource[];
    if (args.versions) {
      const deployed = this.versioned(name, scriptName, args.versions, args);
      this.script = undefined;
      this.scriptName = deployed.scriptName;
      this.versionId = deployed.versionId;
      live = deployed.live;
    } else {
      this.script = new cloudflare.WorkersScript(
        `${name}-worker`,
        {
          accountId: args.accountId,
          scriptName,
          content: args.bundle.code,
          mainModule: WORKER_MAIN_MODULE,
          compatibilityDate: COMPATIBILITY_DATE,
          compatibilityFlags: COMPATIBILITY_FLAGS,
          bindings: workerBindings(args),
          observability: { enabled: true },
        },
        { parent: this },
      );
      this.scriptName = this.script.scriptName;
      this.versionId = undefined;
      // workers.dev only for previews: production is reachable on its own domain alone.
      const workersDev = new cloudflare.WorkersScriptSubdomain(
        `${name}-workers-dev`,
        { accountId: args.accountId, scriptName: this.script.scriptName, enabled: args.preview, previewsEnabled: false },
        { parent: this },
      );
      live = [this.script, workersDev];
    }
    this.live = live;
    if (args.preview) {
      const subdomain = args.workersDevSubdomain ?? new WorkersSubdomain(`${name}-workers-dev-subdomain`, { accountId: args.accountId }, { parent: this }).subdomain;
      this.url = pulumi.interpolate`https://${scriptName}.${subdomain}.workers.dev`;
      // R2 deletes only empty buckets: `destroy` empties a preview's bucket through its Worker first.
      new EmptyBucketOnDestroy(
        `${name}-empty-bucket-on-destroy`,
        { workerUrl: this.url, adminToken: args.adminToken, bucketName: args.bucketName },
        { parent: this, dependsOn: live },
      );
    } else {
      // A Workers custom domain (as SST's Cloudflare components do): Cloudflare creates the DNS record and
      // the certificate, where a route would need both made by hand.
      const domain = new cloudflare.WorkersCustomDomain(
        `${name}-domain`,
        { accountId: args.accountId, zoneId: args.zoneId as string, hostname: args.hostname as string, service: this.scriptName },
        { parent: this, dependsOn: live },
      );
      this.url = pulumi.interpolate`https://${domain.hostname}`;
    }
    // Cron triggers are counted per account (Workers Free: 5), and a preview has no backups to watch:
    // only non-preview stacks run the freshness check.
    if (!args.preview) {
      new cloudflare.WorkersCronTrigger(
        `${name}-freshness-check`,
        { accountId: args.accountId, scriptName: this.scriptName, schedules: [{ cron: args.freshnessCheckSchedule }] },
        { parent: this, dependsOn: live },
      );
    }
    this.registerOutputs({ scriptName: this.scriptName, url: this.url, versionId: this.versionId });
  }

  /**
   * The Worker as the provider recommends for controlled rollouts: `Worker` (the script's identity and
   * workers.dev), an immutable `WorkerVersion` per upload, and a `WorkersDeployment` that sends traffic to
   * versions by percentage. With `stableVersionId` set, the new version gets `rolloutPercent` of the
   * traffic and the stable one the rest; at 0 the stable version takes all of it (a rollback).
   */
  private versioned(
    name: string,
    scriptName: string,
    v: WorkerVersionsArgs,
    args: ApiArgs,
  ): { scriptName: pulumi.Output<string>; versionId: pulumi.Output<string>; live: pulumi.Resource[] } {
    const worker = new cloudflare.Worker(
      `${name}-worker`,
      { accountId: args.accountId, name: scriptName, observability: { enabled: true }, subdomain: { enabled: args.preview, previewsEnabled: false } },
      { parent: this },
    );
    const version = new cloudflare.WorkerVersion(
      `${name}-version`,
      {
        accountId: args.accountId,
        workerId: worker.id,
        mainModule: WORKER_MAIN_MODULE,
        compatibilityDate: COMPATIBILITY_DATE,
        compatibilityFlags: COMPATIBILITY_FLAGS,
        bindings: workerVersionBindings(workerBindings(args)),
        modules: [{ name: WORKER_MAIN_MODULE, contentType: "application/javascript+module", contentBase64: Buffer.from(args.bundle.code).toString("base64") }],
        annotations: { workersMessage: `pulumi up of ${args.stack}, bundle sha256 ${args.bundle.sha256}` },
      },
      { parent: this },
    );
    const deployment = new cloudflare.WorkersDeployment(
      `${name}-deployment`,
      { accountId: args.accountId, scriptName: worker.name, strategy: "percentage", versions: deploymentVersions(version.id, v) },
      { parent: this },
    );
    return { scriptName: worker.name, versionId: version.id, live: [worker, deployment] };
  }
}

/** How the versioned Worker rolls out (config `workerVersions`, `workerStableVersionId`, `workerRolloutPercent`). */
export interface WorkerVersionsArgs {
  /** The version that serves the rest of the traffic during a rollout, or all of it at 0 %. */
  stableVersionId?: string;
  /** Share of the traffic for the version this `up` uploads (0 to 100; 100 without a stable version). */
  rolloutPercent: number;
}

/** The deployment's traffic split: all to the new version, or new/stable by percentage (0 % = rollback). */
export function deploymentVersions(newVersionId: pulumi.Input<string>, v: WorkerVersionsArgs): cloudflare.types.input.WorkersDeploymentVersion[] {
  if (v.stableVersionId === undefined || v.rolloutPercent >= 100) return [{ versionId: newVersionId, percentage: 100 }];
  if (v.rolloutPercent <= 0) return [{ versionId: v.stableVersionId, percentage: 100 }];
  return [
    { versionId: newVersionId, percentage: v.rolloutPercent },
    { versionId: v.stableVersionId, percentage: 100 - v.rolloutPercent },
  ];
}

/** The script bindings as `WorkerVersion` bindings, field by field (the two types are separate in the provider). */
export function workerVersionBindings(bindings: cloudflare.types.input.WorkersScriptBinding[]): cloudflare.types.input.WorkerVersionBinding[] {
  return bindings.map((b) => {
    const out: cloudflare.types.input.WorkerVersionBinding = { type: b.type, name: b.name };
    if (b.text !== undefined) out.text = b.text;
    if (b.bucketName !== undefined) out.bucketName = b.bucketName;
    if (b.jurisdiction !== undefined) out.jurisdiction = b.jurisdiction;
    return out;
  });
}
