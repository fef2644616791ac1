import * as pulumi from "@pulumi/pulumi";
import { bundleWorker, WORKER_ENTRY, type WorkerBundle } from "../worker/bundle.ts";
import { Api } from "./components/api.ts";
import { Monitoring } from "./components/monitoring.ts";
import { Schedule } from "./components/schedule.ts";
import { Storage } from "./components/storage.ts";
import { Tokens } from "./components/tokens.ts";
import { loadStackConfig, runtimeConfigReader, withFallback, type ConfigReader, type StackConfig } from "./config.ts";
import { InfraError } from "./errors.ts";
import { isPreviewStack } from "./naming.ts";
import { projectValues, readStackFile } from "./stack-files.ts";

/** The stack outputs (null where a stack has no such resource, e.g. no Render jobs on a preview). */
export interface StackOutputs {
  preview: boolean;
  bucketName: pulumi.Output<string>;
  replicaBucketName: pulumi.Output<string> | null;
  workerScriptName: pulumi.Output<string>;
  workerUrl: pulumi.Output<string>;
  /** With `workerVersions`: the version this `up` deployed (a rollback's `workerStableVersionId`). */
  workerVersionId: pulumi.Output<string> | null;
  backupCronJobId: pulumi.Output<string> | null;
  drillCronJobId: pulumi.Output<string> | null;
  alarmArns: pulumi.Output<Record<string, string>> | null;
  dashboardUrl: pulumi.Output<string> | null;
  alarmTopicArn: pulumi.Output<string> | null;
  /** Secret outputs, for the operator (`pulumi stack output serverToken --show-secrets`) and `npm run dr`. */
  serverToken: pulumi.Output<string>;
  adminToken: pulumi.Output<string>;
}

/**
 * The config reader of a stack: its own config, and for preview stacks (`pr-<n>`, which may have no stack
 * file) the dev stack's non-secret values as fallback.
 */
export function stackConfigReader(stack: string): ConfigReader {
  const reader = runtimeConfigReader();
  return isPreviewStack(stack) ? withFallback(reader, projectValues(readStackFile("dev"))) : reader;
}

/** Bundles the Worker, naming the entry point when esbuild fails. */
export async function buildWorker(): Promise<WorkerBundle> {
  try {
    // Unminified: the same bytes the Worker tests and `npm run dev` run in Miniflare.
    return await bundleWorker();
  } catch (error) {
    throw new InfraError("bundle", "worker", WORKER_ENTRY, (error as Error).message.split("\n")[0] ?? "esbuild failed", "run `npm run build` to see every esbuild error");
  }
}

/**
 * The whole program: config, then the bundle (before any resource, never inside an apply), then one
 * component per concern. Only `infra/index.ts` calls it at top level; `npm run plan` and the tests call it
 * under mocks.
 */
export async function runProgram(stack: string = pulumi.getStack(), config: StackConfig = loadStackConfig(stack, stackConfigReader(stack))): Promise<StackOutputs> {
  const bundle = await buildWorker();
  const tokens = new Tokens("tokens", { ...config.secrets, withAgentToken: config.render !== undefined });
  const storage = new Storage("storage", {
    accountId: config.cloudflare.accountId,
    stack,
    jurisdiction: config.storage.jurisdiction,
    retention: config.storage.retention,
    preview: config.preview,
    ...(config.storage.location ? { location: config.storage.location } : {}),
    ...(config.storage.replicaLocation ? { replicaLocation: config.storage.replicaLocation } : {}),
  });
  const api = new Api("api", {
    accountId: config.cloudflare.accountId,
    stack,
    preview: config.preview,
    bundle,
    bucketName: storage.bucketName,
    ...(storage.replicaBucketName ? { replicaBucketName: storage.replicaBucketName, replicaMaxLagHours: config.storage.replicaMaxLagHours } : {}),
    failover: config.storage.failover,
    jurisdiction: config.storage.jurisdiction,
    serverToken: tokens.serverToken,
    adminToken: tokens.adminToken,
    ...(config.secrets.alertWebhookUrl ? { alertWebhookUrl: config.secrets.alertWebhookUrl } : {}),
    ...(config.secrets.serverTokenPrevious ? { serverTokenPrevious: config.secrets.serverTokenPrevious } : {}),
    maxBackupAgeHours: config.worker.maxBackupAgeHours,
    freshnessCheckSchedule: config.worker.freshnessCheckSchedule,
    ...(config.worker.versions ? { versions: config.worker.versions } : {}),
    ...(config.cloudflare.zoneId ? { zoneId: config.cloudflare.zoneId } : {}),
    ...(config.cloudflare.hostname ? { hostname: config.cloudflare.hostname } : {}),
    ...(config.cloudflare.workersDevSubdomain ? { workersDevSubdomain: config.cloudflare.workersDevSubdomain } : {}),
  });
  // The alarms wait for the schedule's first runs, and the schedule needs monitoring's metrics key: the
  // alarms get a promise of those runs, settled below once the schedule exists (with none, without Render).
  let armAlarms: (after: pulumi.Resource[]) => void = () => {};
  const alarmsAfter = new Promise<pulumi.Resource[]>((resolve) => (armAlarms = resolve));
  const monitoring = config.monitoring
    ? new Monitoring("monitoring", {
        stack,
        namespace: config.monitoring.namespace,
        region: config.monitoring.awsRegion,
        alarmEmails: config.monitoring.alarmEmails,
        alarmsAfter,
        ...(config.storage.replicaLocation !== undefined ? { replicaMaxLagHours: config.storage.replicaMaxLagHours } : {}),
      })
    : undefined;
  let schedule: Schedule | undefined;
  try {
    schedule = config.render
      ? new Schedule("schedule", {
          stack,
          render: config.render,
          workerUrl: api.url,
          workerLive: api.live,
          serverToken: tokens.serverToken,
          // Defined: the agent token is made exactly when there are Render jobs.
          agentToken: tokens.agentToken as pulumi.Output<string>,
          ...(config.secrets.alertWebhookUrl ? { webhookUrl: config.secrets.alertWebhookUrl } : {}),
          ...(monitoring && config.monitoring
            ? {
                metrics: {
                  namespace: config.monitoring.namespace,
                  region: config.monitoring.awsRegion,
                  accessKeyId: monitoring.accessKeyId,
                  secretAccessKey: monitoring.secretAccessKey,
                },
              }
            : {}),
        })
      : undefined;
  } finally {
    // Settled even when the schedule throws, so no alarm waits forever.
    armAlarms(schedule?.firstRuns ?? []);
  }
  return {
    preview: config.preview,
    bucketName: storage.bucketName,
    replicaBucketName: storage.replicaBucketName ?? null,
    workerScriptName: api.scriptName,
    workerUrl: api.url,
    workerVersionId: api.versionId ?? null,
    backupCronJobId: schedule?.backupJobId ?? null,
    drillCronJobId: schedule?.drillJobId ?? null,
    alarmArns: monitoring?.alarmArns ?? null,
    dashboardUrl: monitoring?.dashboardUrl ?? null,
    alarmTopicArn: monitoring?.topicArn ?? null,
    serverToken: tokens.serverToken,
    adminToken: tokens.adminToken,
  };
}
