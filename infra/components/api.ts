import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import { BINDINGS } from "../../core/index.ts";
import { COMPATIBILITY_DATE, COMPATIBILITY_FLAGS, WORKER_MAIN_MODULE, type WorkerBundle } from "../../worker/bundle.ts";
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
  jurisdiction: string;
  serverToken: pulumi.Output<string>;
  adminToken: pulumi.Output<string>;
  alertWebhookUrl?: pulumi.Output<string>;
  maxBackupAgeHours: number;
  freshnessCheckSchedule: string;
  /** Non-preview stacks: the Worker's custom domain `<hostname>` on this zone. */
  zoneId?: string;
  hostname?: string;
  /** Preview stacks: served on `<script>.<subdomain>.workers.dev`; looked up from the account when not given. */
  workersDevSubdomain?: string;
}

/** The Worker's bindings (docs/design.md, "Worker API"), names from `core/`. Secrets are `secret_text`. */
export function workerBindings(args: ApiArgs): cloudflare.types.input.WorkersScriptBinding[] {
  const jurisdiction = args.jurisdiction === "default" ? {} : { jurisdiction: args.jurisdiction };
  const bindings: cloudflare.types.input.WorkersScriptBinding[] = [
    { type: "r2_bucket", name: BINDINGS.bucket, bucketName: args.bucketName, ...jurisdiction },
    { type: "secret_text", name: BINDINGS.serverToken, text: args.serverToken },
    { type: "secret_text", name: BINDINGS.adminToken, text: args.adminToken },
    { type: "plain_text", name: BINDINGS.maxBackupAgeHours, text: String(args.maxBackupAgeHours) },
  ];
  if (args.replicaBucketName !== undefined) bindings.push({ type: "r2_bucket", name: BINDINGS.replicaBucket, bucketName: args.replicaBucketName, ...jurisdiction });
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
  readonly script: cloudflare.WorkersScript;

  constructor(name: string, args: ApiArgs, opts?: pulumi.ComponentResourceOptions) {
    super("r2-sqlite-backup:api:Api", name, {}, opts);
    const scriptName = physicalName(args.stack, "api");
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
    // workers.dev only for previews: production is reachable on its own route alone.
    const workersDev = new cloudflare.WorkersScriptSubdomain(
      `${name}-workers-dev`,
      { accountId: args.accountId, scriptName: this.script.scriptName, enabled: args.preview, previewsEnabled: false },
      { parent: this },
    );
    if (args.preview) {
      const subdomain = args.workersDevSubdomain ?? new WorkersSubdomain(`${name}-workers-dev-subdomain`, { accountId: args.accountId }, { parent: this }).subdomain;
      this.url = pulumi.interpolate`https://${scriptName}.${subdomain}.workers.dev`;
      // R2 deletes only empty buckets: `destroy` empties a preview's bucket through its Worker first.
      new EmptyBucketOnDestroy(
        `${name}-empty-bucket-on-destroy`,
        { workerUrl: this.url, adminToken: args.adminToken, bucketName: args.bucketName },
        { parent: this, dependsOn: [this.script, workersDev] },
      );
    } else {
      // A Workers custom domain (as SST's Cloudflare components do): Cloudflare creates the DNS record and
      // the certificate, where a route would need both made by hand.
      const domain = new cloudflare.WorkersCustomDomain(
        `${name}-domain`,
        { accountId: args.accountId, zoneId: args.zoneId as string, hostname: args.hostname as string, service: this.script.scriptName },
        { parent: this },
      );
      this.url = pulumi.interpolate`https://${domain.hostname}`;
    }
    // Cron triggers are counted per account (Workers Free: 5), and a preview has no backups to watch:
    // only non-preview stacks run the freshness check.
    if (!args.preview) {
      new cloudflare.WorkersCronTrigger(
        `${name}-freshness-check`,
        { accountId: args.accountId, scriptName: this.script.scriptName, schedules: [{ cron: args.freshnessCheckSchedule }] },
        { parent: this },
      );
    }
    this.registerOutputs({ scriptName: this.scriptName, url: this.url });
  }
}
