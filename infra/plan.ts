import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { InfraError } from "./errors.ts";
import { isPreviewStack, PROJECT, stackNameProblem } from "./naming.ts";
import { runProgram } from "./program.ts";
import { mergedStackConfig, REPO_ROOT, type StackFileConfig } from "./stack-files.ts";

/** One resource the program would create, as the mock engine saw it. `inputs` keep Pulumi's secret wrappers. */
export interface PlannedResource {
  type: string;
  name: string;
  custom: boolean;
  parent: string | undefined;
  /** `dependsOn` as the names of the resources waited for: the order `up` creates and updates them in. */
  options: { protect?: boolean; retainOnDelete?: boolean; deleteBeforeReplace?: boolean; additionalSecretOutputs?: string[]; dependsOn?: string[] };
  inputs: Record<string, unknown>;
}

/** What `runProgram` did under mocks for one stack. */
export interface Plan {
  project: string;
  stack: string;
  preview: boolean;
  /** Whether `Pulumi.<stack>.yaml` exists (preview stacks may have none). */
  stackFile: boolean;
  resources: PlannedResource[];
  /** Stack outputs, each `{ value, secret }`. */
  outputs: Record<string, { value: unknown; secret: boolean }>;
}

/** Pulumi's wire marker of a secret value (what mocks receive for a secret input). */
const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/** True for a secret value as the mock engine receives it. */
export function isSecretInput(value: unknown): value is { value: unknown } {
  return typeof value === "object" && value !== null && (value as Record<string, unknown>)[SECRET_SIG_KEY] === SECRET_SIG;
}

/** Removes the secret wrappers (for assertions on the values themselves). */
export function unwrapSecrets(value: unknown): unknown {
  if (isSecretInput(value)) return unwrapSecrets(value.value);
  if (Array.isArray(value)) return value.map(unwrapSecrets);
  if (typeof value === "object" && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrapSecrets(v)]));
  return value;
}

/** Values the mocks return for outputs a real provider computes (ids, ARNs, generated secrets). */
function computedState(type: string, name: string, inputs: Record<string, unknown>): Record<string, unknown> {
  if (type.startsWith("aws:")) {
    const service = type.split(":")[1]?.split("/")[0] ?? "aws";
    const extra: Record<string, unknown> = { arn: `arn:aws:${service}:us-east-1:123456789012:${String(inputs.name ?? inputs.dashboardName ?? name)}` };
    if (type === "aws:iam/accessKey:AccessKey") extra.secret = "mock-secret-access-key";
    return extra;
  }
  if (type === "random:index/randomPassword:RandomPassword") return { result: `mock-${name}` };
  // Looked up from the account when deployed; the plan shows where it goes.
  if (type === "pulumi-nodejs:dynamic/cloudflare:WorkersSubdomain") return { subdomain: "looked-up-subdomain" };
  if (type.startsWith("pulumi-nodejs:dynamic/render:CronJob"))
    return { serviceId: `crn-mock-${name}`, slug: name, dashboardUrl: `https://dashboard.render.com/cron/crn-mock-${name}` };
  return {};
}

function mockId(type: string, name: string): string {
  if (type === "aws:iam/accessKey:AccessKey") return "AKIAMOCKMOCKMOCKMOCK";
  if (type.startsWith("pulumi-nodejs:dynamic/render:CronJob")) return `crn-mock-${name}`;
  return `${name}-id`;
}

/**
 * Runs the program for `stack` under Pulumi mocks, with the config the CLI would pass (`Pulumi.yaml`
 * defaults, then `Pulumi.<stack>.yaml`; `config` replaces both), and records every resource. No cloud, no
 * CLI, no credentials. A stack other than `pr-<n>` needs its stack file.
 */
export async function planStack(stack: string, options: { config?: StackFileConfig; root?: string } = {}): Promise<Plan> {
  // The name first: it goes into a file name and into the commands a hint suggests.
  const badName = stackNameProblem(stack);
  if (badName) throw new InfraError("plan", "stack", stack, badName, "plan a stack named so (e.g. --stack prod, --stack pr-42)");
  let config = options.config;
  let stackFile = false;
  if (config === undefined) {
    const merged = mergedStackConfig(stack, options.root ?? REPO_ROOT);
    if (!merged.hasStackFile && !isPreviewStack(stack)) {
      throw new InfraError(
        "plan",
        "stack",
        stack,
        `there is no Pulumi.${stack}.yaml`,
        `create it with \`pulumi stack init ${stack}\` and the \`pulumi config set\` commands of the README, or plan dev or a preview stack (pr-<n>)`,
      );
    }
    stackFile = merged.hasStackFile;
    config = { values: merged.values, secretKeys: merged.secretKeys };
  }
  pulumi.runtime.setAllConfig(config.values, config.secretKeys);

  const registered = new Map<string, PlannedResource>();
  const constructed: { type: string; name: string; parent: string | undefined; options: PlannedResource["options"]; dependsOn: unknown }[] = [];
  await pulumi.runtime.setMocks(
    {
      newResource(args: pulumi.runtime.MockResourceArgs) {
        const inputs = args.inputs as Record<string, unknown>;
        registered.set(`${args.type}::${args.name}`, { type: args.type, name: args.name, custom: args.custom ?? true, parent: undefined, options: {}, inputs });
        return { id: mockId(args.type, args.name), state: { ...inputs, ...computedState(args.type, args.name, inputs) } };
      },
      call(args: pulumi.runtime.MockCallArgs) {
        return args.inputs;
      },
    },
    PROJECT,
    stack,
    false,
  );

  // The program's own Outputs, kept: the stack resolves its outputs to plain values, secrets unmarked.
  let stackOutputs: Record<string, unknown> = {};
  // A program error is kept and rethrown below: thrown inside the stack it would also reject a promise
  // of the stack resource that nobody awaits, and crash the process.
  let failure: unknown;
  await pulumi.runtime.runInPulumiStack(async () => {
    pulumi.runtime.registerStackTransformation((args) => {
      const o = args.opts as pulumi.CustomResourceOptions;
      const opts: PlannedResource["options"] = {};
      if (o.protect !== undefined) opts.protect = o.protect;
      if (o.retainOnDelete !== undefined) opts.retainOnDelete = o.retainOnDelete;
      if (o.deleteBeforeReplace !== undefined) opts.deleteBeforeReplace = o.deleteBeforeReplace;
      if (o.additionalSecretOutputs !== undefined) opts.additionalSecretOutputs = o.additionalSecretOutputs;
      constructed.push({
        type: args.type,
        name: args.name,
        parent: o.parent ? (o.parent as unknown as { __name?: string }).__name : undefined,
        options: opts,
        dependsOn: o.dependsOn,
      });
      return undefined;
    });
    try {
      stackOutputs = { ...(await runProgram(stack)) };
    } catch (error) {
      failure = error;
    }
    return stackOutputs;
  });

  // Registration is asynchronous: wait until every resource, and the stack's own outputs, reached the
  // mock engine (the next planStack replaces it).
  await (pulumi.runtime as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs();
  if (failure !== undefined) throw failure;

  const resources: PlannedResource[] = [];
  for (const c of constructed) {
    const r = registered.get(`${c.type}::${c.name}`);
    if (r === undefined) throw new InfraError("plan", "resource", `${c.type}::${c.name}`, "was constructed but never registered");
    // `dependsOn` may be a promise (the alarms wait for resources made after them): settled by now.
    const raw = pulumi.Output.isInstance(c.dependsOn) ? await new Promise((resolve) => (c.dependsOn as pulumi.Output<unknown>).apply(resolve)) : await Promise.resolve(c.dependsOn);
    const deps = [raw].flat().filter((d): d is { __name?: string } => typeof d === "object" && d !== null);
    const options = deps.length > 0 ? { ...c.options, dependsOn: deps.map((d) => d.__name ?? "?") } : c.options;
    resources.push({ ...r, parent: c.parent, options });
  }

  const outputs: Plan["outputs"] = {};
  for (const [key, value] of Object.entries(stackOutputs)) {
    if (pulumi.Output.isInstance(value)) {
      const output = value as pulumi.Output<unknown>;
      const [resolved, secret] = await Promise.all([new Promise((resolve) => output.apply(resolve)), pulumi.isSecret(output)]);
      outputs[key] = { value: resolved, secret };
    } else {
      outputs[key] = { value: value ?? null, secret: false };
    }
  }
  return { project: PROJECT, stack, preview: isPreviewStack(stack), stackFile, resources, outputs };
}

/** Shown for a secret anywhere in `npm run plan`'s output. */
export const SECRET_MASK = "[secret]";

/** A value as `npm run plan` shows it: secrets masked, the Worker bundle and the serialized providers summarized. */
export function displayValue(value: unknown, key = ""): unknown {
  if (isSecretInput(value)) return maskSecret(value.value);
  if (key === "__provider" && typeof value === "string") return `[serialized dynamic provider, ${value.length} chars]`;
  if (key === "content" && typeof value === "string" && value.length > 200) {
    return `[worker bundle, ${Buffer.byteLength(value)} bytes, sha256 ${createHash("sha256").update(value).digest("hex")}]`;
  }
  if (Array.isArray(value)) return value.map((v) => displayValue(v));
  if (typeof value === "object" && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, displayValue(v, k)]));
  return value;
}

/** Keys whose values stay visible inside a secret structure: they name things, they hold no secret. */
const VISIBLE_IN_SECRETS = new Set(["type", "name"]);

/**
 * A secret as shown: scalars masked; inside a secret list or object (Pulumi makes a whole `bindings` or
 * `envVars` input secret when one element is) only the structure, binding types and names stay visible.
 */
function maskSecret(value: unknown, key = ""): unknown {
  if (isSecretInput(value)) return maskSecret(value.value, key);
  if (Array.isArray(value)) return value.map((v) => maskSecret(v));
  if (typeof value === "object" && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskSecret(v, k)]));
  return VISIBLE_IN_SECRETS.has(key) && typeof value === "string" ? value : SECRET_MASK;
}

/** The plan as JSON-ready data, every secret masked. */
export function planToJson(plan: Plan): unknown {
  return {
    project: plan.project,
    stack: plan.stack,
    preview: plan.preview,
    stackFile: plan.stackFile,
    resources: plan.resources.map((r) => ({
      type: r.type,
      name: r.name,
      ...(r.parent ? { parent: r.parent } : {}),
      ...(Object.keys(r.options).length > 0 ? { options: r.options } : {}),
      inputs: displayValue(r.inputs),
    })),
    outputs: Object.fromEntries(Object.entries(plan.outputs).map(([k, o]) => [k, o.secret ? SECRET_MASK : displayValue(o.value)])),
  };
}

/** The plan for a terminal: one block per resource, with its inputs as indented YAML-like lines. */
export function formatPlan(plan: Plan): string {
  const data = planToJson(plan) as { resources: { type: string; name: string; options?: object; inputs: Record<string, unknown> }[]; outputs: Record<string, unknown> };
  const lines = [
    `Plan for stack '${plan.stack}' of ${plan.project}${plan.preview ? " (preview stack)" : ""}: ${plan.resources.length} resources, under mocks (nothing is deployed).`,
    "",
  ];
  for (const r of data.resources) {
    const flags = r.options ? ` ${JSON.stringify(r.options)}` : "";
    lines.push(`+ ${r.type}  ${r.name}${flags}`);
    for (const [k, v] of Object.entries(r.inputs)) lines.push(`    ${k}: ${JSON.stringify(v)}`);
  }
  lines.push("", "Outputs:");
  for (const [k, v] of Object.entries(data.outputs)) lines.push(`    ${k}: ${JSON.stringify(v)}`);
  return lines.join("\n");
}
