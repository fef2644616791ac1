import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

/** The Worker's entry point and the compatibility settings it is deployed and tested with. */
export const WORKER_ENTRY = fileURLToPath(new URL("./src/index.ts", import.meta.url));
export const WORKER_MAIN_MODULE = "index.js";
export const COMPATIBILITY_DATE = "2025-06-01";
export const COMPATIBILITY_FLAGS = ["nodejs_compat"];

export interface WorkerBundle {
  /** The ES module text, as deployed (`WorkersScript.content`) and as run in Miniflare. */
  code: string;
  /** Lowercase hex sha256 of `code`. */
  sha256: string;
}

/**
 * Bundles `worker/` with esbuild, in memory. Infra calls it when the program runs (never inside an
 * `apply`), tests and `npm run dev` run its output in Miniflare, so all three run the same bytes.
 */
export async function bundleWorker(options: { minify?: boolean } = {}): Promise<WorkerBundle> {
  const result = await build({
    entryPoints: [WORKER_ENTRY],
    bundle: true,
    format: "esm",
    target: "es2022",
    platform: "neutral",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["browser", "module", "main"],
    external: ["node:*", "cloudflare:*"],
    minify: options.minify ?? false,
    sourcemap: false,
    write: false,
    logLevel: "silent",
    legalComments: "none",
  });
  const file = result.outputFiles[0];
  if (!file) throw new Error(`bundle worker '${WORKER_ENTRY}': esbuild produced no output`);
  const code = file.text;
  return { code, sha256: createHash("sha256").update(code).digest("hex") };
}

/** Writes the bundle to `dist/worker/index.js` (for `npm run build`) and returns its path. */
export async function writeWorkerBundle(outDir = fileURLToPath(new URL("../dist/worker/", import.meta.url))): Promise<string> {
  const bundle = await bundleWorker();
  const path = join(outDir, WORKER_MAIN_MODULE);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, bundle.code);
  return path;
}
