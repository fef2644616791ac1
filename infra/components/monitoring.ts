import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { METRICS, RESTORE_DRILL_ALARM_HOURS } from "../../core/index.ts";
import { physicalName } from "../naming.ts";

export interface MonitoringArgs {
  stack: string;
  namespace: string;
  region: string;
  alarmEmails: string[];
  /** With a replica bucket: the lag alarm's limit (config `replicaMaxLagHours`); no replica, no lag alarm. */
  replicaMaxLagHours?: number;
  /**
   * Resources the alarms are created after (the first backup and drill runs, known only once the schedule
   * that needs this component's metrics key exists): a new stack's alarms start on data, not on silence.
   */
  alarmsAfter?: Promise<pulumi.Resource[]>;
}

const HOUR = 3600;
const DAY = 86_400;

/** The alarms of docs/design.md, "Monitoring", as data (tested without Pulumi); the replica's with a replica. */
export function alarmSpecs(namespace: string, replicaMaxLagHours?: number): (aws.cloudwatch.MetricAlarmArgs & { role: string })[] {
  const replica: (aws.cloudwatch.MetricAlarmArgs & { role: string })[] =
    replicaMaxLagHours === undefined
      ? []
      : [
          {
            role: "replica-lag",
            alarmDescription: `A complete backup has been missing from the replica bucket for more than ${replicaMaxLagHours} hours.`,
            namespace,
            metricName: METRICS.replicaLagHours,
            // Reported by each backup (every 6 hours): the period holds one report, the latest decides.
            statistic: "Maximum",
            period: 6 * HOUR,
            evaluationPeriods: 1,
            threshold: replicaMaxLagHours,
            comparisonOperator: "GreaterThanThreshold",
            // No report means no backup ran, which the no-successful-backup alarm reports.
            treatMissingData: "notBreaching",
          },
        ];
  return [
    {
      role: "no-successful-backup",
      alarmDescription: "No successful backup for 7 hours (the cron job runs every 6).",
      namespace,
      metricName: METRICS.backupSucceeded,
      statistic: "Sum",
      period: HOUR,
      evaluationPeriods: 7,
      datapointsToAlarm: 7,
      threshold: 1,
      comparisonOperator: "LessThanThreshold",
      // Silence is the failure this alarm exists for.
      treatMissingData: "breaching",
    },
    {
      role: "backup-failed",
      alarmDescription: "A backup failed.",
      namespace,
      metricName: METRICS.backupFailed,
      statistic: "Sum",
      period: 300,
      evaluationPeriods: 1,
      threshold: 0,
      comparisonOperator: "GreaterThanThreshold",
      treatMissingData: "notBreaching",
    },
    {
      role: "restore-drill-stale",
      // Alarms look back at most 7 days, so "no drill for 35 days" is a threshold on the drill's age.
      alarmDescription: "No successful restore drill for 35 days.",
      namespace,
      metricName: METRICS.restoreDrillAgeHours,
      // Minimum: the freshest age reported that day. A backup that ran before the day's drill reports the
      // older age (or, on a new stack, "never drilled"); the drill itself then reports 0 and wins.
      statistic: "Minimum",
      period: DAY,
      evaluationPeriods: 1,
      threshold: RESTORE_DRILL_ALARM_HOURS,
      comparisonOperator: "GreaterThanThreshold",
      // Missing data means no backup ran, which the first alarm reports.
      treatMissingData: "notBreaching",
    },
    {
      role: "restore-drill-failed",
      alarmDescription: "A restore drill failed: the newest backup did not restore and check (see backups/drills/).",
      namespace,
      metricName: METRICS.restoreDrillFailed,
      statistic: "Maximum",
      // A day: the drill runs monthly, so the alarm stays up long enough to be seen.
      period: DAY,
      evaluationPeriods: 1,
      threshold: 0,
      comparisonOperator: "GreaterThanThreshold",
      treatMissingData: "notBreaching",
    },
    ...replica,
  ];
}

/**
 * CloudWatch monitoring: an SNS topic with email subscriptions, the alarms, a dashboard, and an IAM user
 * whose only right is `cloudwatch:PutMetricData` in the namespace (its key goes to the job, as a secret).
 */
export class Monitoring extends pulumi.ComponentResource {
  readonly topicArn: pulumi.Output<string>;
  readonly alarmArns: pulumi.Output<Record<string, string>>;
  readonly dashboardUrl: pulumi.Output<string>;
  readonly accessKeyId: pulumi.Output<string>;
  readonly secretAccessKey: pulumi.Output<string>;

  constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super("r2-sqlite-backup:monitoring:Monitoring", name, {}, opts);
    const provider = new aws.Provider(`${name}-aws`, { region: args.region as aws.Region }, { parent: this });
    const child = { parent: this, provider };

    const topic = new aws.sns.Topic(`${name}-alarms`, { name: physicalName(args.stack, "alarms") }, child);
    for (const email of args.alarmEmails) {
      new aws.sns.TopicSubscription(`${name}-email-${email}`, { topic: topic.arn, protocol: "email", endpoint: email }, child);
    }

    const user = new aws.iam.User(`${name}-metrics-user`, { name: physicalName(args.stack, "metrics") }, child);
    new aws.iam.UserPolicy(
      `${name}-metrics-policy`,
      {
        user: user.name,
        policy: JSON.stringify({
          Version: "2012-10-17",
          Statement: [
            {
              Effect: "Allow",
              Action: ["cloudwatch:PutMetricData"],
              // PutMetricData has no resource-level ARNs: the namespace condition is the only scope.
              Resource: "*",
              Condition: { StringEquals: { "cloudwatch:namespace": args.namespace } },
            },
          ],
        }),
      },
      child,
    );
    const key = new aws.iam.AccessKey(`${name}-metrics-key`, { user: user.name }, child);
    this.accessKeyId = key.id;
    this.secretAccessKey = pulumi.secret(key.secret);

    const arns: Record<string, pulumi.Output<string>> = {};
    for (const { role, ...spec } of alarmSpecs(args.namespace, args.replicaMaxLagHours)) {
      const alarm = new aws.cloudwatch.MetricAlarm(
        `${name}-${role}`,
        { ...spec, name: physicalName(args.stack, role), alarmActions: [topic.arn], okActions: [topic.arn] },
        { ...child, ...(args.alarmsAfter ? { dependsOn: args.alarmsAfter } : {}) },
      );
      arns[role] = alarm.arn;
    }
    this.alarmArns = pulumi.all(arns);
    this.topicArn = topic.arn;

    const dashboardName = physicalName(args.stack, "backups");
    const metric = (m: string, stat: string) => [args.namespace, m, { stat, period: HOUR }];
    const widget = (title: string, metrics: unknown[], x: number, y: number) => ({
      type: "metric",
      x,
      y,
      width: 12,
      height: 6,
      properties: { title, region: args.region, view: "timeSeries", metrics },
    });
    new aws.cloudwatch.Dashboard(
      `${name}-dashboard`,
      {
        dashboardName,
        dashboardBody: pulumi.jsonStringify({
          widgets: [
            widget("Backups", [metric(METRICS.backupSucceeded, "Sum"), metric(METRICS.backupFailed, "Sum")], 0, 0),
            widget("Backup duration (s)", [metric(METRICS.backupDurationSeconds, "Maximum")], 12, 0),
            widget("Bytes", [metric(METRICS.backupBytes, "Sum"), metric(METRICS.storedBytes, "Maximum")], 0, 6),
            widget("Restore drill age (h), drill failures", [metric(METRICS.restoreDrillAgeHours, "Minimum"), metric(METRICS.restoreDrillFailed, "Maximum")], 12, 6),
            ...(args.replicaMaxLagHours === undefined
              ? []
              : [widget("Replica lag (sets, hours)", [metric(METRICS.replicaLagSets, "Maximum"), metric(METRICS.replicaLagHours, "Maximum")], 0, 15)]),
            { type: "alarm", x: 0, y: 12, width: 24, height: 3, properties: { title: "Alarms", alarms: Object.values(arns) } },
          ],
        }),
      },
      child,
    );
    this.dashboardUrl = pulumi.output(`https://${args.region}.console.aws.amazon.com/cloudwatch/home?region=${args.region}#dashboards/dashboard/${dashboardName}`);
    this.registerOutputs({ topicArn: this.topicArn, alarmArns: this.alarmArns, dashboardUrl: this.dashboardUrl });
  }
}
