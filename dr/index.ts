/** The disaster-recovery library: the orchestrator, its injected parts, and the CLI behind `npm run dr`. */
export { DR_EXIT, DrError, STEPS, type StepName } from "./errors.ts";
export { healthUrl, waitForWorker, type HealthResult, type WaitForWorker, type WaitOptions } from "./health.ts";
export { OUTPUTS, describeChanges, describeRestore, runDisasterRecovery, type RecoveryDeps, type RecoveryOptions, type RecoveryReport, type StepRecord } from "./recover.ts";
export { formatReport } from "./report.ts";
export { jobRestorer, type RestoreOutcome, type RestoreRequest, type Restorer } from "./restore.ts";
export { automationStacks, type DeploySummary, type StackDriver, type StackOutput, type StackSession } from "./stack.ts";
export { USAGE, main } from "./cli.ts";
