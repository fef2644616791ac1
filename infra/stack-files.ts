import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { InfraError } from "./errors.ts";
import { PROJECT } from "./naming.ts";

/** The repository root (where `Pulumi.yaml` and the stack files live). */
export const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));

/** A stack's config as the Pulumi CLI hands it to the program: `<ns>:<key>` to a string, plus which are secret. */
export interface StackFileConfig {
  values: Record<string, string>;
  secretKeys: string[];
}

/** Shown instead of a `secure:` value, which only the CLI can decrypt. */
export const SECRET_PLACEHOLDER = "[secret]";

/**
 * Reads `Pulumi.<stack>.yaml`, or undefined when there is none. Values become strings the way the CLI
 * passes them (lists and objects as JSON); `secure:` values become the placeholder and are marked secret.
 */
export function readStackFile(stack: string, root: string = REPO_ROOT): StackFileConfig | undefined {
  const path = join(root, `Pulumi.${stack}.yaml`);
  if (!existsSync(path)) return undefined;
  let doc: unknown;
  try {
    doc = parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new InfraError("read", "stack file", path, (error as Error).message, "fix the YAML syntax");
  }
  const config = (doc as { config?: Record<string, unknown> } | null)?.config ?? {};
  const values: Record<string, string> = {};
  const secretKeys: string[] = [];
  for (const [rawKey, value] of Object.entries(config)) {
    const key = rawKey.includes(":") ? rawKey : `${PROJECT}:${rawKey}`;
    if (value !== null && typeof value === "object" && !Array.isArray(value) && "secure" in value) {
      values[key] = SECRET_PLACEHOLDER;
      secretKeys.push(key);
    } else {
      values[key] = typeof value === "string" ? value : JSON.stringify(value);
    }
  }
  return { values, secretKeys };
}

/** The project's own non-secret keys of a stack file, without the `<project>:` prefix. */
export function projectValues(file: StackFileConfig | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(file?.values ?? {})) {
    if (key.startsWith(`${PROJECT}:`) && !file?.secretKeys.includes(key)) out[key.slice(PROJECT.length + 1)] = value;
  }
  return out;
}

/** One `config:` declaration of `Pulumi.yaml`. */
export interface ProjectConfigDeclaration {
  type?: string;
  description?: string;
  default?: unknown;
  items?: { type: string };
}

/** The `config:` declarations of `Pulumi.yaml`. */
export function readProjectDeclarations(root: string = REPO_ROOT): Record<string, ProjectConfigDeclaration> {
  const doc = parse(readFileSync(join(root, "Pulumi.yaml"), "utf8")) as { config?: Record<string, ProjectConfigDeclaration> };
  return doc.config ?? {};
}

/**
 * A stack's config as the CLI would pass it: `Pulumi.yaml` defaults, overlaid by the stack file. This is
 * what `npm run plan` feeds the program under mocks.
 */
export function mergedStackConfig(stack: string, root: string = REPO_ROOT): StackFileConfig & { hasStackFile: boolean } {
  const values: Record<string, string> = {};
  for (const [key, decl] of Object.entries(readProjectDeclarations(root))) {
    if (decl.default === undefined) continue;
    const full = key.includes(":") ? key : `${PROJECT}:${key}`;
    values[full] = typeof decl.default === "string" ? decl.default : JSON.stringify(decl.default);
  }
  const file = readStackFile(stack, root);
  return { values: { ...values, ...file?.values }, secretKeys: file?.secretKeys ?? [], hasStackFile: file !== undefined };
}
