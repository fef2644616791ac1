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

  it("has what the job needs from Node: node:sqlite's backup() and zstd in node:zlib", async () => {
    const sqlite = await import("node:sqlite");
    const zlib = await import("node:zlib");
    expect(typeof sqlite.backup).toBe("function");
    expect(typeof zlib.createZstdCompress).toBe("function");
  });
});
