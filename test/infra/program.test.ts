import * as pulumi from "@pulumi/pulumi";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { BINDINGS, DEFAULT_RETENTION, JOB_ENV, lifecycleRules, lockRules } from "../../core/index.ts";
import { isSecretInput, planStack, planToJson, unwrapSecrets, type Plan, type PlannedResource } from "../../infra/plan.ts";
import { mergedStackConfig } from "../../infra/stack-files.ts";
import { bundleWorker, COMPATIBILITY_DATE, COMPATIBILITY_FLAGS, WORKER_MAIN_MODULE } from "../../worker/bundle.ts";

const P = "r2-sqlite-backup";
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PKG_VERSION = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

const T = {
  bucket: "cloudflare:index/r2Bucket:R2Bucket",
  lifecycle: "cloudflare:index/r2BucketLifecycle:R2BucketLifecycle",
  lock: "cloudflare:index/r2BucketLock:R2BucketLock",
  script: "cloudflare:index/workersScript:WorkersScript",
  subdomain: "cloudflare:index/workersScriptSubdomain:WorkersScriptSubdomain",
  route: "cloudflare:index/workersRoute:WorkersRoute",
  domain: "cloudflare:index/workersCustomDomain:WorkersCustomDomain",
  cron: "cloudflare:index/workersCronTrigger:WorkersCronTrigger",
  password: "random:index/randomPassword:RandomPassword",
  cronJob: "pulumi-nodejs:dynamic/render:CronJob",
  envVars: "pulumi-nodejs:dynamic/render:ServiceEnvVars",
  rotation: "pulumi-nodejs:dynamic/render:RotationCleanup",
  run: "pulumi-nodejs:dynamic/render:CronJobRun",
  policy: "aws:iam/userPolicy:UserPolicy",
  alarm: "aws:cloudwatch/metricAlarm:MetricAlarm",
  dashboard: "aws:cloudwatch/dashboard:Dashboard",
} as const;

const of = (plan: Plan, type: string): PlannedResource[] => plan.resources.filter((r) => r.type === type);
const one = (plan: Plan, type: string, name?: string): PlannedResource => {
  const found = of(plan, type).filter((r) => name === undefined || r.name === name);
  expect(found, `${type} ${name ?? ""}`).toHaveLength(1);
  return found[0] as PlannedResource;
};
const input = (r: PlannedResource, key: string): any => unwrapSecrets(r.inputs[key]);

/** A production stack's config as the CLI would pass it, with its tokens set as secrets. */
const PROD_VALUES: Record<string, string> = {
  ...mergedStackConfig("prod-does-not-exist").values,
  [`${P}:cloudflareAccountId`]: "0123456789abcdef0123456789abcdef",
  [`${P}:zoneId`]: "fedcba9876543210fedcba9876543210",
  [`${P}:hostname`]: "backups.example.com",
  [`${P}:renderEnabled`]: "false",
  [`${P}:serverToken`]: "prod-server-token-VALUE",
  [`${P}:adminToken`]: "prod-admin-token-VALUE",
  [`${P}:alertWebhookUrl`]: "https://hooks.example.com/prod-webhook-SECRET",
};
const PROD_SECRETS = [`${P}:serverToken`, `${P}:adminToken`, `${P}:alertWebhookUrl`];

let dev: Plan;
let preview: Plan;
let prod: Plan;
/** prod, deployed as versions with a 10 % rollout beside a stable version. */
let versioned: Plan;
let bundleCode: string;

beforeAll(async () => {
  bundleCode = (await bundleWorker()).code;
  dev = await planStack("dev");
  preview = await planStack("pr-42");
  prod = await planStack("prod", { config: { values: PROD_VALUES, secretKeys: PROD_SECRETS } });
  versioned = await planStack("prod", {
    config: {
      values: { ...PROD_VALUES, [`${P}:workerVersions`]: "true", [`${P}:workerStableVersionId`]: "ver-stable", [`${P}:workerRolloutPercent`]: "10" },
      secretKeys: PROD_SECRETS,
    },
  });
}, 60_000);

describe("storage", () => {
  it("gives every bucket the lifecycle and lock rules of the default policy, in the provider's field names and seconds", () => {
    // Written out, not computed from core/: the program is checked against the provider's API, not itself.
    const DAY = 86_400;
    const expire = (id: string, prefix: string, days: number) => ({
      id,
      enabled: true,
      conditions: { prefix },
      deleteObjectsTransition: { condition: { type: "Age", maxAge: days * DAY } },
    });
    const lifecycle = [
      expire("expire-full", "backups/full/", 30),
      expire("expire-incremental", "backups/incremental/", 30),
      {
        id: "daily-to-infrequent-access",
        enabled: true,
        conditions: { prefix: "backups/daily/" },
        storageClassTransitions: [{ storageClass: "InfrequentAccess", condition: { type: "Age", maxAge: 90 * DAY } }],
      },
      expire("expire-daily", "backups/daily/", 365),
      expire("expire-drills", "backups/drills/", 365),
      { id: "abort-incomplete-multipart", enabled: true, conditions: { prefix: "" }, abortMultipartUploadsTransition: { condition: { type: "Age", maxAge: 1 * DAY } } },
      expire("expire-stale-claims", ".claims/", 1),
    ];
    const lock = (id: string, prefix: string) => ({ id, enabled: true, prefix, condition: { type: "Age", maxAgeSeconds: 7 * DAY } });
    const locks = [
      lock("lock-full", "backups/full/"),
      lock("lock-incremental", "backups/incremental/"),
      lock("lock-daily", "backups/daily/"),
      lock("lock-drills", "backups/drills/"),
    ];
    for (const plan of [dev, prod]) {
      for (const r of of(plan, T.lifecycle)) expect(input(r, "rules")).toEqual(lifecycle);
      for (const r of of(plan, T.lock)) expect(input(r, "rules")).toEqual(locks);
    }
    expect(lifecycleRules(DEFAULT_RETENTION).length).toBe(lifecycle.length);
    expect(lockRules(DEFAULT_RETENTION).length).toBe(locks.length);
    expect(of(dev, T.lifecycle)).toHaveLength(2);
    expect(of(dev, T.lock)).toHaveLength(2);
    expect(input(one(dev, T.lock, "storage-primary-lock"), "rules")[0].condition.maxAgeSeconds).toBe(7 * 86_400);
  });

  it("puts the bucket where the config says and the replica in another location, rules targeting each", () => {
    const primary = one(dev, T.bucket, "storage-primary");
    const replica = one(dev, T.bucket, "storage-replica");
    expect(primary.inputs).toMatchObject({ name: "r2-sqlite-backup-dev-backups", location: "weur", jurisdiction: "default", accountId: "0123456789abcdef0123456789abcdef" });
    expect(replica.inputs).toMatchObject({ name: "r2-sqlite-backup-dev-backups-replica", location: "enam" });
    expect(input(one(dev, T.lifecycle, "storage-replica-lifecycle"), "bucketName")).toBe("r2-sqlite-backup-dev-backups-replica");
    expect(input(one(dev, T.lock, "storage-primary-lock"), "bucketName")).toBe("r2-sqlite-backup-dev-backups");
  });

  it("protects production buckets and their locks and retains them on delete: destroy never deletes backups", () => {
    for (const plan of [dev, prod]) {
      for (const r of [...of(plan, T.bucket), ...of(plan, T.lock)]) expect(r.options, `${plan.stack} ${r.name}`).toMatchObject({ protect: true, retainOnDelete: true });
    }
    expect(of(prod, T.bucket)).toHaveLength(1);
  });
});

describe("worker", () => {
  it("deploys the bundle built from worker/ as an ES module with the compatibility settings it is tested with", () => {
    const script = one(dev, T.script);
    expect(script.inputs.content).toBe(bundleCode);
    expect(script.inputs).toMatchObject({
      mainModule: WORKER_MAIN_MODULE,
      compatibilityDate: COMPATIBILITY_DATE,
      compatibilityFlags: COMPATIBILITY_FLAGS,
      scriptName: "r2-sqlite-backup-dev-api",
    });
  });

  it("binds the buckets (r2_bucket), the tokens (secret_text) and the freshness limit (plain_text)", () => {
    const bindings = input(one(prod, T.script), "bindings");
    expect(bindings).toEqual([
      { type: "r2_bucket", name: BINDINGS.bucket, bucketName: "r2-sqlite-backup-prod-backups" },
      { type: "secret_text", name: BINDINGS.serverToken, text: "prod-server-token-VALUE" },
      { type: "secret_text", name: BINDINGS.adminToken, text: "prod-admin-token-VALUE" },
      { type: "plain_text", name: BINDINGS.maxBackupAgeHours, text: "7" },
      { type: "secret_text", name: BINDINGS.alertWebhookUrl, text: "https://hooks.example.com/prod-webhook-SECRET" },
    ]);
    expect(input(one(dev, T.script), "bindings").map((b: { name: string }) => b.name)).toContain(BINDINGS.replicaBucket);
  });

  it("during a rotation binds the previous job token as a secret (SERVER_BYPASS_TOKEN_PREVIOUS), and only then", async () => {
    const rotating = await planStack("prod", {
      config: { values: { ...PROD_VALUES, [`${P}:serverTokenPrevious`]: "prod-server-token-OLD" }, secretKeys: [...PROD_SECRETS, `${P}:serverTokenPrevious`] },
    });
    const script = one(rotating, T.script);
    expect(input(script, "bindings")).toContainEqual({ type: "secret_text", name: BINDINGS.serverTokenPrevious, text: "prod-server-token-OLD" });
    expect(isSecretInput(script.inputs.bindings)).toBe(true);
    expect(JSON.stringify(planToJson(rotating))).not.toContain("prod-server-token-OLD");
    expect(input(one(prod, T.script), "bindings").map((b: { name: string }) => b.name)).not.toContain(BINDINGS.serverTokenPrevious);
  });

  it("passes a jurisdiction to every R2 binding (an EU bucket is not found without it)", async () => {
    const { workerBindings } = await import("../../infra/components/api.ts");
    const secret = pulumi.secret("t");
    const base = {
      accountId: "a",
      stack: "eu",
      preview: false,
      bundle: { code: "", sha256: "" },
      bucketName: "b",
      replicaBucketName: "r",
      serverToken: secret,
      adminToken: secret,
      maxBackupAgeHours: 7,
      freshnessCheckSchedule: "*/30 * * * *",
    };
    const r2 = (jurisdiction: string) => workerBindings({ ...base, jurisdiction }).filter((b) => b.type === "r2_bucket");
    expect(r2("eu").map((b) => [b.name, b.jurisdiction])).toEqual([
      [BINDINGS.bucket, "eu"],
      [BINDINGS.replicaBucket, "eu"],
    ]);
    expect(r2("default").every((b) => b.jurisdiction === undefined)).toBe(true);
  });

  it("serves <hostname> as a Workers custom domain on the zone (DNS and certificate by Cloudflare), keeps workers.dev off, and schedules the freshness check", () => {
    expect(one(prod, T.domain).inputs).toEqual({
      accountId: "0123456789abcdef0123456789abcdef",
      zoneId: "fedcba9876543210fedcba9876543210",
      hostname: "backups.example.com",
      service: "r2-sqlite-backup-prod-api",
    });
    expect(of(prod, T.route)).toHaveLength(0);
    expect(one(prod, T.subdomain).inputs).toMatchObject({ enabled: false, scriptName: "r2-sqlite-backup-prod-api" });
    expect(one(prod, T.cron).inputs).toMatchObject({ scriptName: "r2-sqlite-backup-prod-api", schedules: [{ cron: "*/30 * * * *" }] });
    expect(prod.outputs.workerUrl?.value).toBe("https://backups.example.com");
  });

  it("uses configured tokens as they are, and generates only the missing ones", () => {
    // prod sets both Worker tokens and has no Render jobs, so no agent token either.
    expect(of(prod, T.password).map((r) => r.name)).toEqual([]);
    expect(of(preview, T.password).map((r) => r.name)).toEqual(["tokens-server", "tokens-admin"]);
    expect(of(dev, T.password).map((r) => r.name)).toEqual(["tokens-server", "tokens-admin", "tokens-agent"]);
  });
});

describe("failover to the replica bucket (config failover)", () => {
  const plan = (failover?: string) =>
    planStack("prod", {
      config: {
        values: { ...PROD_VALUES, [`${P}:bucketLocation`]: "weur", [`${P}:replicaLocation`]: "enam", ...(failover ? { [`${P}:failover`]: failover } : {}) },
        secretKeys: PROD_SECRETS,
      },
    });
  const r2 = (p: Plan) =>
    (input(one(p, T.script), "bindings") as { type: string; name: string; bucketName?: string; text?: string }[])
      .filter((b) => b.type === "r2_bucket")
      .map((b) => [b.name, b.bucketName]);
  const primary = "r2-sqlite-backup-prod-backups";
  const replica = "r2-sqlite-backup-prod-backups-replica";

  it("off (the default) serves the primary and fills the replica; replica swaps them; replica-only binds the replica alone", async () => {
    expect(r2(await plan())).toEqual([
      [BINDINGS.bucket, primary],
      [BINDINGS.replicaBucket, replica],
    ]);
    expect(r2(await plan("replica"))).toEqual([
      [BINDINGS.bucket, replica],
      [BINDINGS.replicaBucket, primary],
    ]);
    expect(r2(await plan("replica-only"))).toEqual([[BINDINGS.bucket, replica]]);
  });

  it("keeps both buckets, their rules and locks in every mode: failing over deletes nothing", async () => {
    for (const mode of ["off", "replica", "replica-only"]) {
      const p = await plan(mode);
      expect(
        of(p, T.bucket)
          .map((b) => input(b, "name"))
          .sort(),
        mode,
      ).toEqual([primary, replica]);
      expect(of(p, T.lock), mode).toHaveLength(2);
    }
  });

  it("binds the lag limit with the replica, and refuses a failover without a replica or with an unknown mode", async () => {
    const lag = (await plan()).resources.find((r) => r.type === T.script)!;
    expect((input(lag, "bindings") as { name: string; text?: string }[]).find((b) => b.name === BINDINGS.replicaMaxLagHours)?.text).toBe("12");
    await expect(planStack("prod", { config: { values: { ...PROD_VALUES, [`${P}:failover`]: "replica-only" }, secretKeys: PROD_SECRETS } })).rejects.toThrow(
      /failover 'replica-only' needs a replica bucket/,
    );
    await expect(plan("sideways")).rejects.toThrow(/failover must be one of off, replica, replica-only/);
  });
});

describe("versioned Worker deployments (workerVersions)", () => {
  it("upload a WorkerVersion of the same bundle and bindings, and a WorkersDeployment that splits traffic with the stable version", () => {
    expect(of(versioned, T.script)).toHaveLength(0);
    const worker = one(versioned, "cloudflare:index/worker:Worker");
    expect(worker.inputs).toMatchObject({ name: "r2-sqlite-backup-prod-api", subdomain: { enabled: false, previewsEnabled: false } });
    const version = one(versioned, "cloudflare:index/workerVersion:WorkerVersion");
    expect(input(version, "workerId")).toBe("api-worker-id");
    expect(version.inputs).toMatchObject({ mainModule: WORKER_MAIN_MODULE, compatibilityDate: COMPATIBILITY_DATE, compatibilityFlags: COMPATIBILITY_FLAGS });
    expect(Buffer.from(input(version, "modules")[0].contentBase64, "base64").toString()).toBe(bundleCode);
    expect(input(version, "bindings")).toEqual(input(one(prod, T.script), "bindings"));
    expect(isSecretInput(version.inputs.bindings)).toBe(true);
    const deployment = one(versioned, "cloudflare:index/workersDeployment:WorkersDeployment");
    expect(deployment.inputs).toMatchObject({ scriptName: "r2-sqlite-backup-prod-api", strategy: "percentage" });
    expect(input(deployment, "versions")).toEqual([
      { versionId: "api-version-id", percentage: 10 },
      { versionId: "ver-stable", percentage: 90 },
    ]);
    // The domain and the cron trigger follow the deployment, and the version id is an output (for the next rollback).
    expect(one(versioned, T.domain).options.dependsOn).toEqual(["api-worker", "api-deployment"]);
    expect(versioned.outputs.workerVersionId?.value).toBe("api-version-id");
    expect(prod.outputs.workerVersionId?.value).toBeNull();
  });

  it("roll back at 0 % (all traffic to the stable version), deploy fully at 100 %, and refuse a split without a stable version", async () => {
    const { deploymentVersions } = await import("../../infra/components/api.ts");
    expect(deploymentVersions("new", { stableVersionId: "old", rolloutPercent: 0 })).toEqual([{ versionId: "old", percentage: 100 }]);
    expect(deploymentVersions("new", { stableVersionId: "old", rolloutPercent: 100 })).toEqual([{ versionId: "new", percentage: 100 }]);
    expect(deploymentVersions("new", { rolloutPercent: 100 })).toEqual([{ versionId: "new", percentage: 100 }]);
    const values = { ...PROD_VALUES, [`${P}:workerVersions`]: "true", [`${P}:workerRolloutPercent`]: "10" };
    await expect(planStack("prod", { config: { values, secretKeys: PROD_SECRETS } })).rejects.toThrow(/workerRolloutPercent 10 needs workerStableVersionId/);
    await expect(planStack("prod", { config: { values: { ...PROD_VALUES, [`${P}:workerStableVersionId`]: "x" }, secretKeys: PROD_SECRETS } })).rejects.toThrow(
      /need workerVersions: true/,
    );
  });
});

describe("secrets", () => {
  it("reach every resource as secret inputs and never appear in the plan's output", () => {
    expect(isSecretInput(one(prod, T.script).inputs.bindings)).toBe(true);
    for (const r of [...of(dev, T.cronJob), ...of(dev, T.envVars)]) expect(isSecretInput(r.inputs.envVars), r.name).toBe(true);
    const text = JSON.stringify(planToJson(prod));
    for (const secret of ["prod-server-token-VALUE", "prod-admin-token-VALUE", "prod-webhook-SECRET"]) expect(text).not.toContain(secret);
    expect(text).toContain('"text":"[secret]"');
    for (const key of ["serverToken", "adminToken"]) {
      expect(prod.outputs[key]?.secret, key).toBe(true);
      expect((planToJson(prod) as { outputs: Record<string, unknown> }).outputs[key]).toBe("[secret]");
    }
  });

  it("are secret as outputs of the components too (pulumi.isSecret)", async () => {
    const { Tokens } = await import("../../infra/components/tokens.ts");
    const { Api } = await import("../../infra/components/api.ts");
    const { Monitoring } = await import("../../infra/components/monitoring.ts");
    const { Schedule } = await import("../../infra/components/schedule.ts");
    await pulumi.runtime.setMocks(
      {
        newResource: (a) => ({
          id: `${a.name}-id`,
          state: { ...a.inputs, ...(a.type.startsWith("aws:iam/accessKey") ? { secret: "s" } : {}), ...(a.type === T.password ? { result: "r" } : {}) },
        }),
        call: (a) => a.inputs,
      },
      P,
      "unit",
      false,
    );
    const tokens = new Tokens("t", { adminToken: pulumi.secret("configured"), withAgentToken: true });
    const api = new Api("a", {
      accountId: "0".repeat(32),
      stack: "unit",
      preview: false,
      bundle: { code: "export default {}", sha256: "x" },
      bucketName: "b",
      jurisdiction: "default",
      serverToken: tokens.serverToken,
      adminToken: tokens.adminToken,
      maxBackupAgeHours: 7,
      freshnessCheckSchedule: "*/30 * * * *",
      zoneId: "z",
      hostname: "h.example.com",
    });
    const monitoring = new Monitoring("m", { stack: "unit", namespace: "NS", region: "us-east-1", alarmEmails: [] });
    const schedule = new Schedule("s", {
      stack: "unit",
      render: {
        ownerId: "tea-1",
        region: "oregon",
        plan: "starter",
        repo: "https://github.com/x/y",
        branch: "main",
        package: "r2-sqlite-backup@0.1.0",
        appServiceId: "srv-1",
        agentUrl: "http://app:8788",
        backupSchedule: "0 */6 * * *",
        drillSchedule: "0 4 1 * *",
      },
      workerUrl: api.url,
      serverToken: tokens.serverToken,
      agentToken: tokens.agentToken!,
      webhookUrl: pulumi.secret("https://hooks.example.com/x"),
      metrics: { namespace: "NS", region: "us-east-1", accessKeyId: monitoring.accessKeyId, secretAccessKey: monitoring.secretAccessKey },
    });
    for (const [what, output] of [
      ["serverToken (generated)", tokens.serverToken],
      ["adminToken (configured)", tokens.adminToken],
      ["agentToken", tokens.agentToken!],
      ["worker bindings", api.script!.bindings],
      ["metrics secret key", monitoring.secretAccessKey],
    ] as const) {
      expect(await pulumi.isSecret(output as pulumi.Output<unknown>), what).toBe(true);
    }
    expect(await pulumi.isSecret(monitoring.accessKeyId)).toBe(false);
    const jobs = [...((schedule as unknown as { __childResources: Set<pulumi.Resource> }).__childResources ?? [])];
    expect(jobs).toHaveLength(6);
    for (const job of jobs.filter((j) => "envVars" in j)) {
      const envVars = (job as unknown as { envVars: pulumi.Output<Record<string, string>> }).envVars;
      expect(await pulumi.isSecret(envVars)).toBe(true);
      const keys = await new Promise<string[]>((resolve) => envVars.apply((v) => resolve(Object.keys(v))));
      // The job's completion webhook goes wherever the Worker's token goes (the drill and the agent).
      expect(keys.includes(JOB_ENV.webhookUrl)).toBe(keys.includes(JOB_ENV.serverToken));
    }
  });
});

describe("render and monitoring", () => {
  it("creates the backup job (every 6 hours, runs trigger), the monthly drill (runs verify) and the agent's variables", () => {
    const backup = one(dev, T.cronJob, "schedule-backup");
    expect(backup.inputs).toMatchObject({
      name: "r2-sqlite-backup-dev-backup",
      schedule: "0 */6 * * *",
      ownerId: "tea-d0example0000000000",
      region: "oregon",
      runtime: "node",
      buildCommand: `npm install --prefix .r2backup --no-save --no-audit --no-fund r2-sqlite-backup@${PKG_VERSION}`,
      startCommand: ".r2backup/node_modules/.bin/r2backup trigger --agent-url http://example-app:8788",
    });
    expect(Object.keys(input(backup, "envVars"))).toEqual([JOB_ENV.agentToken]);
    expect(backup.options).toMatchObject({ deleteBeforeReplace: true, additionalSecretOutputs: ["envVars"] });
    const drill = one(dev, T.cronJob, "schedule-restore-drill");
    expect(drill.inputs).toMatchObject({ name: "r2-sqlite-backup-dev-restore-drill", schedule: "0 4 1 * *", startCommand: ".r2backup/node_modules/.bin/r2backup verify" });
    expect(input(drill, "envVars")).toMatchObject({ [JOB_ENV.workerUrl]: "https://backups-dev.example.com", [JOB_ENV.metricsNamespace]: "R2SqliteBackup" });
    const agent = one(dev, T.envVars);
    expect(agent.inputs.serviceId).toBe("srv-d0example0000000000");
    expect(Object.keys(input(agent, "envVars")).sort()).toEqual(
      [JOB_ENV.awsAccessKeyId, JOB_ENV.awsRegion, JOB_ENV.awsSecretAccessKey, JOB_ENV.agentToken, JOB_ENV.metricsNamespace, JOB_ENV.workerUrl, JOB_ENV.serverToken].sort(),
    );
    expect(typeof backup.inputs.__provider).toBe("string");
    expect(dev.outputs.backupCronJobId?.value).toBe("crn-mock-schedule-backup");
  });

  it("orders a rotation: the app service's variables first, then the cron jobs, then the old agent token goes", () => {
    const agent = one(dev, T.envVars);
    expect(agent.inputs.keepPrevious).toEqual([JOB_ENV.agentToken]);
    // A rotated SERVER_BYPASS_TOKEN reaches the app only once the Worker accepts it.
    expect(agent.options.dependsOn).toEqual(["api-worker", "api-workers-dev"]);
    for (const job of of(dev, T.cronJob)) expect(job.options.dependsOn, job.name).toEqual(["schedule-agent-env"]);
    const cleanup = one(dev, T.rotation);
    expect(cleanup.inputs).toMatchObject({ serviceId: "srv-d0example0000000000", keys: [`${JOB_ENV.agentToken}_PREVIOUS`] });
    expect(isSecretInput(cleanup.inputs.generation)).toBe(true);
    expect(cleanup.options.dependsOn).toEqual(["schedule-backup", "schedule-restore-drill"]);
  });

  it("runs the first backup, then the first drill, within `up`, and creates the alarms only after both", () => {
    const [firstBackup, firstDrill] = [one(dev, T.run, "schedule-first-backup"), one(dev, T.run, "schedule-first-restore-drill")];
    expect(firstBackup.inputs).toMatchObject({ serviceId: "crn-mock-schedule-backup", purpose: "the first backup" });
    expect(firstBackup.options.dependsOn).toEqual(["schedule-agent-rotation"]);
    expect(firstDrill.inputs).toMatchObject({ serviceId: "crn-mock-schedule-restore-drill" });
    expect(firstDrill.options.dependsOn).toEqual(["schedule-first-backup"]);
    for (const alarm of of(dev, T.alarm)) expect(alarm.options.dependsOn, alarm.name).toEqual(["schedule-first-backup", "schedule-first-restore-drill"]);
    // Without Render (prod here) nothing runs, and the alarms wait for nothing.
    expect(of(prod, T.run)).toHaveLength(0);
  });

  it("lets the metrics user put metrics in its namespace and nothing else", () => {
    const policy = JSON.parse(input(one(dev, T.policy), "policy"));
    expect(policy.Statement).toEqual([
      { Effect: "Allow", Action: ["cloudwatch:PutMetricData"], Resource: "*", Condition: { StringEquals: { "cloudwatch:namespace": "R2SqliteBackup" } } },
    ]);
  });

  it("creates the four alarms (and, with a replica as on dev, the replica lag alarm) on the SNS topic, the dashboard, and exports their ARNs and URL", () => {
    const alarms = of(dev, T.alarm);
    expect(alarms.map((a) => a.inputs.name)).toEqual([
      "r2-sqlite-backup-dev-no-successful-backup",
      "r2-sqlite-backup-dev-backup-failed",
      "r2-sqlite-backup-dev-restore-drill-stale",
      "r2-sqlite-backup-dev-restore-drill-failed",
      "r2-sqlite-backup-dev-replica-lag",
    ]);
    expect(alarms.at(-1)!.inputs).toMatchObject({ metricName: "ReplicaLagHours", threshold: 12 });
    for (const a of alarms) expect(input(a, "alarmActions")).toEqual(["arn:aws:sns:us-east-1:123456789012:r2-sqlite-backup-dev-alarms"]);
    expect(JSON.parse(input(one(dev, T.dashboard), "dashboardBody")).widgets.length).toBeGreaterThanOrEqual(4);
    expect(Object.keys(dev.outputs.alarmArns?.value as object)).toHaveLength(5);
    expect(dev.outputs.dashboardUrl?.value).toMatch(
      /^https:\/\/us-east-1\.console\.aws\.amazon\.com\/cloudwatch\/home\?region=us-east-1#dashboards\/dashboard\/r2-sqlite-backup-dev-backups$/,
    );
    expect(of(prod, T.alarm)).toHaveLength(0);
  });
});

describe("inputs checked against the providers' own input types", () => {
  /** `cloudflare:index/r2BucketLifecycle:R2BucketLifecycle` → `cloudflare.R2BucketLifecycleArgs` (and aws, random likewise). */
  const argsType = (type: string): string | undefined => {
    const m = /^(cloudflare|aws|random):([^/]+)\/[^:]+:(\w+)$/.exec(type);
    if (m) return m[2] === "index" ? `${m[1]}.${m[3]}Args` : `${m[1]}.${m[2]}.${m[3]}Args`;
    // Provider resources are left out: the SDK sends their config as strings (`"true"`), not as typed.
    return undefined;
  };

  /**
   * Type-checks every recorded input object as an object literal of its resource's Args type, so TypeScript's
   * excess-property check reaches every nested field. Returns the diagnostics, one line each.
   */
  async function typeCheck(resources: { type: string; inputs: Record<string, unknown> }[]): Promise<string[]> {
    const ts = (await import("typescript")).default;
    const { mkdirSync, rmSync, writeFileSync } = await import("node:fs");
    const dir = `${ROOT}node_modules/.cache/provider-inputs`;
    mkdirSync(dir, { recursive: true });
    const file = `${dir}/check-${process.pid}-${Date.now()}.ts`;
    const lines = ['import * as cloudflare from "@pulumi/cloudflare";', 'import * as aws from "@pulumi/aws";', 'import * as random from "@pulumi/random";'];
    for (const [i, r] of resources.entries()) lines.push(`export const r${i}: ${argsType(r.type)} = ${JSON.stringify(unwrapSecrets(r.inputs))};`);
    writeFileSync(file, lines.join("\n"));
    const program = ts.createProgram([file], {
      noEmit: true,
      strict: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: [],
    });
    const diagnostics = ts.getPreEmitDiagnostics(program);
    rmSync(file, { force: true });
    return diagnostics.map((d) => `${d.file ? d.file.getLineAndCharacterOfPosition(d.start ?? 0).line - 3 : "?"}: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`);
  }

  const checked = () => [dev, preview, prod, versioned].flatMap((p) => p.resources).filter((r) => r.custom && argsType(r.type) !== undefined);

  it("every Cloudflare, AWS and random resource's inputs type-check as that resource's Args, nested fields included", async () => {
    const resources = checked();
    expect(new Set(resources.map((r) => r.type.split(":")[0]))).toEqual(new Set(["cloudflare", "aws", "random"]));
    expect(await typeCheck(resources)).toEqual([]);
  }, 120_000);

  it("fails on a misspelled nested lifecycle or lock field (the test above can fail)", async () => {
    const lifecycle = of(dev, T.lifecycle)[0]!;
    const lock = of(dev, T.lock)[0]!;
    const rules = input(lifecycle, "rules") as Record<string, unknown>[];
    const misspelled = [
      {
        type: lifecycle.type,
        inputs: {
          ...lifecycle.inputs,
          rules: rules.map((r) => (r.deleteObjectsTransition ? { ...r, deleteObjectTransition: r.deleteObjectsTransition, deleteObjectsTransition: undefined } : r)),
        },
      },
      {
        type: lock.type,
        inputs: {
          ...lock.inputs,
          rules: (input(lock, "rules") as { condition: { maxAgeSeconds: number } }[]).map((r) => ({ ...r, condition: { type: "Age", maxAge: r.condition.maxAgeSeconds } })),
        },
      },
    ];
    const errors = await typeCheck(misspelled);
    expect(
      errors.some((e) => /^0: .*deleteObjectTransition.* does not exist in type 'Input<R2BucketLifecycleRule>'/.test(e)),
      errors.join("\n"),
    ).toBe(true);
    expect(
      errors.some((e) => /^1: .*maxAge.* does not exist in type 'Input<R2BucketLockRuleCondition>'/.test(e)),
      errors.join("\n"),
    ).toBe(true);
  }, 120_000);
});

describe("stacks", () => {
  /** Every physical name a resource carries. */
  const physicalNames = (plan: Plan) =>
    plan.resources.flatMap((r) => ["name", "scriptName", "dashboardName"].map((k) => r.inputs[k]).filter((v): v is string => typeof v === "string" && v.startsWith(P)));

  it("carries the stack in every physical name", () => {
    for (const plan of [dev, preview, prod]) {
      const names = physicalNames(plan);
      expect(names.length).toBeGreaterThanOrEqual(3);
      for (const n of names) expect(n).toContain(`-${plan.stack}-`);
    }
  });

  it("gives a preview stack (pr-42, no stack file) its own names, workers.dev, and nothing protected, locked or shared", () => {
    expect(preview.stackFile).toBe(false);
    expect(preview.preview).toBe(true);
    const production = new Set([...physicalNames(dev), ...physicalNames(prod)]);
    for (const n of physicalNames(preview)) expect(production.has(n)).toBe(false);
    for (const r of preview.resources) expect(r.options.protect ?? false, r.name).toBe(false);
    for (const r of preview.resources) expect(r.options.retainOnDelete ?? false, r.name).toBe(false);
    expect(of(preview, T.lock)).toHaveLength(0);
    expect(of(preview, T.route)).toHaveLength(0);
    // R2 deletes only empty buckets: destroy empties the preview's bucket through its Worker first.
    const emptier = one(preview, "pulumi-nodejs:dynamic/r2:EmptyBucketOnDestroy");
    expect(emptier.options.dependsOn).toEqual(["api-worker", "api-workers-dev"]);
    expect(input(emptier, "bucketName")).toBe("r2-sqlite-backup-pr-42-backups");
    expect(input(emptier, "workerUrl")).toBe("https://r2-sqlite-backup-pr-42-api.example.workers.dev");
    expect(isSecretInput(emptier.inputs.adminToken)).toBe(true);
    expect(of(dev, "pulumi-nodejs:dynamic/r2:EmptyBucketOnDestroy")).toHaveLength(0);
    // Cron triggers are limited per account (Workers Free: 5): previews take none.
    expect(of(preview, T.cron)).toHaveLength(0);
    expect(of(dev, T.cron)).toHaveLength(1);
    expect(of(preview, T.cronJob)).toHaveLength(0);
    expect(of(preview, T.envVars)).toHaveLength(0);
    expect(preview.resources.some((r) => r.type.startsWith("aws:"))).toBe(false);
    expect(one(preview, T.subdomain).inputs).toMatchObject({ enabled: true });
    expect(preview.outputs.workerUrl?.value).toBe("https://r2-sqlite-backup-pr-42-api.example.workers.dev");
    expect(preview.outputs.bucketName?.value).toBe("r2-sqlite-backup-pr-42-backups");
  });

  it("looks the workers.dev subdomain up from the account when a preview's config does not give it", async () => {
    const { Api } = await import("../../infra/components/api.ts");
    const types: string[] = [];
    await pulumi.runtime.setMocks(
      {
        newResource: (a) => (types.push(a.type), { id: `${a.name}-id`, state: { ...a.inputs, ...(a.type.endsWith(":WorkersSubdomain") ? { subdomain: "acme" } : {}) } }),
        call: (a) => a.inputs,
      },
      P,
      "pr-9",
      false,
    );
    const secret = pulumi.secret("t");
    const api = new Api("a", {
      accountId: "0".repeat(32),
      stack: "pr-9",
      preview: true,
      bundle: { code: "export default {}", sha256: "x" },
      bucketName: "b",
      jurisdiction: "default",
      serverToken: secret,
      adminToken: secret,
      maxBackupAgeHours: 7,
      freshnessCheckSchedule: "*/30 * * * *",
    });
    expect(await new Promise((resolve) => api.url.apply(resolve))).toBe("https://r2-sqlite-backup-pr-9-api.acme.workers.dev");
    expect(types).toContain("pulumi-nodejs:dynamic/cloudflare:WorkersSubdomain");
    // Given in config (dev's, inherited by pr-42), nothing is looked up.
    expect(of(preview, "pulumi-nodejs:dynamic/cloudflare:WorkersSubdomain")).toHaveLength(0);
  });

  it("fails a stack with missing config with the exact commands to run (and no stray error)", async () => {
    const values = { [`${P}:cloudflareAccountId`]: "0123456789abcdef0123456789abcdef", [`${P}:renderEnabled`]: "false" };
    await expect(planStack("prod", { config: { values, secretKeys: [] } })).rejects.toThrow(
      /pulumi config set r2-sqlite-backup:zoneId '<zone-id>' --stack prod\n {2}pulumi config set r2-sqlite-backup:hostname backups\.example\.com --stack prod/,
    );
  });

  it("refuses to plan a non-preview stack that has no stack file, saying how to create it", async () => {
    await expect(planStack("staging")).rejects.toThrow(/plan stack 'staging': there is no Pulumi\.staging\.yaml \(create it with `pulumi stack init staging`/);
  });

  it("exports the stack outputs from infra/index.ts, the program Pulumi.yaml names", async () => {
    const merged = mergedStackConfig("dev");
    pulumi.runtime.setAllConfig(merged.values, merged.secretKeys);
    await pulumi.runtime.setMocks({ newResource: (a) => ({ id: `${a.name}-id`, state: a.inputs }), call: (a) => a.inputs }, P, "dev", false);
    const program = await import("../../infra/index.ts");
    const value = <V>(o: pulumi.Output<V>) => new Promise<V>((resolve) => o.apply(resolve));
    expect(await value(program.bucketName)).toBe("r2-sqlite-backup-dev-backups");
    expect(await value(program.workerUrl)).toBe("https://backups-dev.example.com");
    expect(await value(program.backupCronJobId!)).toBe("schedule-backup-id");
    expect(program.alarmArns).not.toBeNull();
    expect(program.preview).toBe(false);
  });
});

describe("npm run plan", () => {
  // No credentials of any kind in the environment: the plan needs none.
  const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(RENDER_|AWS_|CLOUDFLARE_|PULUMI_)/.test(k)));
  const run = (...args: string[]) => spawnSync(process.execPath, ["scripts/plan.ts", ...args], { cwd: ROOT, env: cleanEnv, encoding: "utf8", timeout: 50_000 });

  it("prints the dev stack as JSON with no credentials, secrets masked", () => {
    const r = run("--json");
    expect(r.status, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(plan.stack).toBe("dev");
    expect(plan.resources.length).toBe(dev.resources.length);
    const script = plan.resources.find((x: { type: string }) => x.type === T.script);
    expect(script.inputs.bindings.find((b: { name: string }) => b.name === BINDINGS.serverToken).text).toBe("[secret]");
    expect(script.inputs.content).toMatch(/^\[worker bundle, \d+ bytes, sha256 [0-9a-f]{64}\]$/);
  });

  it("plans a preview stack pr-42 with no stack file, and explains usage errors", () => {
    const r = run("--stack", "pr-42", "--json");
    expect(r.status, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(plan).toMatchObject({ stack: "pr-42", preview: true, stackFile: false });
    expect(JSON.stringify(plan)).not.toContain("-dev-");
    // No account-limited resource on a preview: no cron trigger (Workers Free: 5 per account).
    expect(plan.resources.filter((x: { type: string }) => x.type === T.cron)).toEqual([]);
    const bad = run("--nope");
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("usage: npm run plan");
    // A stack name the cloud names would fold (or one pasted into a shell) is a usage error, before any file is read.
    for (const [stack, why] of [
      ["PROD", "would get the cloud names of stack 'prod'"],
      ["pr-42;rm -rf x", "would get the cloud names of stack 'pr-42-rm-rf-x'"],
      ["", "is empty"],
    ]) {
      const r = run(`--stack=${stack}`);
      expect(r.status, stack).toBe(2);
      expect(r.stderr).toContain(why);
    }
  });
});
