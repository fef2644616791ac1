// `npm run plan [-- --stack <name>] [--json]`: the Pulumi program under mocks, printing every resource it
// would create with its inputs (secrets as [secret]). No CLI, no cloud, no credentials.
import { parseArgs } from "node:util";
import { formatPlan, planStack, planToJson } from "../infra/plan.ts";
import { stackNameProblem } from "../infra/naming.ts";

const USAGE = `usage: npm run plan [-- --stack <name>] [--json]

Runs the Pulumi program under mocks with the stack's config (Pulumi.yaml defaults, then Pulumi.<stack>.yaml;
preview stacks pr-<n> need no stack file) and prints every resource it would create.

  --stack <name>  the stack (default: dev)
  --json          machine-readable output
  --help          this text

exit codes: 0 planned, 1 the program failed (bad config, bundle error), 2 bad usage`;

async function main(argv: string[]): Promise<number> {
  let values: { stack?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, options: { stack: { type: "string", short: "s" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } }, strict: true }));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const stack = values.stack ?? "dev";
  const badName = stackNameProblem(stack);
  if (badName) {
    console.error(`npm run plan: --stack '${stack}' ${badName}\n\n${USAGE}`);
    return 2;
  }
  try {
    const plan = await planStack(stack);
    console.log(values.json ? JSON.stringify(planToJson(plan), null, 2) : formatPlan(plan));
    return 0;
  } catch (error) {
    console.error(`npm run plan: ${(error as Error).message}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
