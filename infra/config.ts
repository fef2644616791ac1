import * as pulumi from "@pulumi/pulumi";
import {
  ContractError,
  DEFAULT_FULL_EVERY_HOURS,
  DEFAULT_METRICS_NAMESPACE,
  DEFAULT_RETENTION,
  MIN_TOKEN_LENGTH,
  fullDueHours,
  validateRetentionPolicy,
  type RetentionPolicy,
} from "../core/index.ts";
import { InfraError } from "./errors.ts";
import { checkCron, longestEmptyHours, longestFullAgeMinutes } from "./cron.ts";
import { isPreviewStack, PROJECT, stackNameProblem } from "./naming.ts";
import ownPackage from "../package.json" with { type: "json" };

/** This program's own package, the default of `renderPackage`: the cron jobs run the job of the same release. */
export const OWN_PACKAGE_SPEC = `${ownPackage.name}@${ownPackage.version}`;

/**
 * The stack configuration: every key the program reads, declared once here (and, with the same types,
 * defaults and descriptions, in `Pulumi.yaml`; a test keeps the two equal). An empty string means "not set":
 * the CLI applies `Pulumi.yaml` defaults before the program runs, so "absent" and "default" look alike.
 */
export interface ConfigKeySpec {
  key: string;
  type: "string" | "integer" | "boolean" | "array";
  description: string;
  default: string | number | boolean | string[];
  /** Set with `pulumi config set --secret`; never read or shown in plain text. */
  secret?: boolean;
  /** The `<value>` shown in the `pulumi config set` hint. */
  example: string;
}

const str = (key: string, description: string, example: string, def = "", secret = false): ConfigKeySpec => ({
  key,
  type: "string",
  description,
  default: def,
  example,
  ...(secret ? { secret } : {}),
});
const int = (key: string, description: string, def: number): ConfigKeySpec => ({ key, type: "integer", description, default: def, example: String(def) });
const bool = (key: string, description: string, def: boolean): ConfigKeySpec => ({ key, type: "boolean", description, default: def, example: String(def) });

export const CONFIG_KEYS: readonly ConfigKeySpec[] = [
  str("cloudflareAccountId", "Cloudflare account id (32 hex characters) that owns the R2 buckets and the Worker. Required.", "<account-id>"),
  str("zoneId", "Cloudflare zone id of `hostname`, for the Worker's custom domain. Required on every stack but previews (`pr-<n>`).", "<zone-id>"),
  str(
    "hostname",
    "Hostname the Worker answers on, as a Workers custom domain (Cloudflare creates its DNS record and certificate; the name must have no other DNS record). Required on every stack but previews.",
    "backups.example.com",
  ),
  str(
    "workersDevSubdomain",
    "The account's workers.dev subdomain (`<sub>.workers.dev`), where preview stacks are served; empty = looked up from the account at deploy time.",
    "<subdomain>",
  ),
  str("bucketLocation", "R2 location hint of the bucket (apac, eeur, enam, weur, wnam, oc); empty lets Cloudflare choose. Used only at creation.", "weur"),
  str("bucketJurisdiction", "R2 jurisdiction of the buckets (default, eu, fedramp).", "eu", "default"),
  str("replicaLocation", "Location hint of an optional second bucket for geographic redundancy (R2 does not replicate); empty = none.", "enam"),
  str(
    "failover",
    "Which bucket the Worker serves: off (the primary; the replica, when configured, is filled from it), replica (the replica serves and the primary, bound as the replica, is filled back from it: the way back after an outage), replica-only (the replica serves, the primary is not bound: its region or bucket is lost). Needs replicaLocation. See docs/disaster-recovery.md section 4.",
    "replica-only",
    "off",
  ),
  int("replicaMaxLagHours", "The Worker's cron check alerts when a complete backup has been missing from the replica for longer than this.", 12),
  int(
    "lockDays",
    "Bucket lock: days during which nothing under backups/ (except backups/state/) can be deleted or overwritten. 0 = no lock. Previews never get one.",
    DEFAULT_RETENTION.lockDays,
  ),
  int("retentionFullDays", "Days a full backup is kept.", DEFAULT_RETENTION.fullDays),
  int("retentionIncrementalDays", "Days an incremental backup is kept.", DEFAULT_RETENTION.incrementalDays),
  int("retentionDailyInfrequentAccessDays", "Days after which a daily backup moves to InfrequentAccess.", DEFAULT_RETENTION.dailyInfrequentAccessDays),
  int("retentionDailyDays", "Days a daily backup is kept.", DEFAULT_RETENTION.dailyDays),
  int("retentionDrillDays", "Days a restore-drill record is kept.", DEFAULT_RETENTION.drillDays),
  int("retentionAbortMultipartDays", "Days after which an incomplete multipart upload is aborted.", DEFAULT_RETENTION.abortMultipartDays),
  int("maxBackupAgeHours", "The Worker's freshness check alerts when the newest complete full backup is older than this.", 7),
  str("freshnessCheckSchedule", "Cron schedule (UTC) of the Worker's freshness check.", "*/30 * * * *", "*/30 * * * *"),
  bool(
    "workerVersions",
    "Deploy the Worker as Worker + WorkerVersion + WorkersDeployment (gradual rollout and rollback by config) instead of one WorkersScript. For new stacks: switching an existing stack replaces its Worker.",
    false,
  ),
  str(
    "workerStableVersionId",
    "With workerVersions: the version that keeps the rest of the traffic during a rollout (or all of it at workerRolloutPercent 0, a rollback); empty = none.",
    "<version-id>",
  ),
  int("workerRolloutPercent", "With workerVersions and a workerStableVersionId: the share of traffic (0-100) the version this `up` uploads gets.", 100),
  str("alertWebhookUrl", "Secret. Webhook the Worker posts to when backups are stale; empty = no webhook.", "https://hooks.example.com/...", "", true),
  str("serverToken", "Secret. The job's token (SERVER_BYPASS_TOKEN): write and read, never delete. Generated when empty.", "<token>", "", true),
  str(
    "serverTokenPrevious",
    "Secret. During a rotation of serverToken only: the old token, which the Worker keeps accepting as the job's (SERVER_BYPASS_TOKEN_PREVIOUS) until every caller has the new one; remove it to end the rotation.",
    "<old token>",
    "",
    true,
  ),
  str("adminToken", "Secret. The admin token (ADMIN_TOKEN), the only one that may delete. Generated when empty.", "<token>", "", true),
  str("agentToken", "Secret. The backup agent's token (BACKUP_AGENT_TOKEN), shared by the app service and the cron job. Generated when empty.", "<token>", "", true),
  bool("renderEnabled", "Create the Render cron jobs and set the agent's variables on the app service (needs RENDER_API_KEY). Previews never do.", true),
  str("renderOwnerId", "Render workspace (owner) id, `tea-...` or `usr-...` (GET /v1/owners). Required when renderEnabled.", "tea-xxxxxxxxxxxxxxxxxxxx"),
  str("renderRegion", "Render region of the cron jobs; must be the app service's, for the private network (frankfurt, ohio, oregon, singapore, virginia).", "oregon", "oregon"),
  str("renderPlan", "Render plan of the cron jobs (starter, standard, pro, pro_plus, pro_max, pro_ultra).", "starter", "starter"),
  str(
    "renderRepo",
    "Git repository Render attaches the cron jobs to (this repository), https URL without branch; they run only the installed `renderPackage`. Required when renderEnabled.",
    "https://github.com/you/r2-sqlite-backup",
  ),
  str(
    "renderPackage",
    "What the cron jobs `npm install` as an app would, a registry version (`r2-sqlite-backup@0.1.0`) or the https URL of a tarball made by `npm pack`. Empty = this program's own name@version.",
    "https://example.com/r2-sqlite-backup-0.1.0.tgz",
  ),
  str("renderBranch", "Branch the cron jobs build.", "main", "main"),
  str(
    "renderAppServiceId",
    "Id (`srv-...`) of the existing Render service that owns the database disk and runs the agent. Required when renderEnabled.",
    "srv-xxxxxxxxxxxxxxxxxxxx",
  ),
  str(
    "agentUrl",
    "The agent's URL on Render's private network, e.g. http://my-app:8788; the app runs `r2backup agent --listen 0.0.0.0:8788`. Required when renderEnabled.",
    "http://my-app:8788",
  ),
  str("backupSchedule", "Cron schedule (UTC) of the backup cron job.", "0 */6 * * *", "0 */6 * * *"),
  str("drillSchedule", "Cron schedule (UTC) of the monthly restore drill.", "0 4 1 * *", "0 4 1 * *"),
  bool("monitoringEnabled", "Create the CloudWatch alarms, SNS topic, metrics user and dashboard (needs AWS credentials). Previews never do.", false),
  { key: "alarmEmails", type: "array", description: "Email addresses subscribed to the alarm topic (each must confirm by mail).", default: [], example: '["ops@example.com"]' },
  str("metricsNamespace", "CloudWatch namespace of the job's metrics; the metrics user may put metrics only here.", DEFAULT_METRICS_NAMESPACE, DEFAULT_METRICS_NAMESPACE),
  str("awsRegion", "AWS region of the monitoring resources.", "us-east-1", "us-east-1"),
];

export const R2_LOCATIONS = ["apac", "eeur", "enam", "weur", "wnam", "oc"] as const;
export const R2_JURISDICTIONS = ["default", "eu", "fedramp"] as const;
/** The `failover` modes (docs/design.md, "Replica and failover"). */
export const FAILOVER_MODES = ["off", "replica", "replica-only"] as const;
export type FailoverMode = (typeof FAILOVER_MODES)[number];
export const RENDER_REGIONS = ["frankfurt", "ohio", "oregon", "singapore", "virginia"] as const;
export const RENDER_PLANS = ["starter", "standard", "pro", "pro_plus", "pro_max", "pro_ultra"] as const;

/** The validated configuration of one stack. Secrets stay `Output`s, marked secret. */
export interface StackConfig {
  project: string;
  stack: string;
  preview: boolean;
  cloudflare: { accountId: string; zoneId?: string; hostname?: string; workersDevSubdomain?: string };
  storage: { location?: string; jurisdiction: string; replicaLocation?: string; retention: RetentionPolicy; failover: FailoverMode; replicaMaxLagHours: number };
  worker: { maxBackupAgeHours: number; freshnessCheckSchedule: string; versions?: { stableVersionId?: string; rolloutPercent: number } };
  /** Undefined when not configured: the program generates tokens, and binds no webhook. */
  secrets: {
    serverToken?: pulumi.Output<string>;
    serverTokenPrevious?: pulumi.Output<string>;
    adminToken?: pulumi.Output<string>;
    agentToken?: pulumi.Output<string>;
    alertWebhookUrl?: pulumi.Output<string>;
  };
  render?: RenderConfig;
  monitoring?: MonitoringConfig;
}

export interface RenderConfig {
  ownerId: string;
  region: string;
  plan: string;
  repo: string;
  branch: string;
  /** The npm spec of the package the cron jobs install (`renderPackage`, or this program's name@version). */
  package: string;
  appServiceId: string;
  agentUrl: string;
  backupSchedule: string;
  drillSchedule: string;
}

export interface MonitoringConfig {
  namespace: string;
  awsRegion: string;
  alarmEmails: string[];
}

/** Where raw values come from: the Pulumi runtime, a stack file (for `npm run plan`), or a test. */
export interface ConfigReader {
  /** The raw string value of `<project>:<key>`, or undefined. */
  get(key: string): string | undefined;
  /** Whether the value was set as a secret (`--secret`). */
  isSecret(key: string): boolean;
  /** Every key the stack sets, in every namespace (`<namespace>:<key>`), to find misspelt ones. */
  allKeys?(): string[];
}

/** Edit distance, capped: how far a misspelt key or namespace is from a real one. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/**
 * Keys the program would silently ignore: an unknown key in its namespace (`lockdays` for `lockDays` would keep
 * the default lock) and a namespace one or two letters off its own. Each with the closest real key.
 */
export function unknownConfigKeys(keys: readonly string[], project: string = PROJECT): string[] {
  const known = CONFIG_KEYS.map((k) => k.key);
  const problems: string[] = [];
  for (const full of keys) {
    const at = full.indexOf(":");
    const namespace = full.slice(0, at);
    const key = full.slice(at + 1);
    const closest = [...known].sort((a, b) => distance(key, a) - distance(key, b))[0]!;
    const guess = distance(key, closest) <= 3 ? ` (did you mean ${project}:${closest}?)` : "";
    if (namespace === project && !known.includes(key)) problems.push(`${full} is not a setting of this program${guess}`);
    else if (namespace !== project && distance(namespace, project) <= 2) problems.push(`${full} is in namespace '${namespace}', not '${project}'${guess}`);
  }
  return problems;
}

/** Reads the running program's config (`pulumi.runtime.getConfig` does not warn on secrets, `Config.get` does). */
export function runtimeConfigReader(project: string = PROJECT): ConfigReader {
  return {
    get: (key) => pulumi.runtime.getConfig(`${project}:${key}`),
    allKeys: () => Object.keys(pulumi.runtime.allConfig()),
    // `isConfigSecret` is marked internal in the typings; the CLI passes the secret keys it uses.
    isSecret: (key) => (pulumi.runtime as unknown as { isConfigSecret(k: string): boolean }).isConfigSecret(`${project}:${key}`),
  };
}

/**
 * Preview stacks inherit the non-secret values of another stack (the dev stack's file) for keys they do
 * not set, so `pr-<n>` needs no stack file of its own. Secrets are never inherited.
 */
export function withFallback(reader: ConfigReader, fallback: Record<string, string>): ConfigReader {
  return {
    get: (key) => {
      const own = reader.get(key);
      if (own !== undefined && own !== "") return own;
      const spec = CONFIG_KEYS.find((k) => k.key === key);
      return spec?.secret ? own : (fallback[key] ?? own);
    },
    isSecret: (key) => reader.isSecret(key),
    ...(reader.allKeys ? { allKeys: reader.allKeys } : {}),
  };
}

/** A URL setting as an error may print it: no credentials, no query; of another scheme, the scheme only. */
export function shownUrl(value: string): string {
  if (!URL.canParse(value)) return value.includes("@") ? "(a value with '@', not shown)" : value;
  const url = new URL(value);
  if (url.protocol !== "http:" && url.protocol !== "https:") return `${url.protocol}...`;
  return `${url.protocol}//${url.host}${url.pathname}${url.search ? "?..." : ""}`;
}

/**
 * Why a URL setting may not stay in plain config, or undefined: credentials (`user:password@`) or a query
 * parameter named like a secret (`?token=`, `?sig=`, `X-Amz-Signature`) would be stored in the stack file, the
 * stack's state and Render's service settings, and printed by `plan`.
 */
export function urlSecretProblem(value: string): string | undefined {
  if (!URL.canParse(value)) return undefined;
  const url = new URL(value);
  // `user:secret@host` without a scheme parses as scheme `user:`: an '@' in any other scheme counts too.
  const other = url.protocol !== "http:" && url.protocol !== "https:";
  if (url.username || url.password || (other && value.includes("@"))) {
    return "carries credentials (user:password@), which would be stored in plain config, the stack's state and Render's settings: remove them";
  }
  // Whole words only (`sig`, `api_key`, `X-Amz-Signature`; not `design` or `monkey`).
  const named = [...url.searchParams.keys()].find(
    (k) => /(^|[-_.])(token|sig|signature|secret|password|passwd|key|apikey|credential|credentials|auth)([-_.]|$)/i.test(k) || /^x-amz-/i.test(k),
  );
  if (named) return `carries a secret-like query parameter '${named}', which would be stored in plain config, the stack's state and Render's settings: use a URL without it`;
  return undefined;
}

/** The config key that sets each field of the retention policy. */
const RETENTION_KEYS: Record<keyof RetentionPolicy, string> = {
  fullDays: "retentionFullDays",
  incrementalDays: "retentionIncrementalDays",
  dailyInfrequentAccessDays: "retentionDailyInfrequentAccessDays",
  dailyDays: "retentionDailyDays",
  drillDays: "retentionDrillDays",
  abortMultipartDays: "retentionAbortMultipartDays",
  lockDays: "lockDays",
};

/** When the cron job's `auto` run takes a full (it passes no --full-every-hours). */
const FULL_DUE_MINUTES = fullDueHours(DEFAULT_FULL_EVERY_HOURS) * 60;

/** Ports Render reserves on its private network (10000 is the public web port): the agent must use another. */
export const RENDER_RESERVED_PORTS = [10000, 18012, 18013, 19099] as const;

/**
 * Why the cron job could not reach an agent at this URL, or undefined. The cron job runs on another
 * machine: it reaches the app only by its private-network host name, over plain http, on a port the agent
 * listens on with `--listen 0.0.0.0:<port>` (the agent's default 127.0.0.1 is unreachable from there).
 */
export function agentUrlProblem(agentUrl: string): string | undefined {
  if (!URL.canParse(agentUrl)) return "must be a URL like http://my-app:8788";
  const url = new URL(agentUrl);
  if (url.protocol !== "http:") return "must be http:// (Render's private network is not TLS; the agent serves plain http)";
  if (/^(localhost|127\.[0-9.]+|\[::1\]|0\.0\.0\.0)$/.test(url.hostname))
    return "must name the app service on Render's private network (http://<service-host>:8788), not this machine: the cron job runs elsewhere";
  if (url.port === "") return "must carry the agent's port, e.g. http://my-app:8788 (the app runs `r2backup agent --listen 0.0.0.0:8788`)";
  if ((RENDER_RESERVED_PORTS as readonly number[]).includes(Number(url.port)))
    return `must not use port ${url.port}: Render reserves ${RENDER_RESERVED_PORTS.join(", ")} on the private network`;
  return undefined;
}

/** The exact command that sets a key on a stack. */
export function configSetCommand(key: string, stack: string): string {
  const spec = CONFIG_KEYS.find((k) => k.key === key);
  const value = spec?.example ?? "<value>";
  const quoted = /^[A-Za-z0-9_./:@-]+$/.test(value) ? value : `'${value}'`;
  return `pulumi config set ${spec?.secret ? "--secret " : ""}${PROJECT}:${key} ${quoted} --stack ${stack}`;
}

/**
 * Loads and validates a stack's config. Every problem is reported at once, each missing key with the exact
 * `pulumi config set` line that fixes it. Preview stacks (`pr-<n>`) get no lock, no Render jobs, no
 * monitoring, no replica and no failover, whatever the config says: they must not touch anything production uses.
 */
export function loadStackConfig(stack: string, reader: ConfigReader = runtimeConfigReader()): StackConfig {
  const badName = stackNameProblem(stack);
  if (badName) throw new InfraError("load", "stack", stack, badName, "create a stack with such a name (pulumi stack init <name>) and move its config there");
  const preview = isPreviewStack(stack);
  const missing: string[] = [];
  const problems: string[] = [];
  const spec = (key: string) => {
    const s = CONFIG_KEYS.find((k) => k.key === key);
    if (!s) throw new InfraError("read", "config key", key, "is not declared in CONFIG_KEYS", "declare it in infra/config.ts and Pulumi.yaml");
    return s;
  };
  const raw = (key: string): string | undefined => {
    const s = spec(key);
    const v = reader.get(key);
    if (v === undefined || v === "") return typeof s.default === "string" ? (s.default === "" ? undefined : s.default) : undefined;
    return v;
  };
  const text = (key: string): string | undefined => raw(key)?.trim() || undefined;
  /** A string key with a non-empty default in CONFIG_KEYS: never undefined. */
  const withDefault = (key: string): string => text(key) ?? String(spec(key).default);
  const required = (key: string): string => {
    const v = text(key);
    if (v === undefined) missing.push(key);
    return v ?? "";
  };
  const integer = (key: string): number => {
    const v = raw(key);
    const d = spec(key).default as number;
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isSafeInteger(n)) {
      problems.push(`${key} must be a whole number, got '${v}'`);
      return d;
    }
    return n;
  };
  const boolean = (key: string): boolean => {
    const v = raw(key);
    if (v === undefined) return spec(key).default as boolean;
    if (v !== "true" && v !== "false") problems.push(`${key} must be true or false, got '${v}'`);
    return v === "true";
  };
  const list = (key: string): string[] => {
    const v = raw(key);
    if (v === undefined) return [];
    try {
      const parsed: unknown = JSON.parse(v);
      if (Array.isArray(parsed) && parsed.every((x) => typeof x === "string")) return parsed;
    } catch {
      // fall through: reported below
    }
    problems.push(`${key} must be a list of strings, e.g. ${spec(key).example}`);
    return [];
  };
  const secret = (key: string): pulumi.Output<string> | undefined => {
    const v = reader.get(key);
    if (v === undefined || v === "") return undefined;
    if (!reader.isSecret(key)) problems.push(`${key} is a secret but is stored in plain text: set it again with \`${configSetCommand(key, stack)}\``);
    return pulumi.secret(v);
  };
  const oneOf = (key: string, value: string | undefined, allowed: readonly string[]) => {
    if (value !== undefined && !allowed.includes(value)) problems.push(`${key} must be one of ${allowed.join(", ")}, got '${value}'`);
  };
  const hex32 = (key: string, value: string) => {
    if (value !== "" && !/^[0-9a-f]{32}$/.test(value)) problems.push(`${key} must be 32 lowercase hex characters, got '${value}'`);
  };
  /** Checks a schedule; its runs (infra/cron.ts `runMinutes`) when it can be used. */
  const cron = (key: string, value: string, cloudflare = false): number[] | undefined => {
    // Cloudflare's cron triggers also take L, W and # (last day, weekday, nth weekday): left to Cloudflare.
    if (cloudflare && /[LW#]/i.test(value)) return undefined;
    const checked = checkCron(value);
    if ("problem" in checked) problems.push(`${key} ${checked.problem}, got '${value}'`);
    return "runs" in checked ? checked.runs : undefined;
  };

  const accountId = required("cloudflareAccountId");
  hex32("cloudflareAccountId", accountId);
  const cloudflare: StackConfig["cloudflare"] = { accountId };
  if (preview) {
    // Looked up from the account at deploy time when not set (infra/workers-subdomain.ts).
    const sub = text("workersDevSubdomain");
    if (sub !== undefined) cloudflare.workersDevSubdomain = sub;
  } else {
    cloudflare.zoneId = required("zoneId");
    hex32("zoneId", cloudflare.zoneId);
    cloudflare.hostname = required("hostname");
    if (cloudflare.hostname !== "" && !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i.test(cloudflare.hostname)) {
      problems.push(`hostname must be a bare hostname like backups.example.com (no scheme, no path), got '${cloudflare.hostname}'`);
    }
    const sub = text("workersDevSubdomain");
    if (sub !== undefined) cloudflare.workersDevSubdomain = sub;
  }

  const location = text("bucketLocation");
  oneOf("bucketLocation", location, R2_LOCATIONS);
  const jurisdiction = withDefault("bucketJurisdiction");
  oneOf("bucketJurisdiction", jurisdiction, R2_JURISDICTIONS);
  const replicaLocation = preview ? undefined : text("replicaLocation");
  oneOf("replicaLocation", replicaLocation, R2_LOCATIONS);
  if (replicaLocation !== undefined && replicaLocation === location)
    problems.push(`replicaLocation must differ from bucketLocation ('${location}'): the replica is for geographic redundancy`);
  // A preview inherits the dev stack's values: a failover of dev must not carry over to it (it has no replica).
  const failover = preview ? "off" : (withDefault("failover") as FailoverMode);
  oneOf("failover", failover, FAILOVER_MODES);
  if (failover !== "off" && replicaLocation === undefined) problems.push(`failover '${failover}' needs a replica bucket: set replicaLocation (previews have none)`);
  const replicaMaxLagHours = integer("replicaMaxLagHours");
  if (replicaMaxLagHours < 1) problems.push(`replicaMaxLagHours must be at least 1, got ${replicaMaxLagHours}`);

  let retention: RetentionPolicy = DEFAULT_RETENTION;
  // docs/design.md, Retention: preview stacks get no lock, so they can be destroyed.
  const policy = Object.fromEntries(
    Object.entries(RETENTION_KEYS).map(([field, key]) => [field, preview && field === "lockDays" ? 0 : integer(key)]),
  ) as unknown as RetentionPolicy;
  try {
    retention = validateRetentionPolicy(policy);
  } catch (error) {
    // The policy's reason in the stack file's words: each field by the config key that sets it.
    const reason = error instanceof ContractError ? error.reason : (error as Error).message;
    const fields = new RegExp(`\\b(${Object.keys(RETENTION_KEYS).join("|")})\\b`, "g");
    problems.push(`retention: ${reason.replace(fields, (f) => RETENTION_KEYS[f as keyof RetentionPolicy])}`);
  }

  const maxBackupAgeHours = integer("maxBackupAgeHours");
  if (maxBackupAgeHours < 1) problems.push(`maxBackupAgeHours must be at least 1, got ${maxBackupAgeHours}`);
  const freshnessCheckSchedule = withDefault("freshnessCheckSchedule");
  cron("freshnessCheckSchedule", freshnessCheckSchedule, true);

  const worker: StackConfig["worker"] = { maxBackupAgeHours, freshnessCheckSchedule };
  const rolloutPercent = integer("workerRolloutPercent");
  const stableVersionId = text("workerStableVersionId");
  if (rolloutPercent < 0 || rolloutPercent > 100) problems.push(`workerRolloutPercent must be 0 to 100, got ${rolloutPercent}`);
  if (boolean("workerVersions")) {
    if (rolloutPercent < 100 && stableVersionId === undefined)
      problems.push(`workerRolloutPercent ${rolloutPercent} needs workerStableVersionId (the version that keeps the rest of the traffic)`);
    worker.versions = { rolloutPercent, ...(stableVersionId !== undefined ? { stableVersionId } : {}) };
  } else if (stableVersionId !== undefined || rolloutPercent !== 100) {
    problems.push("workerStableVersionId and workerRolloutPercent need workerVersions: true");
  }

  const secrets: StackConfig["secrets"] = {};
  for (const key of ["serverToken", "serverTokenPrevious", "adminToken", "agentToken", "alertWebhookUrl"] as const) {
    const value = secret(key);
    if (value !== undefined) secrets[key] = value;
  }
  // A token set by hand: as long as the agent takes (job/commands/agent.ts), never printed.
  for (const key of ["serverToken", "adminToken", "agentToken"] as const) {
    const v = reader.get(key);
    if (v !== undefined && v !== "" && v.length < MIN_TOKEN_LENGTH) {
      problems.push(`${key} is ${v.length} characters: use at least ${MIN_TOKEN_LENGTH} random ones (e.g. openssl rand -hex 32), or unset it and let up generate one`);
    }
  }

  let render: RenderConfig | undefined;
  let backupRuns: number[] | undefined;
  if (!preview && boolean("renderEnabled")) {
    render = {
      ownerId: required("renderOwnerId"),
      region: withDefault("renderRegion"),
      plan: withDefault("renderPlan"),
      repo: required("renderRepo"),
      branch: withDefault("renderBranch"),
      package: withDefault("renderPackage") || OWN_PACKAGE_SPEC,
      appServiceId: required("renderAppServiceId"),
      agentUrl: required("agentUrl"),
      backupSchedule: withDefault("backupSchedule"),
      drillSchedule: withDefault("drillSchedule"),
    };
    oneOf("renderRegion", render.region, RENDER_REGIONS);
    oneOf("renderPlan", render.plan, RENDER_PLANS);
    if (render.ownerId !== "" && !/^(tea|usr)-[a-z0-9]+$/.test(render.ownerId)) problems.push(`renderOwnerId must look like tea-... or usr-..., got '${render.ownerId}'`);
    if (render.appServiceId !== "" && !/^srv-[a-z0-9]+$/.test(render.appServiceId)) problems.push(`renderAppServiceId must look like srv-..., got '${render.appServiceId}'`);
    if (render.repo !== "" && !/^https:\/\/\S+$/.test(render.repo)) problems.push(`renderRepo must be an https URL, got '${shownUrl(render.repo)}'`);
    // The spec goes into a shell command (npm install <spec>): one word, no quotes.
    if (!/^[^\s'"`$\\;|&<>()]+$/.test(render.package))
      problems.push(`renderPackage must be one npm spec (name@version or an https tarball URL) without spaces, quotes or shell characters, got '${shownUrl(render.package)}'`);
    for (const [key, value] of [
      ["renderRepo", render.repo],
      ["renderPackage", render.package],
      ["agentUrl", render.agentUrl],
    ] as const) {
      const problem = urlSecretProblem(value);
      if (problem) problems.push(`${key} ${problem}${key === "renderRepo" ? " (Render reaches a private repository through its GitHub app)" : ""}`);
    }
    if (render.agentUrl !== "") {
      const problem = agentUrlProblem(render.agentUrl);
      if (problem) problems.push(`agentUrl ${problem}, got '${shownUrl(render.agentUrl)}'`);
    }
    backupRuns = cron("backupSchedule", render.backupSchedule);
    cron("drillSchedule", render.drillSchedule);
  }

  let monitoring: MonitoringConfig | undefined;
  if (!preview && boolean("monitoringEnabled")) {
    monitoring = {
      namespace: withDefault("metricsNamespace"),
      awsRegion: withDefault("awsRegion"),
      alarmEmails: list("alarmEmails"),
    };
    for (const email of monitoring.alarmEmails) if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) problems.push(`alarmEmails: '${email}' is not an email address`);
    if (!/^[A-Za-z0-9._/#:-]{1,255}$/.test(monitoring.namespace) || monitoring.namespace.startsWith("AWS/"))
      problems.push(`metricsNamespace '${monitoring.namespace}' is not a valid custom CloudWatch namespace`);
  }

  // The backup schedule against what watches it: the Worker alerts on a full backup older than maxBackupAgeHours
  // (the cron job's `auto` takes a full on the first run once the last is due, job/backup.ts chooseKind), the
  // alarm on 7 clock hours in a row without a successful backup.
  if (render && backupRuns) {
    const fullAgeHours = longestFullAgeMinutes(backupRuns, FULL_DUE_MINUTES) / 60;
    if (fullAgeHours >= maxBackupAgeHours) {
      problems.push(
        `backupSchedule '${render.backupSchedule}' lets the newest full backup get ${fullAgeHours.toFixed(1)} h old (a run takes a full once the last is ${FULL_DUE_MINUTES / 60} h old), and the freshness check alerts at maxBackupAgeHours (${maxBackupAgeHours} h): use a run every 6 h or every hour (e.g. 0 */6 * * *), or raise maxBackupAgeHours`,
      );
    }
    const emptyHours = longestEmptyHours(backupRuns);
    if (monitoring && emptyHours >= 7) {
      problems.push(
        `backupSchedule '${render.backupSchedule}' leaves up to ${emptyHours} clock hours in a row without a backup, and the no-successful-backup alarm fires at 7: run it at least every 6 h`,
      );
    }
  }

  problems.push(...unknownConfigKeys(reader.allKeys?.() ?? []));
  if (missing.length > 0 || problems.length > 0) {
    const reasons = [...missing.map((k) => `missing ${PROJECT}:${k} (${spec(k).description})`), ...problems];
    const hint =
      missing.length > 0 ? `run, with your values:\n  ${missing.map((k) => configSetCommand(k, stack)).join("\n  ")}\n` : "fix the values with `pulumi config set` and run again";
    throw new InfraError("configure", "stack", stack, reasons.join("; "), hint);
  }

  const storage: StackConfig["storage"] = { jurisdiction, retention, failover, replicaMaxLagHours };
  if (location !== undefined) storage.location = location;
  if (replicaLocation !== undefined) storage.replicaLocation = replicaLocation;
  const config: StackConfig = { project: PROJECT, stack, preview, cloudflare, storage, worker, secrets };
  if (render) config.render = render;
  if (monitoring) config.monitoring = monitoring;
  return config;
}
