import { defineConfig } from "vitest/config";

// One `npm test` runs every project. Projects set `extends: true` so they inherit the root options
// (vitest projects do not inherit them otherwise).
const project = (name: string, testTimeout = 30_000) => ({
  extends: true as const,
  test: { name, include: [`test/${name}/**/*.test.ts`], testTimeout },
});

export default defineConfig({
  test: {
    hookTimeout: 120_000,
    reporters: ["default", "./test/summary-reporter.ts"],
    projects: [project("core"), project("infra", 60_000), project("worker", 300_000), project("job", 300_000), project("e2e", 600_000)],
  },
});
