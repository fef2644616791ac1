import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DEFAULT_METRICS_NAMESPACE as METRICS_NAMESPACE, DEFAULT_RETENTION, METRICS } from "../../core/index.ts";
import { alarmSpecs } from "../../infra/components/monitoring.ts";
import { agentUrlProblem, CONFIG_KEYS, configSetCommand, loadStackConfig, unknownConfigKeys, withFallback, type ConfigReader } from "../../infra/config.ts";
import { parseListen } from "../../job/commands/agent.ts";
import { isPreviewStack, MAX_NAME_LENGTH, physicalName, stackNameProblem } from "../../infra/naming.ts";
import { mergedStackConfig, projectValues, readProjectDeclarations, readStackFile } from "../../infra/stack-files.ts";

const P = "r2-sqlite-backup";

/** A reader over plain values (as the CLI passes them: strings, lists as JSON). */
function reader(values: Record<string, string>, secretKeys: string[] = []): ConfigReader {
  return { get: (k) => values[k], isSecret: (k) => secretKeys.includes(k) };
}

const PROD: Record<string, string> = {
  cloudflareAccountId: "0123456789abcdef0123456789abcdef",
  zoneId: "fedcba9876543210fedcba9876543210",
  hostname: "backups.example.com",
  renderOwnerId: "tea-abc123",
  renderRepo: "https://github.com/example/r2-sqlite-backup",
  renderAppServiceId: "srv-abc123",
  agentUrl: "http://app:8788",
};

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("expected an error");
}

describe("stack config", () => {
  it("loads a production stack with the retention policy of core/ and Render on, monitoring off by default", () => {
    const c = loadStackConfig("prod", reader(PROD));
    expect(c.preview).toBe(false);
    expect(c.storage.retention).toEqual(DEFAULT_RETENTION);
    expect(c.render).toMatchObject({ ownerId: "tea-abc123", region: "oregon", backupSchedule: "0 */6 * * *", drillSchedule: "0 4 1 * *" });
    expect(c.monitoring).toBeUndefined();
    expect(c.secrets).toEqual({});
  });

  it("names every missing key with the exact `pulumi config set` command, all at once", () => {
    const message = errorOf(() => loadStackConfig("prod", reader({ cloudflareAccountId: PROD.cloudflareAccountId as string })));
    expect(message).toMatch(/^configure stack 'prod': missing r2-sqlite-backup:zoneId/);
    for (const [key, value] of [
      ["zoneId", "'<zone-id>'"],
      ["hostname", "backups.example.com"],
      ["renderOwnerId", "tea-xxxxxxxxxxxxxxxxxxxx"],
      ["renderRepo", "https://github.com/you/r2-sqlite-backup"],
      ["renderAppServiceId", "srv-xxxxxxxxxxxxxxxxxxxx"],
      ["agentUrl", "http://my-app:8788"],
    ]) {
      expect(message).toContain(`pulumi config set ${P}:${key} ${value} --stack prod`);
    }
    expect(errorOf(() => loadStackConfig("dev", reader({})))).toContain(`pulumi config set ${P}:cloudflareAccountId '<account-id>' --stack dev`);
  });

  it("refuses a secret stored in plain text, with the --secret command", () => {
    const message = errorOf(() => loadStackConfig("prod", reader({ ...PROD, serverToken: "plain" })));
    expect(message).toContain(`pulumi config set --secret ${P}:serverToken '<token>' --stack prod`);
    expect(message).not.toContain("plain'");
  });

  it("keeps configured secrets as secret Outputs", async () => {
    const { isSecret } = await import("@pulumi/pulumi");
    const c = loadStackConfig("prod", reader({ ...PROD, adminToken: "admin-value-0123456789", alertWebhookUrl: "https://hooks.example.com/x" }, ["adminToken", "alertWebhookUrl"]));
    expect(await isSecret(c.secrets.adminToken!)).toBe(true);
    expect(await isSecret(c.secrets.alertWebhookUrl!)).toBe(true);
    expect(c.secrets.serverToken).toBeUndefined();
  });

  it("rejects bad values, naming each", () => {
    const message = errorOf(() =>
      loadStackConfig(
        "prod",
        reader({
          ...PROD,
          bucketLocation: "mars",
          replicaLocation: "mars",
          lockDays: "40",
          renderRegion: "tokyo",
          backupSchedule: "hourly",
          alarmEmails: "x",
          monitoringEnabled: "true",
          hostname: "https://x.example.com/",
        }),
      ),
    );
    expect(message).toContain("bucketLocation must be one of apac, eeur, enam, weur, wnam, oc, got 'mars'");
    expect(message).toContain("lockDays (40) must not exceed retentionFullDays (30)");
    expect(message).toContain("renderRegion must be one of");
    expect(message).toContain("backupSchedule must be a 5-field cron expression");
    expect(message).toContain("alarmEmails must be a list of strings");
    expect(message).toContain("hostname must be a bare hostname");
    expect(message).toContain("replicaLocation must differ from bucketLocation");
  });

  it("gives preview stacks no lock, no Render jobs, no monitoring, no replica and no failover, whatever the config says", () => {
    const c = loadStackConfig(
      "pr-42",
      reader({ ...PROD, workersDevSubdomain: "acme", monitoringEnabled: "true", replicaLocation: "enam", failover: "replica-only", lockDays: "7" }),
    );
    expect(c.preview).toBe(true);
    expect(c.storage.retention.lockDays).toBe(0);
    expect(c.storage.replicaLocation).toBeUndefined();
    expect(c.storage.failover).toBe("off");
    expect(c.render).toBeUndefined();
    expect(c.monitoring).toBeUndefined();
    expect(c.cloudflare).toEqual({ accountId: PROD.cloudflareAccountId, workersDevSubdomain: "acme" });
    // Without workersDevSubdomain a preview looks it up from the account at deploy time.
    expect(loadStackConfig("pr-7", reader({ cloudflareAccountId: PROD.cloudflareAccountId as string })).cloudflare).toEqual({ accountId: PROD.cloudflareAccountId });
  });

  it("lets a preview stack inherit the dev stack's non-secret values, never its secrets", () => {
    const fallback = withFallback(reader({ bucketLocation: "" }), {
      cloudflareAccountId: "a".repeat(32),
      workersDevSubdomain: "acme",
      bucketLocation: "weur",
      serverToken: "leaked",
    });
    expect(fallback.get("cloudflareAccountId")).toBe("a".repeat(32));
    expect(fallback.get("bucketLocation")).toBe("weur");
    expect(fallback.get("serverToken")).toBeUndefined();
    expect(loadStackConfig("pr-1", fallback).storage.location).toBe("weur");
  });

  it("has the cron jobs install this program's own release unless renderPackage names another, one shell word", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { name: string; version: string };
    expect(loadStackConfig("prod", reader(PROD)).render?.package).toBe(`${pkg.name}@${pkg.version}`);
    const url = "https://github.com/example/r2-sqlite-backup/releases/download/v0.2.0/r2-sqlite-backup-0.2.0.tgz";
    expect(loadStackConfig("prod", reader({ ...PROD, renderPackage: url })).render?.package).toBe(url);
    expect(errorOf(() => loadStackConfig("prod", reader({ ...PROD, renderPackage: "r2-sqlite-backup@1; curl x | sh" })))).toContain("renderPackage must be one npm spec");
  });

  it("quotes example values that a shell would split", () => {
    expect(configSetCommand("alarmEmails", "prod")).toBe(`pulumi config set ${P}:alarmEmails '["ops@example.com"]' --stack prod`);
  });
});

describe("Pulumi.yaml and Pulumi.dev.yaml", () => {
  it("declare every key the program reads, with its type, default and a description", () => {
    const declared = readProjectDeclarations();
    expect(Object.keys(declared).sort()).toEqual(CONFIG_KEYS.map((k) => k.key).sort());
    for (const spec of CONFIG_KEYS) {
      const d = declared[spec.key];
      expect(d?.type, spec.key).toBe(spec.type);
      expect(d?.default, spec.key).toEqual(spec.default);
      expect(d?.description, spec.key).toBe(spec.description);
    }
    expect(readFileSync(new URL("../../Pulumi.yaml", import.meta.url), "utf8")).toMatch(/^main: infra\/index\.ts$/m);
  });

  it("retention defaults in Pulumi.yaml are core's DEFAULT_RETENTION", () => {
    const d = readProjectDeclarations();
    expect({
      fullDays: d.retentionFullDays?.default,
      incrementalDays: d.retentionIncrementalDays?.default,
      dailyInfrequentAccessDays: d.retentionDailyInfrequentAccessDays?.default,
      dailyDays: d.retentionDailyDays?.default,
      drillDays: d.retentionDrillDays?.default,
      abortMultipartDays: d.retentionAbortMultipartDays?.default,
      lockDays: d.lockDays?.default,
    }).toEqual(DEFAULT_RETENTION);
  });

  it("the dev stack file is complete and holds no secret: it loads with Render and monitoring on", () => {
    const file = readStackFile("dev");
    expect(file?.secretKeys).toEqual([]);
    const merged = mergedStackConfig("dev");
    const values = Object.fromEntries(
      Object.entries(merged.values)
        .filter(([k]) => k.startsWith(`${P}:`))
        .map(([k, v]) => [k.slice(P.length + 1), v]),
    );
    const c = loadStackConfig("dev", reader(values));
    expect(c.render).toBeDefined();
    expect(c.monitoring?.alarmEmails.length).toBeGreaterThan(0);
    expect(c.storage.replicaLocation).toBeDefined();
    expect(projectValues(file).cloudflareAccountId).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe("naming", () => {
  it("carries the project, the stack and the role; preview and production names never meet", () => {
    expect(physicalName("prod", "backups")).toBe("r2-sqlite-backup-prod-backups");
    expect(physicalName("pr-42", "backups")).toBe("r2-sqlite-backup-pr-42-backups");
    const roles = ["backups", "backups-replica", "api", "backup", "restore-drill", "alarms", "metrics"];
    const prod = new Set(roles.map((r) => physicalName("prod", r)));
    for (const r of roles) expect(prod.has(physicalName("pr-42", r))).toBe(false);
  });

  it("stays within R2's bucket-name rules and keeps long names unique", () => {
    const a = physicalName("feature-with-a-very-long-stack-name-indeed-yes", "backups-replica");
    const b = physicalName("feature-with-a-very-long-stack-name-indeed-no", "backups-replica");
    for (const n of [a, b, physicalName("Dev_Stack", "API")]) {
      expect(n.length).toBeLessThanOrEqual(MAX_NAME_LENGTH);
      expect(n).toMatch(/^[a-z0-9][a-z0-9-]*[a-z0-9]$/);
    }
    expect(a).not.toBe(b);
    expect(a.endsWith("-backups-replica")).toBe(true);
  });

  it("refuses a backup schedule that cannot parse, never runs, or lets the freshness check or the alarm fire", () => {
    expect(errorOf(() => loadStackConfig("prod", reader({ ...PROD, backupSchedule: "99 */6 * * *" })))).toMatch(
      /backupSchedule minute '99' is outside 0-59, got '99 \*\/6 \* \* \*'/,
    );
    expect(errorOf(() => loadStackConfig("prod", reader({ ...PROD, drillSchedule: "0 0 31 2 *" })))).toMatch(/drillSchedule never runs \(no day matches it\)/);
    // Cloudflare's own cron extensions are its to check.
    expect(loadStackConfig("prod", reader({ ...PROD, freshnessCheckSchedule: "0 0 L * *" })).worker.freshnessCheckSchedule).toBe("0 0 L * *");
    // Daily: the full is 24 h old by the next one.
    expect(errorOf(() => loadStackConfig("prod", reader({ ...PROD, backupSchedule: "0 3 * * *" })))).toMatch(
      /backupSchedule '0 3 \* \* \*' lets the newest full backup get 24\.0 h old \(a run takes a full once the last is 5\.5 h old\), and the freshness check alerts at maxBackupAgeHours \(7 h\)/,
    );
    // Every 4 h is more often, yet the full is due at 5.5 h and taken at 8 h: the freshness check fires.
    expect(errorOf(() => loadStackConfig("prod", reader({ ...PROD, backupSchedule: "0 */4 * * *" })))).toMatch(/lets the newest full backup get 8\.0 h old/);
    // A longer freshness limit does not quiet the alarm, which counts clock hours without a successful backup.
    const monitored = { ...PROD, maxBackupAgeHours: "30", monitoringEnabled: "true", alarmEmails: '["ops@example.com"]' };
    const alarm = errorOf(() => loadStackConfig("prod", reader({ ...monitored, backupSchedule: "0,50 0,8,16 * * *" })));
    expect(alarm).toMatch(/leaves up to 7 clock hours in a row without a backup, and the no-successful-backup alarm fires at 7/);
    expect(alarm).not.toMatch(/freshness/);
    for (const ok of ["0 */6 * * *", "15 */6 * * *", "0 * * * *", "*/15 * * * *"]) {
      expect(loadStackConfig("prod", reader({ ...monitored, maxBackupAgeHours: "7", backupSchedule: ok })).render?.backupSchedule, ok).toBe(ok);
    }
  });

  it("refuses a URL setting that would put a secret in plain config, state and Render (credentials, a secret-like query), never printing it", () => {
    for (const [key, value, why] of [
      ["agentUrl", "http://admin:hunter2pass@example-app:8788", "carries credentials"],
      ["renderRepo", "https://x-access-token:ghp_REPOSECRET456@github.com/example/r2-sqlite-backup", "carries credentials"],
      ["renderPackage", "https://example.com/pkg.tgz?sig=SIGSECRET789", "carries a secret-like query parameter 'sig'"],
      ["agentUrl", "https://admin:hunter2pass@example-app:8788", "carries credentials"],
      // No scheme: 'my-app:' parses as one, and the rest must not be printed.
      ["agentUrl", "my-app:hunter2pass@x:8788", "carries credentials"],
      ["renderPackage", "https://example.com/pkg.tgz?X-Amz-Signature=SIGSECRET789", "carries a secret-like query parameter 'X-Amz-Signature'"],
    ] as const) {
      const message = errorOf(() => loadStackConfig("prod", reader({ ...PROD, [key]: value })));
      expect(message).toContain(`${key} ${why}`);
      expect(message).not.toMatch(/hunter2pass|REPOSECRET|SIGSECRET/);
    }
    // A query parameter that only contains such a word is not one.
    expect(loadStackConfig("prod", reader({ ...PROD, renderPackage: "https://example.com/pkg.tgz?design=1" })).render?.package).toContain("design=1");
  });

  it("refuses a token set by hand shorter than the agent takes, never printing it", () => {
    const message = errorOf(() => loadStackConfig("prod", reader({ ...PROD, agentToken: "short-secret" }, ["agentToken"])));
    expect(message).toMatch(/agentToken is 12 characters: use at least 16 random ones/);
    expect(message).not.toContain("short-secret");
  });

  it("names a retention problem by the config keys that set it", () => {
    expect(errorOf(() => loadStackConfig("prod", reader({ ...PROD, retentionDailyDays: "30" })))).toMatch(
      /configure stack 'prod': retention: retentionDailyInfrequentAccessDays \(90\) must be less than retentionDailyDays \(30\)/,
    );
  });

  it("refuses keys the program would silently ignore: unknown in its namespace, or a namespace a letter or two off", () => {
    expect(
      unknownConfigKeys([
        "r2-sqlite-backup:hostname",
        "r2-sqlite-backup:lockdays",
        "r2-sqlite-backup:hostnmae",
        "r2-sqlite-backup:somethingElseEntirely",
        "r2-sqlite-bakup:serverToken",
        "aws:region",
        "cloudflare:apiToken",
      ]),
    ).toEqual([
      "r2-sqlite-backup:lockdays is not a setting of this program (did you mean r2-sqlite-backup:lockDays?)",
      "r2-sqlite-backup:hostnmae is not a setting of this program (did you mean r2-sqlite-backup:hostname?)",
      "r2-sqlite-backup:somethingElseEntirely is not a setting of this program",
      "r2-sqlite-bakup:serverToken is in namespace 'r2-sqlite-bakup', not 'r2-sqlite-backup' (did you mean r2-sqlite-backup:serverToken?)",
    ]);
    const keys = [...Object.keys(PROD).map((k) => `r2-sqlite-backup:${k}`), "r2-sqlite-backup:lockdays"];
    expect(errorOf(() => loadStackConfig("prod", { ...reader({ ...PROD, lockdays: "30" }), allKeys: () => keys }))).toMatch(
      /r2-sqlite-backup:lockdays is not a setting of this program \(did you mean r2-sqlite-backup:lockDays\?\)/,
    );
  });

  it("takes only stack names that physical names keep as they are: PROD, dev_ or pr_42 would name prod's, dev's or pr-42's resources", () => {
    for (const ok of ["prod", "dev", "staging", "pr-42", "eu-west-2"]) expect(stackNameProblem(ok), ok).toBeUndefined();
    for (const [bad, folded] of [
      ["PROD", "prod"],
      ["Dev", "dev"],
      ["dev_", "dev"],
      ["pr_42", "pr-42"],
      ["pr.42", "pr-42"],
      ["-prod", "prod"],
      ["prod--b", "prod-b"],
    ]) {
      expect(stackNameProblem(bad!), bad).toMatch(new RegExp(`'${bad!.replace(".", "\\.")}' would get the cloud names of stack '${folded}'$`));
    }
    expect(stackNameProblem("")).toBe("is empty: name a stack (e.g. prod, staging, pr-42)");
    expect(() => loadStackConfig("PROD", reader({}))).toThrow(/load stack 'PROD': must be lowercase letters, digits and single '-'/);
  });

  it("recognises preview stacks as pr-<number> only", () => {
    expect(isPreviewStack("pr-42")).toBe(true);
    for (const s of ["prod", "dev", "pr-", "pr-x", "apr-1", "pr-1-prod"]) expect(isPreviewStack(s)).toBe(false);
  });
});

describe("alarms", () => {
  it("are the design's four, each within CloudWatch's 7-day window and on a metric the job emits", () => {
    const specs = alarmSpecs("NS");
    expect(specs.map((s) => s.role)).toEqual(["no-successful-backup", "backup-failed", "restore-drill-stale", "restore-drill-failed"]);
    for (const s of specs) {
      expect(s.namespace).toBe("NS");
      expect(Object.values(METRICS)).toContain(s.metricName);
      expect((s.period as number) * (s.evaluationPeriods as number)).toBeLessThanOrEqual(7 * 86_400);
      expect((s.period as number) % 60).toBe(0);
      expect(s.comparisonOperator).toBeDefined();
      expect(s.threshold).toBeDefined();
    }
    const [noSuccess, failed, drill] = specs;
    expect((noSuccess?.period as number) * (noSuccess?.evaluationPeriods as number)).toBe(7 * 3600);
    expect(noSuccess?.treatMissingData).toBe("breaching");
    expect(failed).toMatchObject({ threshold: 0, comparisonOperator: "GreaterThanThreshold" });
    expect(drill).toMatchObject({ threshold: 35 * 24, comparisonOperator: "GreaterThanThreshold" });
  });
});

/**
 * A model of how CloudWatch evaluates a metric alarm (PutMetricAlarm semantics): the last
 * `evaluationPeriods` periods up to the one holding `at`, each reduced by `statistic`; missing periods per
 * `treatMissingData`; ALARM when at least `datapointsToAlarm` (default: all) breach.
 */
type Datum = { metric: string; at: number; value: number };
type AlarmSpec = ReturnType<typeof alarmSpecs>[number];
function alarmState(spec: AlarmSpec, data: Datum[], at: number): "ALARM" | "OK" | "INSUFFICIENT_DATA" {
  const period = (spec.period as number) * 1000;
  const periods = spec.evaluationPeriods as number;
  const last = Math.floor(at / period) * period;
  const results: (boolean | undefined)[] = [];
  for (let k = periods - 1; k >= 0; k--) {
    const start = last - k * period;
    const values = data.filter((d) => d.metric === spec.metricName && d.at >= start && d.at < start + period && d.at <= at).map((d) => d.value);
    if (values.length === 0) {
      const missing = spec.treatMissingData ?? "missing";
      results.push(missing === "breaching" ? true : missing === "notBreaching" ? false : undefined);
      continue;
    }
    const stat = { Sum: values.reduce((a, b) => a + b, 0), Maximum: Math.max(...values), Minimum: Math.min(...values), Average: values.reduce((a, b) => a + b, 0) / values.length }[
      spec.statistic as string
    ];
    if (stat === undefined) throw new Error(`statistic ${String(spec.statistic)} not modelled`);
    const t = spec.threshold as number;
    results.push(
      { GreaterThanThreshold: stat > t, GreaterThanOrEqualToThreshold: stat >= t, LessThanThreshold: stat < t, LessThanOrEqualToThreshold: stat <= t }[
        spec.comparisonOperator as string
      ],
    );
  }
  const known = results.filter((r): r is boolean => r !== undefined);
  if (known.length === 0) return "INSUFFICIENT_DATA";
  return known.filter(Boolean).length >= ((spec.datapointsToAlarm as number | undefined) ?? periods) ? "ALARM" : "OK";
}

describe("alarms against a synthetic metric history", () => {
  const H = 3_600_000;
  const specs = alarmSpecs(METRICS_NAMESPACE);
  const spec = (role: string) => specs.find((s) => s.role === role)!;
  /** `up` at 09:00 UTC: the first backup (never drilled: 841 h), the first drill, then the alarms (09:30). */
  const deploy = Date.parse("2026-03-02T09:00:00Z");
  const created = deploy + 0.5 * H;
  const backupAt = (at: number, drillAt: number | undefined): Datum[] => [
    { metric: METRICS.backupSucceeded, at, value: 1 },
    { metric: METRICS.restoreDrillAgeHours, at, value: drillAt === undefined ? 841 : (at - drillAt) / H },
  ];
  const drill = (at: number, ok: boolean): Datum[] => [
    { metric: METRICS.restoreDrillFailed, at, value: ok ? 0 : 1 },
    ...(ok ? [{ metric: METRICS.restoreDrillAgeHours, at, value: 0 }] : []),
  ];
  /** The stack's history: the deploy's first runs, then a backup every 6 hours (00, 06, 12, 18 UTC) until `until`. */
  function history(until: number, extra: Datum[] = []): Datum[] {
    const firstDrill = deploy + 0.2 * H;
    const data = [...backupAt(deploy + 0.1 * H, undefined), ...drill(firstDrill, true), ...extra];
    for (let t = Date.parse("2026-03-02T12:00:00Z"); t <= until; t += 6 * H) data.push(...backupAt(t, firstDrill));
    return data;
  }
  /** Every alarm in ALARM at some evaluation (each minute) between `from` and `to`. */
  function firing(data: Datum[], from: number, to: number): Set<string> {
    const out = new Set<string>();
    for (let t = from; t <= to; t += 60_000) for (const s of specs) if (alarmState(s, data, t) === "ALARM") out.add(s.role);
    return out;
  }

  it("a new stack's first day: nothing in ALARM from the moment the alarms exist", () => {
    expect(firing(history(deploy + 24 * H), created, deploy + 24 * H)).toEqual(new Set());
  });

  it("without the deploy's first backup and drill, the same day would alarm (why up runs them first)", () => {
    const silent = history(deploy + 24 * H).filter((d) => d.at > deploy + H);
    expect(firing(silent, created, created + H)).toEqual(new Set(["no-successful-backup"]));
    const neverDrilled = history(deploy + 24 * H).filter((d) => !(d.metric === METRICS.restoreDrillAgeHours && d.value === 0));
    expect([...firing(neverDrilled, created, deploy + 24 * H)]).toContain("restore-drill-stale");
  });

  it("a healthy week: nothing in ALARM", () => {
    const end = deploy + 7 * 24 * H;
    expect(firing(history(end), created, end)).toEqual(new Set());
  });

  it("a failed drill: the drill-failed alarm and nothing else, for the rest of that day", () => {
    const failedAt = Date.parse("2026-03-05T04:00:00Z");
    const data = history(deploy + 7 * 24 * H, drill(failedAt, false));
    expect(firing(data, created, failedAt - 60_000)).toEqual(new Set());
    expect(alarmState(spec("restore-drill-failed"), data, failedAt + 60_000)).toBe("ALARM");
    expect(firing(data, failedAt, failedAt + 3 * H)).toEqual(new Set(["restore-drill-failed"]));
    expect(alarmState(spec("restore-drill-failed"), data, Date.parse("2026-03-06T01:00:00Z"))).toBe("OK");
  });

  it("7 hours without a backup: the no-successful-backup alarm, not before", () => {
    const lastBackup = Date.parse("2026-03-04T06:00:00Z");
    const data = history(lastBackup);
    expect(alarmState(spec("no-successful-backup"), data, lastBackup + 6.5 * H)).toBe("OK");
    expect(alarmState(spec("no-successful-backup"), data, lastBackup + 7.5 * H)).toBe("ALARM");
    expect(firing(data, created, lastBackup + 6.5 * H)).toEqual(new Set());
  });

  it("a failed backup: the backup-failed alarm", () => {
    const at = Date.parse("2026-03-03T12:00:00Z");
    const data = history(deploy + 3 * 24 * H, [{ metric: METRICS.backupFailed, at, value: 1 }]);
    expect(alarmState(spec("backup-failed"), data, at + 60_000)).toBe("ALARM");
    expect(alarmState(spec("backup-failed"), data, at - 60_000)).not.toBe("ALARM");
  });

  it("a drill that stops for 35 days: the drill-stale alarm", () => {
    const firstDrill = deploy + 0.2 * H;
    const data: Datum[] = [...drill(firstDrill, true)];
    for (let t = deploy + 3 * H; t <= deploy + 40 * 24 * H; t += 6 * H) data.push(...backupAt(t, firstDrill));
    expect(alarmState(spec("restore-drill-stale"), data, deploy + 34 * 24 * H)).toBe("OK");
    expect(alarmState(spec("restore-drill-stale"), data, deploy + 37 * 24 * H)).toBe("ALARM");
  });
});

describe("the replica lag alarm against a synthetic metric history", () => {
  const H = 3_600_000;
  const lag = alarmSpecs(METRICS_NAMESPACE, 12).find((s) => s.role === "replica-lag")!;
  /** A backup every 6 hours for 3 days, each reporting the replica's lag as the job does. */
  const history = (lagHours: (t: number) => number): Datum[] => {
    const data: Datum[] = [];
    for (let t = Date.parse("2026-03-02T00:05:00Z"); t < Date.parse("2026-03-05T00:00:00Z"); t += 6 * H) {
      data.push({ metric: METRICS.replicaLagHours, at: t, value: lagHours(t) }, { metric: METRICS.replicaLagSets, at: t, value: lagHours(t) > 0 ? 1 : 0 });
    }
    return data;
  };
  const states = (data: Datum[]) => {
    const out = new Set<string>();
    for (let t = Date.parse("2026-03-02T00:06:00Z"); t < Date.parse("2026-03-05T00:00:00Z"); t += 10 * 60_000) out.add(alarmState(lag, data, t));
    return out;
  };

  it("exists only with a replica, on the metric the job reports, within CloudWatch's window", () => {
    expect(alarmSpecs("NS").map((s) => s.role)).not.toContain("replica-lag");
    expect(lag).toMatchObject({ metricName: METRICS.replicaLagHours, threshold: 12, comparisonOperator: "GreaterThanThreshold", treatMissingData: "notBreaching" });
    expect((lag.period as number) * (lag.evaluationPeriods as number)).toBeLessThanOrEqual(86_400);
  });

  it("stays quiet at 0, and with a lag inside the limit (a set the next cron run copies)", () => {
    expect(states(history(() => 0))).toEqual(new Set(["OK"]));
    expect(states(history(() => 0.4))).toEqual(new Set(["OK"]));
  });

  it("fires on a synthetic lag: a set missing since 2026-03-03 00:00 alarms once it is over 12 hours old, and clears when copied", () => {
    const since = Date.parse("2026-03-03T00:00:00Z");
    const copied = Date.parse("2026-03-04T06:00:00Z");
    const data = history((t) => (t >= since && t < copied ? (t - since) / H : 0));
    expect(alarmState(lag, data, Date.parse("2026-03-03T06:30:00Z"))).toBe("OK"); // 6 h behind: within the limit
    expect(alarmState(lag, data, Date.parse("2026-03-03T12:00:00Z"))).toBe("OK"); // no report yet in this 6-hour period
    expect(alarmState(lag, data, Date.parse("2026-03-03T12:30:00Z"))).toBe("ALARM"); // the 12:05 backup reports 12.08 h
    expect(alarmState(lag, data, Date.parse("2026-03-03T18:30:00Z"))).toBe("ALARM");
    expect(alarmState(lag, data, Date.parse("2026-03-04T00:30:00Z"))).toBe("ALARM");
    expect(alarmState(lag, data, Date.parse("2026-03-04T06:30:00Z"))).toBe("OK"); // the replica caught up
  });
});

describe("the agent's address: documented, configured and listened on alike", () => {
  it("refuses an agentUrl the cron job could not reach, saying why", () => {
    expect(agentUrlProblem("http://my-app:8788")).toBeUndefined();
    expect(agentUrlProblem("http://127.0.0.1:8788")).toMatch(/not this machine/);
    expect(agentUrlProblem("http://localhost:8788")).toMatch(/not this machine/);
    expect(agentUrlProblem("https://my-app:8788")).toMatch(/must be http:\/\//);
    expect(agentUrlProblem("http://my-app")).toMatch(/must carry the agent's port/);
    expect(agentUrlProblem("http://my-app:10000")).toMatch(/Render reserves 10000/);
    expect(errorOf(() => loadStackConfig("prod", reader({ ...PROD, agentUrl: "http://127.0.0.1:8788" })))).toMatch(/agentUrl must name the app service/);
  });

  it("README's Deploy section starts the agent on all interfaces, on the port of the agentUrl it sets, which is the agent's default port", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const deploy = readme.slice(readme.indexOf("## Deploy"), readme.indexOf("## Disaster recovery"));
    const listen = /agent --listen (\S+)/.exec(deploy)?.[1];
    const url = /config set r2-sqlite-backup:agentUrl (\S+)/.exec(deploy)?.[1];
    expect(listen && url).toBeTruthy();
    const { host, port } = parseListen(listen!);
    expect(host).toBe("0.0.0.0");
    expect(Number(new URL(url!).port)).toBe(port);
    expect(agentUrlProblem(url!)).toBeUndefined();
    // The agent's default listen port (without --listen) is the documented one.
    const agentSource = readFileSync(new URL("../../job/commands/agent.ts", import.meta.url), "utf8");
    expect(parseListen(/DEFAULT_LISTEN = "([^"]+)"/.exec(agentSource)![1]!).port).toBe(port);
    for (const stack of ["dev"]) expect(agentUrlProblem(readStackFile(stack)!.values[`${P}:agentUrl`]!), stack).toBeUndefined();
  });
});

describe("the design document", () => {
  it("is in the repository as docs/design.md, and every file that cites a design file cites it", async () => {
    const { execFileSync } = await import("node:child_process");
    const root = new URL("../../", import.meta.url);
    const design = readFileSync(new URL("docs/design.md", root), "utf8");
    for (const section of ["## Storage layout", "## Facts that change the sketch", "## Monitoring", "## Deploying"]) expect(design).toContain(section);
    const files = execFileSync("git", ["ls-files"], { cwd: root, encoding: "utf8" })
      .split("\n")
      .filter((f) => /\.(ts|js|md|ya?ml)$/.test(f));
    const citing = files.filter((f) => f !== "docs/design.md" && readFileSync(new URL(f, root), "utf8").includes("DESIGN" + ".md"));
    expect(citing).toEqual([]);
    expect(files.filter((f) => readFileSync(new URL(f, root), "utf8").includes("docs/design.md")).length).toBeGreaterThanOrEqual(30);
  });
});
