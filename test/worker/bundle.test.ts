import { describe, expect, it } from "vitest";
import { bundleWorker } from "../../worker/bundle.ts";

describe("the Worker bundle", () => {
  it("carries only what the Worker uses of core/ (no zod schemas: they tripled it once)", async () => {
    const { code, sha256 } = await bundleWorker();
    expect(code).toContain("export {");
    expect(code).not.toMatch(/\bzod\b|ZodError/);
    expect(code.length).toBeLessThan(200_000);
    expect(sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});
