/**
 * The Pulumi side of a disaster recovery, behind one small interface: select or create a stack of this
 * repository's program, `up` or `refresh` it, preview either, and read its outputs. `automationStacks()`
 * implements it with the Pulumi Automation API (which drives the `pulumi` CLI); tests pass a fake, since
 * no CLI can run there.
 */

/** What an `up`, `refresh` or preview did (or would do): the result and the count of each kind of change. */
export interface DeploySummary {
  result: string;
  /** e.g. `{ create: 3, same: 10 }`. */
  changes: Record<string, number>;
}

/** A stack output as the Automation API returns it (secret values decrypted, flagged). */
export interface StackOutput {
  value: unknown;
  secret: boolean;
}

/** One selected stack. */
export interface StackSession {
  readonly name: string;
  up(onOutput: (line: string) => void): Promise<DeploySummary>;
  refresh(onOutput: (line: string) => void): Promise<DeploySummary>;
  /** `pulumi preview` (or `refresh --preview-only`): what `up`/`refresh` would change, changing nothing. */
  preview(kind: "up" | "refresh", onOutput: (line: string) => void): Promise<DeploySummary>;
  outputs(): Promise<Record<string, StackOutput>>;
  /** A config value (secrets decrypted), or undefined when the key is not set. */
  config(key: string): Promise<string | undefined>;
}

/** Opens stacks of the Pulumi project in `workDir`. */
export interface StackDriver {
  /**
   * Selects `stackName`; when it does not exist, creates it if `create`, else resolves undefined (a dry run
   * must not create anything).
   */
  open(args: { stackName: string; workDir: string; create: boolean }): Promise<StackSession | undefined>;
}

/** The subset of `@pulumi/pulumi/automation` the driver uses (typed here so tests can stand in for it). */
type Automation = typeof import("@pulumi/pulumi/automation/index.js");
type AutomationStack = Awaited<ReturnType<Automation["LocalWorkspace"]["selectStack"]>>;

export interface AutomationOptions {
  /** Extra environment for every CLI run. */
  envVars?: Record<string, string>;
  /** A directory holding `bin/pulumi`, when the CLI is not on PATH (e.g. `~/.pulumi`). */
  pulumiRoot?: string;
}

/**
 * The real driver: `LocalWorkspace.createOrSelectStack({ stackName, workDir })` runs this repository's
 * program (Pulumi.yaml's `main: infra/index.ts`). The Automation API is imported lazily, so loading `dr/`
 * never needs the CLI; calling it does (`curl -fsSL https://get.pulumi.com | sh`).
 */
export function automationStacks(options: AutomationOptions = {}): StackDriver {
  return {
    async open({ stackName, workDir, create }) {
      const auto: Automation = await import("@pulumi/pulumi/automation/index.js");
      const pulumiCommand = options.pulumiRoot ? await auto.PulumiCommand.get({ root: options.pulumiRoot }) : undefined;
      const wsOptions = { ...(options.envVars ? { envVars: options.envVars } : {}), ...(pulumiCommand ? { pulumiCommand } : {}) };
      let stack: AutomationStack;
      if (create) {
        stack = await auto.LocalWorkspace.createOrSelectStack({ stackName, workDir }, wsOptions);
      } else {
        try {
          stack = await auto.LocalWorkspace.selectStack({ stackName, workDir }, wsOptions);
        } catch (error) {
          if (error instanceof auto.StackNotFoundError) return undefined;
          throw error;
        }
      }
      return wrapStack(stack);
    },
  };
}

function wrapStack(stack: AutomationStack): StackSession {
  const summarizeResult = (summary: { result: string; resourceChanges?: Record<string, number | undefined> }): DeploySummary => ({
    result: summary.result,
    changes: compact(summary.resourceChanges ?? {}),
  });
  return {
    name: stack.name,
    async up(onOutput) {
      const res = await stack.up({ onOutput, color: "never" });
      return summarizeResult(res.summary);
    },
    async refresh(onOutput) {
      const res = await stack.refresh({ onOutput, color: "never" });
      return summarizeResult(res.summary);
    },
    async preview(kind, onOutput) {
      const res = kind === "up" ? await stack.preview({ onOutput, color: "never" }) : await stack.previewRefresh({ onOutput, color: "never" });
      return { result: "preview", changes: compact(res.changeSummary ?? {}) };
    },
    async outputs() {
      return stack.outputs();
    },
    async config(key) {
      try {
        const { value } = await stack.getConfig(key);
        return value || undefined;
      } catch (error) {
        // `pulumi config get` fails for a key that is not set; anything else is a real error.
        if (/not found|configuration key .* not found/i.test((error as Error).message)) return undefined;
        throw error;
      }
    },
  };
}

function compact(map: Record<string, number | undefined>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(map)) if (typeof v === "number" && v > 0) out[k] = v;
  return out;
}
