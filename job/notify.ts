import { setTimeout as sleep } from "node:timers/promises";
import type { PutMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import { METRICS } from "../core/index.ts";
import { send } from "./http.ts";
import { redact } from "./log.ts";

/**
 * Where the job reports a finished backup (docs/design.md, "Monitoring"): CloudWatch metrics when a namespace is
 * configured, and a webhook on success and failure. Both are best effort: a monitoring outage never turns a
 * good backup into a failed one (the failure is logged instead).
 */

/** Metric names: core's monitoring contract, which the alarms in infra watch too. */
export { METRICS };

export interface MetricDatum {
  name: string;
  value: number;
  unit: "Count" | "Bytes" | "Seconds";
}

/** Anything that accepts metrics; injectable so tests record what would be sent. */
export interface MetricsSink {
  put(data: MetricDatum[]): Promise<void>;
}

/** The part of the AWS client the sink uses (a recorded fake in tests). */
export interface CloudWatchLike {
  send(command: PutMetricDataCommand): Promise<unknown>;
}

/** CloudWatch PutMetricData in `namespace`; region and credentials come from the AWS SDK's usual chain. */
export function cloudWatchSink(options: {
  namespace: string;
  region?: string;
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  client?: CloudWatchLike;
}): MetricsSink {
  // The SDK is loaded on first use: it costs ~0.5 s and ~25 MiB at startup, and most runs send no metrics.
  let client: Promise<CloudWatchLike> | undefined;
  const getClient = () =>
    (client ??= options.client
      ? Promise.resolve(options.client)
      : import("@aws-sdk/client-cloudwatch").then(
          ({ CloudWatchClient }) =>
            new CloudWatchClient({
              ...(options.region ? { region: options.region } : {}),
              ...(options.endpoint ? { endpoint: options.endpoint } : {}),
              ...(options.credentials ? { credentials: options.credentials } : {}),
              maxAttempts: 3,
            }),
        ));
  return {
    async put(data) {
      const now = new Date();
      const { PutMetricDataCommand } = await import("@aws-sdk/client-cloudwatch");
      await (await getClient()).send(
        new PutMetricDataCommand({
          Namespace: options.namespace,
          MetricData: data.map((d) => ({ MetricName: d.name, Value: d.value, Unit: d.unit, Timestamp: now })),
        }),
      );
    },
  };
}

/** The sink configured by `CLOUDWATCH_NAMESPACE` (+ `AWS_REGION`, AWS keys, `CLOUDWATCH_ENDPOINT`), or none. */
export function metricsFromEnv(env: Record<string, string | undefined>): MetricsSink | undefined {
  const namespace = env.CLOUDWATCH_NAMESPACE;
  if (!namespace) return undefined;
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  const endpoint = env.CLOUDWATCH_ENDPOINT;
  // Keys given in this environment are used as such; otherwise the SDK's default chain (roles, profiles).
  const credentials =
    env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) }
      : undefined;
  return cloudWatchSink({ namespace, ...(region ? { region } : {}), ...(endpoint ? { endpoint } : {}), ...(credentials ? { credentials } : {}) });
}

/** The metrics of one backup run. */
export function backupMetrics(outcome: {
  ok: boolean;
  durationMs: number;
  uncompressedBytes?: number;
  storedBytes?: number;
  drillAgeHours?: number;
  replica?: { lag: number; oldestMissingAgeHours: number };
}): MetricDatum[] {
  // Both counters every run (one of them 0), so "no success for 7 hours" and "any failure" alarms see data.
  const data: MetricDatum[] = [
    { name: METRICS.backupSucceeded, value: outcome.ok ? 1 : 0, unit: "Count" },
    { name: METRICS.backupFailed, value: outcome.ok ? 0 : 1, unit: "Count" },
    { name: METRICS.backupDurationSeconds, value: Math.round(outcome.durationMs) / 1000, unit: "Seconds" },
  ];
  if (outcome.ok) {
    data.push({ name: METRICS.backupBytes, value: outcome.uncompressedBytes ?? 0, unit: "Bytes" });
    data.push({ name: METRICS.storedBytes, value: outcome.storedBytes ?? 0, unit: "Bytes" });
  }
  // The drill runs monthly but alarms look back 7 days at most: every backup reports the drill's age too.
  if (outcome.drillAgeHours !== undefined) data.push({ name: METRICS.restoreDrillAgeHours, value: Math.round(outcome.drillAgeHours * 100) / 100, unit: "Count" });
  // The replica's lag, as the Worker reported it after this run (with a replica bucket only).
  if (outcome.replica) {
    data.push({ name: METRICS.replicaLagSets, value: outcome.replica.lag, unit: "Count" });
    data.push({ name: METRICS.replicaLagHours, value: outcome.replica.oldestMissingAgeHours, unit: "Count" });
  }
  return data;
}

/** The webhook body: the same shape for success and failure. */
export interface WebhookPayload {
  event: "backup.succeeded" | "backup.failed";
  kind: string;
  id?: string;
  host?: string;
  durationSeconds: number;
  storedBytes?: number;
  error?: { kind: string; message: string };
  manifestKey?: string;
}

/** POSTs JSON to `url` (a few attempts, 10 s each); throws with the status when it keeps failing. */
export async function postWebhook(url: string, payload: WebhookPayload, options: { attempts?: number; timeoutMs?: number } = {}): Promise<void> {
  const attempts = options.attempts ?? 3;
  let last = "";
  for (let i = 1; i <= attempts; i++) {
    try {
      const res = await send(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: redact(JSON.stringify(payload)),
        signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      });
      res.discard();
      if (res.ok) return;
      last = `${res.status}`;
      if (res.status < 500 && res.status !== 429) break;
    } catch (e) {
      last = (e as Error).message;
    }
    if (i < attempts) await sleep(500 * i);
  }
  throw new Error(`notify webhook '${new URL(url).host}': failed (${redact(last)})`);
}
