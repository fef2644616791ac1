/** The shared contract of infra, worker and job. Pure: no I/O, no clock (time is passed in). */
export * from "./errors.ts";
export * from "./time.ts";
export * from "./keys.ts";
export * from "./manifest.ts";
export * from "./retention.ts";
export * from "./catalog.ts";
export * from "./planner.ts";
export * from "./chain.ts";
export * from "./api.ts";
export * from "./status.ts";
export * from "./changes.ts";
export * from "./metrics.ts";
