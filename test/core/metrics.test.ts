import { describe, expect, it } from "vitest";
import { DEFAULT_METRICS_NAMESPACE, JOB_ENV, METRICS } from "../../core/index.ts";

describe("monitoring contract", () => {
  it("names each metric once, as a CloudWatch metric name (no spaces, at most 255 characters)", () => {
    const names = Object.values(METRICS);
    expect(new Set(names).size).toBe(names.length);
    for (const name of names) expect(name).toMatch(/^[A-Za-z][A-Za-z0-9]{0,254}$/);
  });

  it("uses a custom namespace (AWS/ is reserved) and SCREAMING_SNAKE env vars, the seed's two among them", () => {
    expect(DEFAULT_METRICS_NAMESPACE.startsWith("AWS/")).toBe(false);
    for (const name of Object.values(JOB_ENV)) expect(name).toMatch(/^[A-Z][A-Z0-9_]*$/);
    expect(JOB_ENV.workerUrl).toBe("R2_WORKER_URL");
    expect(JOB_ENV.serverToken).toBe("SERVER_BYPASS_TOKEN");
  });
});
