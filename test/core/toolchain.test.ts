import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  engines: { node: string };
  devDependencies: Record<string, string>;
};

describe("the toolchain", () => {
  it("runs the tests on the Node pinned in devDependencies, whatever the system Node is", () => {
    const pinnedMajor = Number(/\d+/.exec(pkg.devDependencies.node ?? "")?.[0]);
    expect(pinnedMajor).toBe(24);
    expect(Number(process.versions.node.split(".")[0])).toBe(pinnedMajor);
  });

  it("has what the job needs from Node: node:sqlite's backup() and isTransaction, and zstd in node:zlib", async () => {
    // The reason for engines "^22.16.0 || >=24": backup() and isTransaction came in 22.16 and 24.0 (not 23),
    // zstd in 22.15 and 23.8. test/e2e/package.test.ts runs the installed package on the oldest of them.
    const sqlite = await import("node:sqlite");
    const zlib = await import("node:zlib");
    expect(typeof sqlite.backup).toBe("function");
    const db = new sqlite.DatabaseSync(":memory:");
    expect(db.isTransaction).toBe(false);
    db.exec("BEGIN");
    expect(db.isTransaction).toBe(true);
    db.close();
    expect(typeof zlib.createZstdCompress).toBe("function");
    expect(pkg.engines.node).toBe("^22.16.0 || >=24");
  });

  it("npm test runs the formatter and the linter first (biome ci), and they fail on a misformatted or suspicious file", async () => {
    const { execFileSync, spawnSync } = await import("node:child_process");
    const { mkdtempSync, writeFileSync, rmSync, copyFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const scripts = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { scripts: Record<string, string> }).scripts;
    expect(scripts.test?.startsWith("npm run lint && ")).toBe(true);
    expect(scripts.lint).toBe("biome ci .");
    const root = new URL("../../", import.meta.url).pathname;
    const biome = join(root, "node_modules", ".bin", "biome");
    expect(execFileSync(biome, ["--version"], { encoding: "utf8" })).toMatch(/\d+\.\d+/);
    const dir = mkdtempSync(join(tmpdir(), "biome-"));
    try {
      copyFileSync(join(root, "biome.jsonc"), join(dir, "biome.jsonc"));
      writeFileSync(join(dir, "ok.ts"), 'export const ok = "fine";\n');
      writeFileSync(join(dir, "bad.ts"), "export const bad = 'single quotes'\nexport function f(x: number) { if (x == 1) { return debugger } }\n");
      const check = (file: string) => spawnSync(biome, ["ci", "--config-path", dir, file], { cwd: dir, encoding: "utf8" });
      expect(check("ok.ts").status).toBe(0);
      const bad = check("bad.ts");
      expect(bad.status).not.toBe(0);
      expect(bad.stdout + bad.stderr).toMatch(/format|lint/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
