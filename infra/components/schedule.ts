import * as pulumi from "@pulumi/pulumi";
import { JOB_ENV } from "../../core/index.ts";
import type { RenderConfig } from "../config.ts";
import { physicalName } from "../naming.ts";
import { previousKey, RenderCronJob, RenderCronJobRun, RenderRotationCleanup, RenderServiceEnvVars } from "../render/provider.ts";

/** What the job needs to publish metrics (from the monitoring component), when monitoring is on. */
export interface MetricsCredentials {
  namespace: string;
  region: string;
  accessKeyId: pulumi.Output<string>;
  secretAccessKey: pulumi.Output<string>;
}

export interface ScheduleArgs {
  stack: string;
  render: RenderConfig;
  workerUrl: pulumi.Input<string>;
  serverToken: pulumi.Output<string>;
  agentToken: pulumi.Output<string>;
  /** Completion and failure notices of the job (docs/design.md, Monitoring); the Worker's alert webhook. */
  webhookUrl?: pulumi.Output<string>;
  metrics?: MetricsCredentials;
  /** The Worker's live resources: the app gets a rotated SERVER_BYPASS_TOKEN only once the Worker has it. */
  workerLive?: pulumi.Resource[];
}

/**
 * The commands the cron jobs run. They use the package the way an app does: the build installs it (and only
 * its runtime dependencies: no Pulumi, no test tools) into `.r2backup/` beside the checkout, whose own
 * package.json it never reads, and the jobs run its `r2backup` bin.
 */
export const CRON_PREFIX = ".r2backup";
const BIN = `${CRON_PREFIX}/node_modules/.bin/r2backup`;
export function buildCommand(packageSpec: string): string {
  return `npm install --prefix ${CRON_PREFIX} --no-save --no-audit --no-fund ${packageSpec}`;
}
export function backupCommand(agentUrl: string): string {
  return `${BIN} trigger --agent-url ${agentUrl}`;
}
export const DRILL_COMMAND = `${BIN} verify`;

/**
 * The Render side (docs/design.md fact 1): the backup cron job only triggers the agent inside the app service
 * that owns the disk; the monthly drill restores into a temporary file through the Worker. The agent's
 * variables are set on the existing app service, key by key.
 */
export class Schedule extends pulumi.ComponentResource {
  readonly backupJobId: pulumi.Output<string>;
  readonly drillJobId: pulumi.Output<string>;
  /** The first backup and drill runs: what the alarms wait for. */
  readonly firstRuns: pulumi.Resource[];

  constructor(name: string, args: ScheduleArgs, opts?: pulumi.ComponentResourceOptions) {
    super("r2-sqlite-backup:schedule:Schedule", name, {}, opts);
    const r = args.render;
    const metricsEnv: Record<string, pulumi.Input<string>> = args.metrics
      ? {
          [JOB_ENV.metricsNamespace]: args.metrics.namespace,
          [JOB_ENV.awsRegion]: args.metrics.region,
          [JOB_ENV.awsAccessKeyId]: args.metrics.accessKeyId,
          [JOB_ENV.awsSecretAccessKey]: args.metrics.secretAccessKey,
        }
      : {};
    const notifyEnv: Record<string, pulumi.Input<string>> = args.webhookUrl ? { [JOB_ENV.webhookUrl]: args.webhookUrl } : {};
    const common = {
      ownerId: r.ownerId,
      region: r.region,
      plan: r.plan,
      runtime: "node",
      repo: r.repo,
      branch: r.branch,
      rootDir: "",
      buildCommand: buildCommand(r.package),
      autoDeploy: "yes" as const,
    };
    // Order of a rotation (docs/disaster-recovery.md, section 3): the app service first, deployed and live,
    // accepting the old agent token beside the new one; then the cron jobs, deployed; then the old token goes.
    const agentEnv = new RenderServiceEnvVars(
      `${name}-agent-env`,
      {
        serviceId: r.appServiceId,
        envVars: { [JOB_ENV.workerUrl]: args.workerUrl, [JOB_ENV.serverToken]: args.serverToken, [JOB_ENV.agentToken]: args.agentToken, ...metricsEnv, ...notifyEnv },
        keepPrevious: [JOB_ENV.agentToken],
      },
      { parent: this, dependsOn: args.workerLive ?? [] },
    );
    const afterAgent = { parent: this, dependsOn: [agentEnv] };
    const backup = new RenderCronJob(
      `${name}-backup`,
      {
        ...common,
        name: physicalName(args.stack, "backup"),
        schedule: r.backupSchedule,
        startCommand: backupCommand(r.agentUrl),
        envVars: pulumi.all({ [JOB_ENV.agentToken]: args.agentToken }),
      },
      afterAgent,
    );
    const drill = new RenderCronJob(
      `${name}-restore-drill`,
      {
        ...common,
        name: physicalName(args.stack, "restore-drill"),
        schedule: r.drillSchedule,
        startCommand: DRILL_COMMAND,
        envVars: pulumi.all({ [JOB_ENV.workerUrl]: args.workerUrl, [JOB_ENV.serverToken]: args.serverToken, ...metricsEnv, ...notifyEnv }),
      },
      afterAgent,
    );
    const cleanup = new RenderRotationCleanup(
      `${name}-agent-rotation`,
      { serviceId: r.appServiceId, keys: [previousKey(JOB_ENV.agentToken)], generation: args.agentToken },
      { parent: this, dependsOn: [backup, drill] },
    );
    // A new stack takes its first backup, then its first drill (which restores it), within `up`: the
    // alarms, created after these, start on a stack that has both (docs/design.md, Monitoring).
    const firstBackup = new RenderCronJobRun(`${name}-first-backup`, { serviceId: backup.id, purpose: "the first backup" }, { parent: this, dependsOn: [cleanup] });
    const firstDrill = new RenderCronJobRun(`${name}-first-restore-drill`, { serviceId: drill.id, purpose: "the first restore drill" }, { parent: this, dependsOn: [firstBackup] });
    this.firstRuns = [firstBackup, firstDrill];
    this.backupJobId = backup.id;
    this.drillJobId = drill.id;
    this.registerOutputs({ backupJobId: this.backupJobId, drillJobId: this.drillJobId });
  }
}
