import * as pulumi from "@pulumi/pulumi";

/*
 * Render has no Pulumi provider (docs/design.md fact 6): these dynamic providers drive its REST API with undici.
 *
 * Serialization rules (the provider object is serialized into the stack state as code):
 * - nothing here may capture a top-level import: undici is required inside each call, through
 *   `process.getBuiltinModule`, and the helpers below use only globals;
 * - the API key is read from RENDER_API_KEY inside each call, never captured, so it is never in the state;
 * - RENDER_API_URL (default https://api.render.com/v1) lets tests point the provider at a local fake.
 */

/** Environment variables, as a map (the API takes `[{ key, value }]`). Always secret. */
export type EnvVars = Record<string, string>;

/** Inputs of a Render cron job (Render's `servicePOST` with `cronJobDetailsPOST`, flattened). */
export interface CronJobInputs {
  name: string;
  ownerId: string;
  region: string;
  plan: string;
  runtime: string;
  repo: string;
  branch: string;
  rootDir: string;
  schedule: string;
  buildCommand: string;
  startCommand: string;
  autoDeploy: "yes" | "no";
  envVars: EnvVars;
}

/** Outputs: the inputs plus what Render assigns. */
export interface CronJobOutputs extends CronJobInputs {
  serviceId: string;
  slug: string;
  dashboardUrl: string;
}

/** Inputs of a set of env vars on an existing service (only these keys are managed; others are left alone). */
export interface ServiceEnvVarsInputs {
  serviceId: string;
  envVars: EnvVars;
  /**
   * Keys whose old value stays valid while it is rotated: on a change, the old value is set as
   * `<KEY>_PREVIOUS` (the agent accepts both) until a `RenderRotationCleanup` removes it.
   */
  keepPrevious: string[];
}

/** The variable that holds a rotated key's old value during the switch. */
export function previousKey(key: string): string {
  return `${key}_PREVIOUS`;
}

/** Fields whose change Render cannot PATCH (absent from `servicePATCH`): a change means delete and create. */
export const CRON_JOB_IMMUTABLE_FIELDS = ["ownerId", "region", "runtime"] as const;
const CRON_JOB_FIELDS = ["name", "ownerId", "region", "plan", "runtime", "repo", "branch", "rootDir", "schedule", "buildCommand", "startCommand", "autoDeploy", "envVars"] as const;

/** The preview placeholder of an unknown input (pulumi/pulumi#6310): always a change, never validated. */
const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

interface ApiResult {
  status: number;
  json: any;
}

/**
 * One Render API call. Retries 429 (honouring Retry-After) for every method, since a throttled request was
 * not processed, and 502/503/504 for idempotent ones only, so a `POST /services` is never repeated blindly.
 * 404 is returned, not thrown: callers decide what "gone" means. Errors never carry headers or the key.
 */
export async function renderRequest(method: string, path: string, body?: unknown): Promise<ApiResult> {
  const { createRequire } = process.getBuiltinModule("node:module");
  const undici = createRequire(`${process.cwd()}/`)("undici");
  const key = process.env.RENDER_API_KEY;
  if (!key) {
    throw new Error(`${method} render ${path}: RENDER_API_KEY is not set (create an API key in Render's Account Settings and export RENDER_API_KEY before pulumi up)`);
  }
  const base = (process.env.RENDER_API_URL || "https://api.render.com/v1").replace(/\/+$/, "");
  const maxAttempts = Number(process.env.RENDER_MAX_ATTEMPTS || 6);
  const idempotent = method !== "POST" && method !== "PATCH";
  for (let attempt = 1; ; attempt++) {
    const res = await undici.request(base + path, {
      method,
      headers: { authorization: `Bearer ${key}`, accept: "application/json", ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    // Always consume the body: an unread body stalls undici's connection pool.
    const text: string = await res.body.text();
    const retryable = res.statusCode === 429 || (idempotent && [502, 503, 504].includes(res.statusCode));
    if (retryable && attempt < maxAttempts) {
      // Render's 429 names when its window resets (Ratelimit-Reset); Retry-After, when present, wins.
      const retryAfter = res.headers["retry-after"] ?? (res.statusCode === 429 ? resetAsRetryAfter(res.headers["ratelimit-reset"]) : undefined);
      await new Promise((resolve) => setTimeout(resolve, retryDelayMs(retryAfter, attempt)));
      continue;
    }
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (res.statusCode === 404 || res.statusCode < 400) return { status: res.statusCode, json };
    const message = json && typeof json.message === "string" ? json.message : text.slice(0, 200);
    const hint =
      res.statusCode === 401
        ? " (check RENDER_API_KEY)"
        : res.statusCode === 429
          ? ` (rate limited after ${attempt} attempts; Render allows 20 service creations per hour: wait and run again)`
          : res.statusCode === 409
            ? " (a service with this name probably exists in the workspace)"
            : "";
    throw new Error(`${method} render ${path}: ${res.statusCode} ${message}${hint}`);
  }
}

/**
 * `Ratelimit-Reset` as a Retry-After value: delta-seconds (the IETF RateLimit header draft, which Render's
 * `Ratelimit-*` headers follow), or, for a value that can only be an epoch time, the seconds until it.
 */
export function resetAsRetryAfter(reset: string | string[] | undefined): string | undefined {
  const header = Array.isArray(reset) ? reset[0] : reset;
  if (header === undefined || header.trim() === "") return undefined;
  const n = Number(header);
  if (!Number.isFinite(n) || n < 0) return undefined;
  return String(n > 1_000_000_000 ? Math.max(0, n - Date.now() / 1000) : n);
}

/** Milliseconds to wait before retry `attempt`: Retry-After (seconds or an HTTP date) when given, else backoff with jitter; at most 60 s. */
export function retryDelayMs(retryAfter: string | string[] | undefined, attempt: number): number {
  const header = Array.isArray(retryAfter) ? retryAfter[0] : retryAfter;
  let ms: number | undefined;
  if (header !== undefined && header.trim() !== "") {
    const seconds = Number(header);
    ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  }
  if (ms === undefined || !Number.isFinite(ms)) ms = Math.min(30_000, 500 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
  return Math.max(0, Math.min(60_000, ms));
}

/**
 * Every item of a cursor-paged list (`[{ cursor, <field>: {...} }]`): `limit=100`, the next page starts at
 * the last item's cursor; stops on an empty or short page (Render API ref, Pagination).
 */
export async function renderList(path: string, field: string): Promise<any[]> {
  const items: any[] = [];
  const limit = 100;
  let cursor: string | undefined;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const res = await renderRequest("GET", `${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    const page: any[] = Array.isArray(res.json) ? res.json : [];
    for (const entry of page) if (entry && entry[field] !== undefined) items.push(entry[field]);
    if (page.length < limit) return items;
    const next = page[page.length - 1]?.cursor;
    if (!next || next === cursor) return items;
    cursor = next;
  }
}

/** Deploy statuses after which nothing more happens (Render's `deployStatus`). */
const DEPLOY_FAILED = ["build_failed", "update_failed", "canceled", "pre_deploy_failed", "deactivated"];

/**
 * Waits until a deploy is live: env vars reach a service only through a deploy, and a cron run or an agent
 * started before it still holds the old values. Polls `GET /services/{id}/deploys/{deployId}` every
 * RENDER_POLL_MS (default 5 s) for at most RENDER_DEPLOY_TIMEOUT_SECONDS (default 1800).
 */
export async function waitForDeploy(serviceId: string, deployId: string, what: string): Promise<void> {
  const pollMs = Number(process.env.RENDER_POLL_MS || 5000);
  const deadline = Date.now() + Number(process.env.RENDER_DEPLOY_TIMEOUT_SECONDS || 1800) * 1000;
  for (;;) {
    const res = await renderRequest("GET", `/services/${encodeURIComponent(serviceId)}/deploys/${encodeURIComponent(deployId)}`);
    const status = String(res.json?.status ?? (res.status === 404 ? "missing" : "unknown"));
    if (status === "live") return;
    if (DEPLOY_FAILED.includes(status) || status === "missing") {
      throw new Error(
        `deploy render service '${serviceId}' (${what}): deploy '${deployId}' ended '${status}' (see the service's Events in the Render dashboard, fix it, and run pulumi up again)`,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(
        `deploy render service '${serviceId}' (${what}): deploy '${deployId}' is still '${status}' (raise RENDER_DEPLOY_TIMEOUT_SECONDS or wait for it, then run pulumi up again)`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** Starts a deploy of a service (`POST /services/{id}/deploys`) and waits until it is live. */
export async function deployService(serviceId: string, what: string): Promise<void> {
  const res = await renderRequest("POST", `/services/${encodeURIComponent(serviceId)}/deploys`, { clearCache: "do_not_clear" });
  if (res.status === 404) throw new Error(`deploy render service '${serviceId}' (${what}): 404 service not found`);
  const deployId = res.json?.id;
  if (!deployId) throw new Error(`deploy render service '${serviceId}' (${what}): the API answered ${res.status} without a deploy id`);
  await waitForDeploy(serviceId, String(deployId), what);
}

/** `{ k: v }` to Render's `[{ key, value }]`, in key order. */
export function envVarList(envVars: EnvVars): { key: string; value: string }[] {
  return Object.keys(envVars)
    .sort()
    .map((key) => ({ key, value: envVars[key] as string }));
}

/** The `POST /services` body of a cron job (Render's `servicePOST`). */
export function cronJobCreateBody(i: CronJobInputs): Record<string, unknown> {
  return {
    type: "cron_job",
    name: i.name,
    ownerId: i.ownerId,
    repo: i.repo,
    branch: i.branch,
    rootDir: i.rootDir,
    autoDeploy: i.autoDeploy,
    envVars: envVarList(i.envVars),
    serviceDetails: {
      runtime: i.runtime,
      schedule: i.schedule,
      plan: i.plan,
      region: i.region,
      envSpecificDetails: { buildCommand: i.buildCommand, startCommand: i.startCommand },
    },
  };
}

/** The `PATCH /services/{id}` body (Render's `servicePATCH`: no ownerId, region, type or runtime). */
export function cronJobPatchBody(i: CronJobInputs): Record<string, unknown> {
  return {
    name: i.name,
    repo: i.repo,
    branch: i.branch,
    rootDir: i.rootDir,
    autoDeploy: i.autoDeploy,
    serviceDetails: {
      schedule: i.schedule,
      plan: i.plan,
      envSpecificDetails: { buildCommand: i.buildCommand, startCommand: i.startCommand },
    },
  };
}

/** Inputs without the serialized provider, which every inputs object carries and no body may contain. */
function cronJobInputs(raw: any): CronJobInputs {
  const { __provider, serviceId, slug, dashboardUrl, ...rest } = raw ?? {};
  return rest as CronJobInputs;
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function cronJobOutputs(i: CronJobInputs, service: any): CronJobOutputs {
  return { ...i, serviceId: String(service.id), slug: String(service.slug ?? ""), dashboardUrl: String(service.dashboardUrl ?? "") };
}

/** Applies inputs to an existing cron job: PATCH, env vars (replaced as a whole: the job is ours), deploy. */
async function updateCronJob(id: string, i: CronJobInputs, envChanged: boolean): Promise<any> {
  const patched = await renderRequest("PATCH", `/services/${encodeURIComponent(id)}`, cronJobPatchBody(i));
  if (patched.status === 404) throw new Error(`update render cron job '${id}': 404 not found (run \`pulumi refresh\` to forget it, then \`pulumi up\`)`);
  if (envChanged) await renderRequest("PUT", `/services/${encodeURIComponent(id)}/env-vars`, envVarList(i.envVars));
  // Live before `up` goes on: a run started on the old build would still send the old token.
  await deployService(id, `cron job '${i.name}'`);
  return patched.json;
}

/**
 * The cron-job provider. `create` adopts a job of the same name in the workspace (names are unique there,
 * and a lost state must not leave an orphan that blocks the next create); an owner, region or runtime
 * change replaces the job, deleting first so the name is free.
 */
export const cronJobProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: any, news: any): Promise<pulumi.dynamic.DiffResult> {
    const o = cronJobInputs(olds);
    const n = cronJobInputs(news);
    const changed = CRON_JOB_FIELDS.filter((f) => n[f] === (UNKNOWN as unknown) || !sameValue(o[f], n[f]));
    const replaces = changed.filter((f) => (CRON_JOB_IMMUTABLE_FIELDS as readonly string[]).includes(f));
    return { changes: changed.length > 0, replaces, deleteBeforeReplace: true };
  },

  async create(inputs: any): Promise<pulumi.dynamic.CreateResult> {
    const i = cronJobInputs(inputs);
    const query = `/services?name=${encodeURIComponent(i.name)}&type=cron_job&ownerId=${encodeURIComponent(i.ownerId)}`;
    const existing = (await renderList(query, "service")).find((s) => s && s.name === i.name);
    if (existing) {
      const region = existing.serviceDetails?.region;
      if (region && region !== i.region) {
        throw new Error(
          `create render cron job '${i.name}': one with this name exists in region '${region}', not '${i.region}' (delete it in the Render dashboard or change renderRegion)`,
        );
      }
      const service = await updateCronJob(existing.id, i, true);
      return { id: existing.id, outs: cronJobOutputs(i, service ?? existing) };
    }
    const created = await renderRequest("POST", "/services", cronJobCreateBody(i));
    const service = created.json?.service;
    if (!service?.id) throw new Error(`create render cron job '${i.name}': the API answered ${created.status} without a service id`);
    // Creating starts the first deploy; a run triggered before it is live has nothing to run.
    if (created.json?.deployId) await waitForDeploy(service.id, String(created.json.deployId), `cron job '${i.name}'`);
    return { id: service.id, outs: cronJobOutputs(i, service) };
  },

  async update(id: string, olds: any, news: any): Promise<pulumi.dynamic.UpdateResult> {
    const o = cronJobInputs(olds);
    const n = cronJobInputs(news);
    const service = await updateCronJob(id, n, !sameValue(o.envVars, n.envVars));
    return { outs: cronJobOutputs(n, service ?? { id, slug: olds?.slug, dashboardUrl: olds?.dashboardUrl }) };
  },

  async delete(id: string): Promise<void> {
    // 404: already gone, which is what delete wants.
    await renderRequest("DELETE", `/services/${encodeURIComponent(id)}`);
  },

  async read(id: string, props: any): Promise<pulumi.dynamic.ReadResult> {
    const res = await renderRequest("GET", `/services/${encodeURIComponent(id)}`);
    if (res.status === 404) return { id: "", props: {} };
    const s = res.json ?? {};
    const d = s.serviceDetails ?? {};
    const e = d.envSpecificDetails ?? {};
    // Env var values are not read back: the list endpoint returns them in plain text.
    const current: any = { ...props };
    const set = (field: string, value: unknown) => {
      if (value !== undefined && value !== null) current[field] = value;
    };
    set("name", s.name);
    set("ownerId", s.ownerId);
    set("repo", s.repo);
    set("branch", s.branch);
    set("rootDir", s.rootDir);
    set("autoDeploy", s.autoDeploy);
    set("slug", s.slug);
    set("dashboardUrl", s.dashboardUrl);
    set("schedule", d.schedule);
    set("plan", d.plan);
    set("region", d.region);
    set("runtime", d.runtime);
    set("buildCommand", e.buildCommand);
    set("startCommand", e.startCommand);
    return { id, props: current };
  },
};

function envVarsInputs(raw: any): ServiceEnvVarsInputs {
  return { serviceId: String(raw?.serviceId ?? ""), envVars: { ...(raw?.envVars ?? {}) }, keepPrevious: Array.isArray(raw?.keepPrevious) ? raw.keepPrevious.map(String) : [] };
}

/** Sets one env var of a service (`PUT /services/{id}/env-vars/{key}`), never touching the others. */
async function setEnvVar(serviceId: string, key: string, value: string): Promise<void> {
  const res = await renderRequest("PUT", `/services/${encodeURIComponent(serviceId)}/env-vars/${encodeURIComponent(key)}`, { value });
  if (res.status === 404) throw new Error(`set render env var '${key}' on service '${serviceId}': 404 service not found (check renderAppServiceId)`);
}

/**
 * Env vars on a service this stack does not own (the app that runs the agent). Keys are set and deleted
 * one at a time: `PUT /services/{id}/env-vars` would replace, and so delete, every other variable of the app.
 * A change is deployed, and `up` waits until the deploy is live: Render applies variables only on a deploy,
 * and the cron job must not send a new token to an agent still running with the old one.
 */
export const serviceEnvVarsProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: any, news: any): Promise<pulumi.dynamic.DiffResult> {
    const o = envVarsInputs(olds);
    const n = envVarsInputs(news);
    const replaces = o.serviceId !== n.serviceId || n.serviceId === UNKNOWN ? ["serviceId"] : [];
    const changed = !sameValue(envVarList(o.envVars), envVarList(n.envVars)) || !sameValue(o.keepPrevious, n.keepPrevious);
    return { changes: replaces.length > 0 || changed, replaces };
  },

  async create(inputs: any): Promise<pulumi.dynamic.CreateResult> {
    const n = envVarsInputs(inputs);
    for (const { key, value } of envVarList(n.envVars)) await setEnvVar(n.serviceId, key, value);
    await deployService(n.serviceId, "the agent's variables");
    return { id: `${n.serviceId}/env-vars`, outs: n };
  },

  async update(_id: string, olds: any, news: any): Promise<pulumi.dynamic.UpdateResult> {
    const o = envVarsInputs(olds);
    const n = envVarsInputs(news);
    let changed = false;
    for (const { key, value } of envVarList(n.envVars)) {
      const old = o.envVars[key];
      if (old === value) continue;
      if (old !== undefined && n.keepPrevious.includes(key)) await setEnvVar(n.serviceId, previousKey(key), old);
      await setEnvVar(n.serviceId, key, value);
      changed = true;
    }
    for (const key of Object.keys(o.envVars)) {
      if (!(key in n.envVars)) {
        await renderRequest("DELETE", `/services/${encodeURIComponent(n.serviceId)}/env-vars/${encodeURIComponent(key)}`);
        changed = true;
      }
    }
    if (changed) await deployService(n.serviceId, "the agent's variables");
    return { outs: n };
  },

  async delete(_id: string, props: any): Promise<void> {
    const o = envVarsInputs(props);
    for (const key of Object.keys(o.envVars)) {
      await renderRequest("DELETE", `/services/${encodeURIComponent(o.serviceId)}/env-vars/${encodeURIComponent(key)}`);
    }
  },

  async read(id: string, props: any): Promise<pulumi.dynamic.ReadResult> {
    const o = envVarsInputs(props);
    const present = await renderList(`/services/${encodeURIComponent(o.serviceId)}/env-vars`, "envVar");
    const envVars: EnvVars = {};
    for (const v of present) if (v && v.key in o.envVars) envVars[v.key] = String(v.value ?? "");
    return { id, props: { serviceId: o.serviceId, envVars, keepPrevious: o.keepPrevious } };
  },
};

/** Inputs of the end of a rotation: the `<KEY>_PREVIOUS` variables to remove, and what they follow. */
export interface RotationCleanupInputs {
  serviceId: string;
  keys: string[];
  /** The rotated values (secret): a change means a rotation happened and its old values must go. */
  generation: string;
}

function cleanupInputs(raw: any): RotationCleanupInputs {
  return { serviceId: String(raw?.serviceId ?? ""), keys: Array.isArray(raw?.keys) ? raw.keys.map(String) : [], generation: String(raw?.generation ?? "") };
}

/** Deletes the `_PREVIOUS` variables (404: none were set) and deploys when one was there. */
async function removePrevious(i: RotationCleanupInputs): Promise<void> {
  let removed = false;
  for (const key of i.keys) {
    const res = await renderRequest("DELETE", `/services/${encodeURIComponent(i.serviceId)}/env-vars/${encodeURIComponent(key)}`);
    if (res.status !== 404) removed = true;
  }
  if (removed) await deployService(i.serviceId, "end of a token rotation");
}

/**
 * The last step of a rotation, run after every consumer has the new value (it depends on the cron jobs):
 * the old value stops being accepted. Created and updated only; deleting it changes nothing.
 */
export const rotationCleanupProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: any, news: any): Promise<pulumi.dynamic.DiffResult> {
    const o = cleanupInputs(olds);
    const n = cleanupInputs(news);
    return { changes: !sameValue(o, n) || n.generation === UNKNOWN, replaces: [] };
  },
  async create(inputs: any): Promise<pulumi.dynamic.CreateResult> {
    const n = cleanupInputs(inputs);
    await removePrevious(n);
    return { id: `${n.serviceId}/rotation`, outs: n };
  },
  async update(_id: string, _olds: any, news: any): Promise<pulumi.dynamic.UpdateResult> {
    const n = cleanupInputs(news);
    await removePrevious(n);
    return { outs: n };
  },
  async delete(): Promise<void> {},
};

/** Inputs of a first run of a cron job: the job, and what the run is for (named in errors). */
export interface CronJobRunInputs {
  serviceId: string;
  purpose: string;
}

/**
 * Triggers one run of a cron job (`POST /cron-jobs/{id}/runs`) and waits for its `cron_job_run_ended`
 * event (Render has no GET for a run), polling every RENDER_POLL_MS for at most RENDER_RUN_TIMEOUT_SECONDS
 * (default 3600). Throws unless the run ended `successful`.
 */
export async function runCronJobOnce(serviceId: string, purpose: string): Promise<string> {
  const started = await renderRequest("POST", `/cron-jobs/${encodeURIComponent(serviceId)}/runs`);
  if (started.status === 404) throw new Error(`run render cron job '${serviceId}' (${purpose}): 404 not found`);
  const runId = started.json?.id;
  if (!runId) throw new Error(`run render cron job '${serviceId}' (${purpose}): the API answered ${started.status} without a run id`);
  const pollMs = Number(process.env.RENDER_POLL_MS || 5000);
  const deadline = Date.now() + Number(process.env.RENDER_RUN_TIMEOUT_SECONDS || 3600) * 1000;
  const since = new Date(Date.now() - 60_000).toISOString();
  for (;;) {
    const events = await renderList(`/services/${encodeURIComponent(serviceId)}/events?type=cron_job_run_ended&startTime=${encodeURIComponent(since)}`, "event");
    const ended = events.find((e) => e?.details?.cronJobRunId === runId);
    if (ended) {
      const status = String(ended.details.status ?? "unknown");
      if (status === "successful") return String(runId);
      throw new Error(
        `run render cron job '${serviceId}' (${purpose}): run '${runId}' ended '${status}' (see its logs in the Render dashboard; fix it and run pulumi up again, which runs it again)`,
      );
    }
    if (Date.now() > deadline)
      throw new Error(`run render cron job '${serviceId}' (${purpose}): run '${runId}' has not ended (raise RENDER_RUN_TIMEOUT_SECONDS, or check it in the Render dashboard)`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/**
 * The first run of a cron job, as part of the `up` that creates it: the first backup and the first drill
 * then exist before the alarms that watch them (which a new stack would otherwise trip at once). It runs on
 * create only (a new job); updates and deletes do nothing, so a later `up` never cancels a run in flight
 * (a manual run cancels the active one).
 */
export const cronJobRunProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: any, news: any): Promise<pulumi.dynamic.DiffResult> {
    const replaces = olds?.serviceId !== news?.serviceId ? ["serviceId"] : [];
    return { changes: replaces.length > 0 || olds?.purpose !== news?.purpose, replaces };
  },
  async create(inputs: any): Promise<pulumi.dynamic.CreateResult> {
    const serviceId = String(inputs?.serviceId ?? "");
    const purpose = String(inputs?.purpose ?? "first run");
    const runId = await runCronJobOnce(serviceId, purpose);
    return { id: runId, outs: { serviceId, purpose, runId } };
  },
  async update(_id: string, olds: any, news: any): Promise<pulumi.dynamic.UpdateResult> {
    return { outs: { serviceId: String(news?.serviceId ?? ""), purpose: String(news?.purpose ?? ""), runId: String(olds?.runId ?? "") } };
  },
  async delete(): Promise<void> {},
};

/** Arguments of a `RenderCronJob` (every field may be an Output). */
export type CronJobArgs = { [K in keyof CronJobInputs]: pulumi.Input<CronJobInputs[K]> };

/** A Render cron job (`pulumi-nodejs:dynamic/render:CronJob`). Its env vars are secret in the state. */
export class RenderCronJob extends pulumi.dynamic.Resource {
  declare readonly serviceId: pulumi.Output<string>;
  declare readonly name: pulumi.Output<string>;
  declare readonly dashboardUrl: pulumi.Output<string>;
  declare readonly envVars: pulumi.Output<EnvVars>;

  constructor(name: string, args: CronJobArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(
      cronJobProvider,
      name,
      { ...args, envVars: pulumi.secret(args.envVars), serviceId: undefined, slug: undefined, dashboardUrl: undefined },
      { ...opts, additionalSecretOutputs: ["envVars"], deleteBeforeReplace: true },
      "render",
      "CronJob",
    );
  }
}

/** Env vars managed on an existing Render service (`pulumi-nodejs:dynamic/render:ServiceEnvVars`). */
export class RenderServiceEnvVars extends pulumi.dynamic.Resource {
  declare readonly serviceId: pulumi.Output<string>;
  declare readonly envVars: pulumi.Output<EnvVars>;

  constructor(
    name: string,
    args: { serviceId: pulumi.Input<string>; envVars: pulumi.Input<Record<string, pulumi.Input<string>>>; keepPrevious?: string[] },
    opts: pulumi.CustomResourceOptions = {},
  ) {
    super(
      serviceEnvVarsProvider,
      name,
      { ...args, keepPrevious: args.keepPrevious ?? [], envVars: pulumi.secret(args.envVars) },
      { ...opts, additionalSecretOutputs: ["envVars"] },
      "render",
      "ServiceEnvVars",
    );
  }
}

/** Ends a rotation on a service (`pulumi-nodejs:dynamic/render:RotationCleanup`): see `rotationCleanupProvider`. */
export class RenderRotationCleanup extends pulumi.dynamic.Resource {
  constructor(name: string, args: { serviceId: pulumi.Input<string>; keys: string[]; generation: pulumi.Input<string> }, opts: pulumi.CustomResourceOptions = {}) {
    super(
      rotationCleanupProvider,
      name,
      { ...args, generation: pulumi.secret(args.generation) },
      { ...opts, additionalSecretOutputs: ["generation"] },
      "render",
      "RotationCleanup",
    );
  }
}

/** The first run of a cron job (`pulumi-nodejs:dynamic/render:CronJobRun`): see `cronJobRunProvider`. */
export class RenderCronJobRun extends pulumi.dynamic.Resource {
  declare readonly runId: pulumi.Output<string>;

  constructor(name: string, args: { serviceId: pulumi.Input<string>; purpose: string }, opts: pulumi.CustomResourceOptions = {}) {
    super(cronJobRunProvider, name, { ...args, runId: undefined }, opts, "render", "CronJobRun");
  }
}
