import * as pulumi from "@pulumi/pulumi";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  cronJobProvider,
  cronJobRunProvider,
  resetAsRetryAfter,
  retryDelayMs,
  rotationCleanupProvider,
  serviceEnvVarsProvider,
  type CronJobInputs,
} from "../../infra/render/provider.ts";
import { createAgentHandler } from "../../job/commands/agent.ts";
import { triggerBackup } from "../../job/commands/trigger.ts";

const KEY = "rnd_test_0123456789abcdefSECRET";

interface Recorded {
  method: string;
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
  body: any;
}

/**
 * A local fake of Render's REST API (the parts the providers use), over real HTTP: services, env vars,
 * deploys, cursor pagination with Render's `[{ cursor, <item> }]` pages, and injected 429s.
 */
class FakeRender {
  server: Server;
  requests: Recorded[] = [];
  services = new Map<string, any>();
  envVars = new Map<string, Map<string, string>>();
  throttle = 0;
  retryAfter = "0";
  /** Only requests of this method are throttled (undefined: all). */
  throttleMethod: string | undefined;
  /** Ratelimit-Reset sent with each 429 (undefined: none). */
  rateLimitReset: string | undefined;
  next = 1;
  deploys = new Map<string, { id: string; serviceId: string; status: string; polls: number; env: Record<string, string> }>();
  /** The env vars each service runs with: those of its last live deploy (Render applies variables only on a deploy). */
  live = new Map<string, Record<string, string>>();
  failDeploys = false;
  pendingRuns: { serviceId: string; runId: string }[] = [];
  events: any[] = [];
  runOutcome = "successful";

  constructor() {
    this.server = createServer(
      (req, res) =>
        void this.handle(req).then(([status, body, headers]) => {
          res.writeHead(status, { "content-type": "application/json", ...headers });
          res.end(body === undefined ? "" : JSON.stringify(body));
        }),
    );
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
  }

  addService(service: any, env: Record<string, string> = {}): any {
    const s = { slug: service.name, dashboardUrl: `https://dashboard.render.com/cron/${service.id}`, ...service };
    this.services.set(s.id, s);
    this.envVars.set(s.id, new Map(Object.entries(env)));
    return s;
  }

  private page<T>(items: T[], query: URLSearchParams, wrap: (item: T, cursor: string) => object): object[] {
    const limit = Number(query.get("limit") ?? 20);
    const start = query.get("cursor") ? Number(Buffer.from(query.get("cursor") as string, "base64").toString()) + 1 : 0;
    return items.slice(start, start + limit).map((item, i) => wrap(item, Buffer.from(String(start + i)).toString("base64")));
  }

  private async handle(req: IncomingMessage): Promise<[number, unknown, Record<string, string>?]> {
    let text = "";
    for await (const chunk of req) text += chunk;
    const url = new URL(req.url ?? "/", "http://fake");
    const body = text ? JSON.parse(text) : undefined;
    this.requests.push({ method: req.method ?? "", path: url.pathname, query: url.searchParams, authorization: req.headers.authorization, body });
    if (req.headers.authorization !== `Bearer ${KEY}`) return [401, { message: "unauthorized" }];
    if (this.throttle > 0 && (this.throttleMethod === undefined || this.throttleMethod === req.method)) {
      this.throttle--;
      return [
        429,
        { message: "rate limit exceeded" },
        { ...(this.retryAfter === "" ? {} : { "retry-after": this.retryAfter }), ...(this.rateLimitReset === undefined ? {} : { "ratelimit-reset": this.rateLimitReset }) },
      ];
    }
    const parts = url.pathname
      .replace(/^\/v1\//, "")
      .split("/")
      .map(decodeURIComponent);
    const [root, id, sub, key] = parts;
    if (root === "cron-jobs" && sub === "runs" && req.method === "POST") {
      if (!this.services.has(id as string)) return [404, { message: "service not found" }];
      const run = { id: `run-${this.next++}`, status: "pending" };
      // Ends after the first events poll, with the outcome the test chose; another job's run ends too.
      this.pendingRuns.push({ serviceId: id as string, runId: run.id });
      return [200, run];
    }
    if (root !== "services") return [404, { message: "not found" }];
    if (id === undefined) {
      if (req.method === "GET") {
        const found = [...this.services.values()].filter(
          (s) => (!url.searchParams.get("name") || s.name === url.searchParams.get("name")) && (!url.searchParams.get("type") || s.type === url.searchParams.get("type")),
        );
        return [200, this.page(found, url.searchParams, (service, cursor) => ({ cursor, service }))];
      }
      if (req.method === "POST") {
        if ([...this.services.values()].some((s) => s.name === body.name)) return [409, { message: "name taken" }];
        const service = this.addService(
          {
            id: `crn-${this.next++}`,
            type: body.type,
            name: body.name,
            ownerId: body.ownerId,
            repo: body.repo,
            branch: body.branch,
            rootDir: body.rootDir,
            autoDeploy: body.autoDeploy,
            serviceDetails: body.serviceDetails,
          },
          Object.fromEntries((body.envVars ?? []).map((e: any) => [e.key, e.value])),
        );
        const deployId = `dep-${this.next++}`;
        this.deploys.set(deployId, { id: deployId, serviceId: service.id, status: "build_in_progress", polls: 0, env: Object.fromEntries(this.envVars.get(service.id) ?? []) });
        return [201, { service, deployId }];
      }
    }
    const service = this.services.get(id as string);
    if (!service) return [404, { message: "service not found" }];
    if (sub === undefined) {
      if (req.method === "GET") return [200, service];
      if (req.method === "DELETE") {
        this.services.delete(service.id);
        return [204, undefined];
      }
      if (req.method === "PATCH") {
        const { serviceDetails, ...rest } = body;
        Object.assign(service, rest);
        service.serviceDetails = { ...service.serviceDetails, ...serviceDetails };
        return [200, service];
      }
    }
    const env = this.envVars.get(service.id) as Map<string, string>;
    if (sub === "env-vars" && key === undefined) {
      if (req.method === "GET") return [200, this.page([...env.entries()], url.searchParams, ([k, value], cursor) => ({ cursor, envVar: { key: k, value } }))];
      if (req.method === "PUT") {
        env.clear();
        for (const e of body) env.set(e.key, e.value);
        return [200, body.map((e: any) => ({ cursor: "x", envVar: e }))];
      }
    }
    if (sub === "env-vars" && key !== undefined) {
      if (req.method === "PUT") {
        env.set(key, body.value);
        return [200, { key, value: body.value }];
      }
      if (req.method === "DELETE") return env.delete(key) ? [204, undefined] : [404, { message: "env var not found" }];
    }
    if (sub === "events" && req.method === "GET") {
      // A run is still going at the first poll after it started, and has ended (as the test chose) by the next.
      const visible = this.events.filter((e) => e.serviceId === service.id && e.type === url.searchParams.get("type"));
      for (const r of this.pendingRuns.filter((p) => p.serviceId === service.id))
        this.events.push({
          id: `evt-${this.next++}`,
          serviceId: service.id,
          type: "cron_job_run_ended",
          timestamp: new Date().toISOString(),
          details: { cronJobRunId: r.runId, status: this.runOutcome },
        });
      this.pendingRuns = this.pendingRuns.filter((p) => p.serviceId !== service.id);
      return [200, this.page(visible, url.searchParams, (event, cursor) => ({ cursor, event }))];
    }
    if (sub === "deploys" && req.method === "POST") {
      const deploy = { id: `dep-${this.next++}`, serviceId: service.id, status: "build_in_progress", polls: 0, env: Object.fromEntries(env) };
      this.deploys.set(deploy.id, deploy);
      return [201, { id: deploy.id, status: "created" }];
    }
    if (sub === "deploys" && key !== undefined && req.method === "GET") {
      const deploy = this.deploys.get(key);
      if (!deploy || deploy.serviceId !== service.id) return [404, { message: "deploy not found" }];
      // Live on the second poll (or failed, when told so): what the service runs changes only then.
      if (++deploy.polls >= 2 && deploy.status === "build_in_progress") {
        deploy.status = this.failDeploys ? "build_failed" : "live";
        if (deploy.status === "live") this.live.set(service.id, deploy.env);
      }
      return [200, { id: deploy.id, status: deploy.status }];
    }
    return [405, { message: "unsupported" }];
  }

  calls(method: string, pathPrefix = ""): Recorded[] {
    return this.requests.filter((r) => r.method === method && r.path.startsWith(`/v1${pathPrefix}`));
  }
}

const inputs: CronJobInputs = {
  name: "r2-sqlite-backup-prod-backup",
  ownerId: "tea-owner1",
  region: "oregon",
  plan: "starter",
  runtime: "node",
  repo: "https://github.com/example/r2-sqlite-backup",
  branch: "main",
  rootDir: "",
  schedule: "0 */6 * * *",
  buildCommand: "npm ci",
  startCommand: "npm run backup -- trigger --agent-url http://app:8788",
  autoDeploy: "yes",
  envVars: { BACKUP_AGENT_TOKEN: "agent-token-value" },
};
// Every inputs object the engine hands a provider carries the serialized provider.
const withProvider = (i: object) => ({ ...i, __provider: "exports.handler = ...serialized..." });

const fake = new FakeRender();
const saved = { key: process.env.RENDER_API_KEY, url: process.env.RENDER_API_URL, attempts: process.env.RENDER_MAX_ATTEMPTS, poll: process.env.RENDER_POLL_MS };

beforeAll(async () => {
  await new Promise<void>((resolve) => fake.server.listen(0, "127.0.0.1", resolve));
});
afterAll(async () => {
  await new Promise((resolve) => fake.server.close(resolve));
});
beforeEach(() => {
  process.env.RENDER_API_KEY = KEY;
  process.env.RENDER_API_URL = fake.url;
  process.env.RENDER_MAX_ATTEMPTS = "4";
  process.env.RENDER_POLL_MS = "5";
  fake.requests = [];
  fake.services.clear();
  fake.envVars.clear();
  fake.throttle = 0;
  fake.retryAfter = "0";
  fake.throttleMethod = undefined;
  fake.rateLimitReset = undefined;
  fake.next = 1;
  fake.deploys.clear();
  fake.live.clear();
  fake.failDeploys = false;
  fake.pendingRuns = [];
  fake.events = [];
  fake.runOutcome = "successful";
});
afterEach(() => {
  for (const [name, value] of [
    ["RENDER_API_KEY", saved.key],
    ["RENDER_API_URL", saved.url],
    ["RENDER_MAX_ATTEMPTS", saved.attempts],
    ["RENDER_POLL_MS", saved.poll],
  ] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

describe("Render cron job provider", () => {
  it("creates with Render's documented servicePOST body and the bearer key, and never sends __provider", async () => {
    const result = await cronJobProvider.create!(withProvider(inputs));
    const [post] = fake.calls("POST", "/services");
    expect(post?.authorization).toBe(`Bearer ${KEY}`);
    expect(post?.body).toEqual({
      type: "cron_job",
      name: "r2-sqlite-backup-prod-backup",
      ownerId: "tea-owner1",
      repo: "https://github.com/example/r2-sqlite-backup",
      branch: "main",
      rootDir: "",
      autoDeploy: "yes",
      envVars: [{ key: "BACKUP_AGENT_TOKEN", value: "agent-token-value" }],
      serviceDetails: {
        runtime: "node",
        schedule: "0 */6 * * *",
        plan: "starter",
        region: "oregon",
        envSpecificDetails: { buildCommand: "npm ci", startCommand: "npm run backup -- trigger --agent-url http://app:8788" },
      },
    });
    expect(result.id).toBe("crn-1");
    expect(result.outs).toMatchObject({ serviceId: "crn-1", slug: inputs.name, name: inputs.name, envVars: inputs.envVars });
    expect(result.outs).not.toHaveProperty("__provider");
  });

  it("adopts a job of the same name in the workspace (a lost state) instead of failing on a duplicate name", async () => {
    fake.addService({ id: "crn-other", type: "cron_job", name: "someone-elses-job", ownerId: "tea-owner1", serviceDetails: { region: "oregon" } });
    fake.addService({ id: "crn-existing", type: "cron_job", name: inputs.name, ownerId: "tea-owner1", serviceDetails: { region: "oregon", schedule: "0 0 * * *" } });
    const result = await cronJobProvider.create!(withProvider(inputs));
    expect(result.id).toBe("crn-existing");
    expect(fake.calls("POST", "/services").filter((r) => r.path === "/v1/services")).toHaveLength(0);
    expect(fake.calls("PATCH", "/services/crn-existing")).toHaveLength(1);
    expect(fake.services.get("crn-existing").serviceDetails.schedule).toBe("0 */6 * * *");
    const list = fake.calls("GET", "/services").find((r) => r.path === "/v1/services");
    expect(list?.query.get("name")).toBe(inputs.name);
    expect(list?.query.get("type")).toBe("cron_job");
    expect(list?.query.get("ownerId")).toBe("tea-owner1");
  });

  it("follows cursors until a short page (env var listing of 230 keys)", async () => {
    const env: Record<string, string> = {};
    for (let i = 0; i < 230; i++) env[`K${String(i).padStart(3, "0")}`] = `v${i}`;
    fake.addService({ id: "srv-app", type: "web_service", name: "app" }, env);
    const read = await serviceEnvVarsProvider.read!("srv-app/env-vars", { serviceId: "srv-app", envVars: { K000: "x", K229: "y", GONE: "z" } });
    expect(read.props).toEqual({ serviceId: "srv-app", envVars: { K000: "v0", K229: "v229" }, keepPrevious: [] });
    const pages = fake.calls("GET", "/services/srv-app/env-vars");
    expect(pages.map((p) => p.query.get("cursor") !== null)).toEqual([false, true, true]);
    expect(pages.every((p) => p.query.get("limit") === "100")).toBe(true);
  });

  it("diffs: owner, region or runtime changes replace (delete first, names are unique); other fields update in place", async () => {
    const olds = withProvider({ ...inputs, serviceId: "crn-1" });
    expect(await cronJobProvider.diff!("crn-1", olds, withProvider(inputs))).toEqual({ changes: false, replaces: [], deleteBeforeReplace: true });
    expect(await cronJobProvider.diff!("crn-1", olds, withProvider({ ...inputs, schedule: "0 * * * *" }))).toEqual({ changes: true, replaces: [], deleteBeforeReplace: true });
    expect(await cronJobProvider.diff!("crn-1", olds, withProvider({ ...inputs, envVars: { BACKUP_AGENT_TOKEN: "rotated" } }))).toMatchObject({ changes: true, replaces: [] });
    expect(await cronJobProvider.diff!("crn-1", olds, withProvider({ ...inputs, ownerId: "tea-other" }))).toEqual({
      changes: true,
      replaces: ["ownerId"],
      deleteBeforeReplace: true,
    });
    expect(await cronJobProvider.diff!("crn-1", olds, withProvider({ ...inputs, region: "frankfurt", runtime: "docker" }))).toMatchObject({ replaces: ["region", "runtime"] });
    // An unknown value at preview time is a change, never "no change".
    expect(await cronJobProvider.diff!("crn-1", olds, withProvider({ ...inputs, repo: "04da6b54-80e4-46f7-96ec-b56ff0331ba9" }))).toMatchObject({ changes: true, replaces: [] });
    expect(fake.requests).toHaveLength(0);
  });

  it("updates with the servicePATCH shape (no ownerId, region, type), replaces env vars only when they changed, then deploys", async () => {
    const { id, outs } = await cronJobProvider.create!(withProvider(inputs));
    fake.requests = [];
    const news = { ...inputs, schedule: "15 */6 * * *", branch: "release" };
    await cronJobProvider.update!(id, withProvider(outs), withProvider(news));
    const [patch] = fake.calls("PATCH");
    expect(patch?.body).toEqual({
      name: inputs.name,
      repo: inputs.repo,
      branch: "release",
      rootDir: "",
      autoDeploy: "yes",
      serviceDetails: { schedule: "15 */6 * * *", plan: "starter", envSpecificDetails: { buildCommand: "npm ci", startCommand: inputs.startCommand } },
    });
    expect(fake.calls("PUT")).toHaveLength(0);
    expect(fake.calls("POST", `/services/${id}/deploys`)).toHaveLength(1);

    fake.requests = [];
    await cronJobProvider.update!(id, withProvider(news), withProvider({ ...news, envVars: { BACKUP_AGENT_TOKEN: "rotated" } }));
    expect(fake.calls("PUT", `/services/${id}/env-vars`).map((r) => r.body)).toEqual([[{ key: "BACKUP_AGENT_TOKEN", value: "rotated" }]]);
    expect(fake.envVars.get(id)?.get("BACKUP_AGENT_TOKEN")).toBe("rotated");
  });

  it("deletes, and treats 404 on delete as done; read of a deleted job reports it gone", async () => {
    const { id, outs } = await cronJobProvider.create!(withProvider(inputs));
    await cronJobProvider.delete!(id, withProvider(outs));
    expect(fake.services.has(id)).toBe(false);
    await expect(cronJobProvider.delete!(id, withProvider(outs))).resolves.toBeUndefined();
    expect(fake.calls("DELETE").map((r) => r.path)).toEqual([`/v1/services/${id}`, `/v1/services/${id}`]);
    expect((await cronJobProvider.read!(id, withProvider(outs))).id).toBe("");
  });

  it("reads drift back from Render (schedule edited in the dashboard) without reading env var values", async () => {
    const { id, outs } = await cronJobProvider.create!(withProvider(inputs));
    fake.services.get(id).serviceDetails.schedule = "0 0 * * *";
    const read = await cronJobProvider.read!(id, withProvider(outs));
    expect(read.props).toMatchObject({ schedule: "0 0 * * *", envVars: inputs.envVars, serviceId: id });
    expect(fake.calls("GET", `/services/${id}/env-vars`)).toHaveLength(0);
  });

  it("retries 429 after Retry-After, for POST too (a throttled request was not processed)", async () => {
    fake.throttle = 2;
    fake.throttleMethod = "POST";
    fake.retryAfter = "1";
    const started = Date.now();
    const result = await cronJobProvider.create!(withProvider(inputs));
    expect(result.id).toBe("crn-1");
    // The lookup, the throttled create, then waiting for the first deploy to be live.
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /v1/services",
      "POST /v1/services",
      "POST /v1/services",
      "POST /v1/services",
      "GET /v1/services/crn-1/deploys/dep-2",
      "GET /v1/services/crn-1/deploys/dep-2",
    ]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    expect(fake.services.size).toBe(1);
  });

  it("gives up after RENDER_MAX_ATTEMPTS with a message that names the limit", async () => {
    fake.throttle = 100;
    await expect(cronJobProvider.create!(withProvider(inputs))).rejects.toThrow(/GET render \/services\?.*: 429 rate limit exceeded \(rate limited after 4 attempts/);
    expect(fake.requests).toHaveLength(4);
  });

  it("computes the wait from Retry-After (seconds or date), else backs off; never more than 60 s", () => {
    expect(retryDelayMs("2", 1)).toBe(2000);
    expect(retryDelayMs("0", 1)).toBe(0);
    expect(retryDelayMs("3600", 1)).toBe(60_000);
    const date = new Date(Date.now() + 5000).toUTCString();
    expect(retryDelayMs(date, 1)).toBeGreaterThan(3000);
    expect(retryDelayMs(date, 1)).toBeLessThanOrEqual(5000);
    expect(retryDelayMs(undefined, 3)).toBeGreaterThanOrEqual(1000);
    expect(retryDelayMs(undefined, 3)).toBeLessThanOrEqual(2000);
  });

  it("fails clearly without RENDER_API_KEY, and a rejected key never appears in the error", async () => {
    delete process.env.RENDER_API_KEY;
    await expect(cronJobProvider.create!(withProvider(inputs))).rejects.toThrow(/RENDER_API_KEY is not set/);
    expect(fake.requests).toHaveLength(0);
    process.env.RENDER_API_KEY = "rnd_wrong_key_value";
    const error = await cronJobProvider.create!(withProvider(inputs)).catch((e: Error) => e);
    expect(String(error)).toMatch(/401 unauthorized \(check RENDER_API_KEY\)/);
    expect(String(error)).not.toContain("rnd_wrong_key_value");
  });
});

describe("Render env vars on the existing app service", () => {
  it("sets, changes and removes only its own keys, one at a time, leaving the app's other variables alone", async () => {
    fake.addService({ id: "srv-app", type: "web_service", name: "app" }, { DATABASE_PATH: "/data/app.db" });
    const first = { serviceId: "srv-app", envVars: { R2_WORKER_URL: "https://b.example.com", SERVER_BYPASS_TOKEN: "t1", BACKUP_AGENT_TOKEN: "a1" } };
    const created = await serviceEnvVarsProvider.create!(withProvider(first));
    expect(created.id).toBe("srv-app/env-vars");
    expect(fake.calls("PUT").map((r) => [r.path, r.body])).toEqual([
      ["/v1/services/srv-app/env-vars/BACKUP_AGENT_TOKEN", { value: "a1" }],
      ["/v1/services/srv-app/env-vars/R2_WORKER_URL", { value: "https://b.example.com" }],
      ["/v1/services/srv-app/env-vars/SERVER_BYPASS_TOKEN", { value: "t1" }],
    ]);
    fake.requests = [];
    const second = { serviceId: "srv-app", envVars: { R2_WORKER_URL: "https://b.example.com", SERVER_BYPASS_TOKEN: "t2" } };
    expect(await serviceEnvVarsProvider.diff!("srv-app/env-vars", withProvider(first), withProvider(second))).toEqual({ changes: true, replaces: [] });
    expect(await serviceEnvVarsProvider.diff!("srv-app/env-vars", withProvider(first), withProvider({ ...first, serviceId: "srv-other" }))).toEqual({
      changes: true,
      replaces: ["serviceId"],
    });
    await serviceEnvVarsProvider.update!("srv-app/env-vars", withProvider(first), withProvider(second));
    // Then deployed, and `up` waits until it is live: Render applies variables only on a deploy.
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "PUT /v1/services/srv-app/env-vars/SERVER_BYPASS_TOKEN",
      "DELETE /v1/services/srv-app/env-vars/BACKUP_AGENT_TOKEN",
      "POST /v1/services/srv-app/deploys",
      "GET /v1/services/srv-app/deploys/dep-2",
      "GET /v1/services/srv-app/deploys/dep-2",
    ]);
    expect(fake.live.get("srv-app")).toEqual({ DATABASE_PATH: "/data/app.db", R2_WORKER_URL: "https://b.example.com", SERVER_BYPASS_TOKEN: "t2" });
    await serviceEnvVarsProvider.delete!("srv-app/env-vars", withProvider(second));
    expect(Object.fromEntries(fake.envVars.get("srv-app") ?? [])).toEqual({ DATABASE_PATH: "/data/app.db" });
    // Never the replace-all endpoint, which would delete the app's own variables.
    expect(fake.requests.some((r) => r.path === "/v1/services/srv-app/env-vars" && r.method === "PUT")).toBe(false);
  });

  it("names the service when it does not exist", async () => {
    await expect(serviceEnvVarsProvider.create!(withProvider({ serviceId: "srv-missing", envVars: { A: "1" } }))).rejects.toThrow(
      /service 'srv-missing': 404 service not found \(check renderAppServiceId\)/,
    );
  });
});

describe("a token rotation, as `pulumi up` orders it (app service, cron jobs, cleanup)", () => {
  /**
   * The app service as Render runs it: an agent started with the env vars of the service's last LIVE
   * deploy (not the variables merely set), answering the trigger the cron job runs with its own live env.
   */
  async function withApp<T>(fn: (trigger: (cronJobId: string) => Promise<number>) => Promise<T>): Promise<T> {
    const app = createServer((req, res) => {
      const env = fake.live.get("srv-app") ?? {};
      const handler = createAgentHandler({
        token: env.BACKUP_AGENT_TOKEN ?? "",
        ...(env.BACKUP_AGENT_TOKEN_PREVIOUS ? { previousToken: env.BACKUP_AGENT_TOKEN_PREVIOUS } : {}),
        run: async () =>
          ({
            kind: "full",
            id: "20260101T000000Z",
            manifestKey: "backups/full/20260101T000000Z/metadata.json",
            manifest: {} as never,
            warnings: [],
            durationMs: 1,
            storedBytes: 1,
          }) as never,
      });
      handler(req, res);
    });
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    const agentUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    const trigger = async (cronJobId: string) => {
      const token = fake.live.get(cronJobId)?.BACKUP_AGENT_TOKEN ?? "";
      return triggerBackup({ agentUrl, token, attempts: 1 }).then(
        (o) => o.exitCode,
        (e: { exitCode?: number; kind?: string }) => (e.kind === "auth" ? 4 : 1),
      );
    };
    try {
      return await fn(trigger);
    } finally {
      await new Promise((resolve) => app.close(resolve));
    }
  }

  it("ends with the app service redeployed and a trigger that succeeds with the new token; the old one is refused", async () => {
    fake.addService({ id: "srv-app", type: "web_service", name: "app" }, { DATABASE_PATH: "/data/app.db" });
    fake.live.set("srv-app", { DATABASE_PATH: "/data/app.db" });
    const env = (token: string) => ({ serviceId: "srv-app", envVars: { R2_WORKER_URL: "https://b.example.com", BACKUP_AGENT_TOKEN: token }, keepPrevious: ["BACKUP_AGENT_TOKEN"] });
    const job = (token: string) => ({ ...inputs, envVars: { BACKUP_AGENT_TOKEN: token } });
    const cleanup = (token: string) => ({ serviceId: "srv-app", keys: ["BACKUP_AGENT_TOKEN_PREVIOUS"], generation: token });

    await withApp(async (trigger) => {
      // The first `up`: app env (deployed), cron job (deployed), cleanup (nothing to remove).
      await serviceEnvVarsProvider.create!(withProvider(env("old-token")));
      const { id } = await cronJobProvider.create!(withProvider(job("old-token")));
      await rotationCleanupProvider.create!(withProvider(cleanup("old-token")));
      expect(await trigger(id)).toBe(0);

      // `pulumi config set --secret agentToken ... && pulumi up`, step by step in the engine's order.
      fake.requests = [];
      await serviceEnvVarsProvider.update!("srv-app/env-vars", withProvider(env("old-token")), withProvider(env("new-token")));
      expect(fake.live.get("srv-app")).toMatchObject({ BACKUP_AGENT_TOKEN: "new-token", BACKUP_AGENT_TOKEN_PREVIOUS: "old-token" });
      // The cron job still runs its old deploy: the agent accepts the old token during the switch.
      expect(fake.live.get(id)?.BACKUP_AGENT_TOKEN).toBe("old-token");
      expect(await trigger(id)).toBe(0);

      await cronJobProvider.update!(id, withProvider(job("old-token")), withProvider(job("new-token")));
      expect(fake.live.get(id)?.BACKUP_AGENT_TOKEN).toBe("new-token");
      expect(await trigger(id)).toBe(0);

      expect((await rotationCleanupProvider.diff!("srv-app/rotation", withProvider(cleanup("old-token")), withProvider(cleanup("new-token")))).changes).toBe(true);
      await rotationCleanupProvider.update!("srv-app/rotation", withProvider(cleanup("old-token")), withProvider(cleanup("new-token")));
      expect(fake.live.get("srv-app")).toEqual({ DATABASE_PATH: "/data/app.db", R2_WORKER_URL: "https://b.example.com", BACKUP_AGENT_TOKEN: "new-token" });
      expect(await trigger(id)).toBe(0);

      // The app service was deployed twice (new token, then without the old one), each waited for.
      expect(fake.calls("POST", "/services/srv-app/deploys")).toHaveLength(2);
      // And the old token no longer starts a backup.
      fake.live.set(id, { BACKUP_AGENT_TOKEN: "old-token" });
      expect(await trigger(id)).toBe(4);
    });
  });

  it("fails `up` when the app service's deploy fails, naming the service, instead of moving on to the cron jobs", async () => {
    fake.addService({ id: "srv-app", type: "web_service", name: "app" });
    fake.failDeploys = true;
    await expect(serviceEnvVarsProvider.create!(withProvider({ serviceId: "srv-app", envVars: { A: "1" }, keepPrevious: [] }))).rejects.toThrow(
      /deploy render service 'srv-app' \(the agent's variables\): deploy 'dep-1' ended 'build_failed'/,
    );
  });

  it("waits for Ratelimit-Reset on a 429 without Retry-After", async () => {
    fake.throttle = 1;
    fake.retryAfter = "";
    fake.rateLimitReset = "1";
    const started = Date.now();
    await cronJobProvider.create!(withProvider(inputs));
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(resetAsRetryAfter("30")).toBe("30");
    expect(Number(resetAsRetryAfter(String(Math.floor(Date.now() / 1000) + 20)))).toBeGreaterThan(18);
    expect(resetAsRetryAfter(undefined)).toBeUndefined();
    expect(resetAsRetryAfter("soon")).toBeUndefined();
  });
});

describe("the first run of a cron job (the deploy's first backup and drill)", () => {
  it("triggers one run and waits for its cron_job_run_ended event", async () => {
    fake.addService({ id: "crn-other", type: "cron_job", name: "other" });
    const { id } = await cronJobProvider.create!(withProvider(inputs));
    fake.requests = [];
    const result = await cronJobRunProvider.create!(withProvider({ serviceId: id, purpose: "the first backup" }));
    expect(result.outs).toMatchObject({ serviceId: id, runId: result.id });
    expect(fake.calls("POST", "/cron-jobs")).toHaveLength(1);
    expect(fake.calls("POST", `/cron-jobs/${id}/runs`)).toHaveLength(1);
    const polls = fake.calls("GET", `/services/${id}/events`);
    expect(polls.length).toBeGreaterThanOrEqual(2);
    expect(polls[0]?.query.get("type")).toBe("cron_job_run_ended");
  });

  it("fails `up` when the run fails, naming the job and what the run was for; later updates never run it again", async () => {
    const { id } = await cronJobProvider.create!(withProvider(inputs));
    fake.runOutcome = "unsuccessful";
    await expect(cronJobRunProvider.create!(withProvider({ serviceId: id, purpose: "the first backup" }))).rejects.toThrow(
      new RegExp(`run render cron job '${id}' \\(the first backup\\): run 'run-\\d+' ended 'unsuccessful'`),
    );
    fake.requests = [];
    await cronJobRunProvider.update!("run-1", withProvider({ serviceId: id, purpose: "a", runId: "run-1" }), withProvider({ serviceId: id, purpose: "b" }));
    expect(fake.requests).toHaveLength(0);
    expect(await cronJobRunProvider.diff!("run-1", { serviceId: id, purpose: "a" }, { serviceId: "crn-new", purpose: "a" })).toMatchObject({ replaces: ["serviceId"] });
  });
});

describe("serialized provider", () => {
  it("holds no API key, and works on its own (as the engine runs it) against the fake", async () => {
    for (const provider of [cronJobProvider, serviceEnvVarsProvider, rotationCleanupProvider, cronJobRunProvider]) {
      const sf = await pulumi.runtime.serializeFunction(() => provider, { allowSecrets: true });
      expect(sf.text).not.toContain(KEY);
      expect(sf.text).not.toContain("rnd_");
      expect(sf.containsSecrets).toBe(false);
      expect(sf.text).toContain("process.env.RENDER_API_KEY");
    }
    const sf = await pulumi.runtime.serializeFunction(() => cronJobProvider, { allowSecrets: true });
    const module = { exports: {} as Record<string, () => pulumi.dynamic.ResourceProvider> };
    new Function("exports", "require", "module", sf.text)(module.exports, createRequire(import.meta.url), module);
    const revived = module.exports[sf.exportName]!();
    const result = await revived.create!(withProvider(inputs));
    expect(result.id).toBe("crn-1");
    expect(fake.calls("POST", "/services")).toHaveLength(1);
  });
});

describe("the workers.dev subdomain lookup (a local stand-in for api.cloudflare.com)", () => {
  it("reads GET /accounts/{id}/workers/subdomain with the provider's token, and says what to do when there is none", async () => {
    const { workersSubdomainProvider } = await import("../../infra/workers-subdomain.ts");
    const seen: { path: string; auth: string | undefined }[] = [];
    let answer: [number, unknown] = [200, { success: true, result: { subdomain: "acme" } }];
    const cf = createServer((req, res) => {
      seen.push({ path: req.url ?? "", auth: req.headers.authorization });
      res.writeHead(answer[0], { "content-type": "application/json" });
      res.end(JSON.stringify(answer[1]));
    });
    await new Promise<void>((resolve) => cf.listen(0, "127.0.0.1", resolve));
    const saved = { token: process.env.CLOUDFLARE_API_TOKEN, url: process.env.CLOUDFLARE_API_URL };
    process.env.CLOUDFLARE_API_TOKEN = "cf-token";
    process.env.CLOUDFLARE_API_URL = `http://127.0.0.1:${(cf.address() as AddressInfo).port}/client/v4`;
    try {
      const created = await workersSubdomainProvider.create!({ accountId: "acc1", __provider: "x" });
      expect(created.outs).toEqual({ accountId: "acc1", subdomain: "acme" });
      expect(seen).toEqual([{ path: "/client/v4/accounts/acc1/workers/subdomain", auth: "Bearer cf-token" }]);
      answer = [404, { success: false, errors: [{ code: 10007, message: "not found" }] }];
      await expect(workersSubdomainProvider.read!("acc1", { accountId: "acc1" })).rejects.toThrow(/account 'acc1': the account has no workers.dev subdomain yet/);
      answer = [403, { success: false, errors: [{ code: 10000, message: "Authentication error" }] }];
      await expect(workersSubdomainProvider.create!({ accountId: "acc1" })).rejects.toThrow(/403 Authentication error \(the token needs Workers Scripts Read/);
      const sf = await pulumi.runtime.serializeFunction(() => workersSubdomainProvider, { allowSecrets: true });
      expect(sf.text).not.toContain("cf-token");
    } finally {
      for (const [k, v] of [
        ["CLOUDFLARE_API_TOKEN", saved.token],
        ["CLOUDFLARE_API_URL", saved.url],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      await new Promise((resolve) => cf.close(resolve));
    }
  });
});
