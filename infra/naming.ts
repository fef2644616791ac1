/**
 * Physical names. Every cloud-side name comes from `physicalName()` and carries the stack, so a preview
 * stack (`pr-42`) can never collide with, or overwrite, a production resource.
 */

/** The Pulumi project name (config keys are `r2-sqlite-backup:<key>`). */
export const PROJECT = "r2-sqlite-backup";

/** Preview stacks are `pr-<number>`: no lock, no protection, workers.dev, nothing shared with production. */
export function isPreviewStack(stack: string): boolean {
  return /^pr-[0-9]+$/.test(stack);
}

/**
 * Why a stack name cannot be used, or undefined. Physical names fold case and turn other characters into `-`,
 * so `PROD`, `prod_` or `pr_42` would name `prod`'s or `pr-42`'s resources, and a `pulumi up` of one would
 * replace the other's Worker and tokens: a stack name must already be what `physicalName` keeps.
 */
export function stackNameProblem(stack: string): string | undefined {
  if (/^[a-z0-9]+(-[a-z0-9]+)*$/.test(stack)) return undefined;
  if (stack === "") return "is empty: name a stack (e.g. prod, staging, pr-42)";
  return `must be lowercase letters, digits and single '-' between them (e.g. prod, staging, pr-42), as the cloud names it carries: '${stack}' would get the cloud names of stack '${physicalName(stack, "", "")}'`;
}

/** Longest name every target accepts (R2 buckets and Worker scripts: 63; Render and AWS allow more). */
export const MAX_NAME_LENGTH = 63;

/**
 * `<project>-<stack>-<role>`, lowercase letters, digits and `-` only (R2's bucket-name rule, the strictest
 * of the targets). Overlong names keep their end (stack and role) and get a short stable hash instead.
 */
export function physicalName(stack: string, role: string, project: string = PROJECT): string {
  const clean = (s: string) =>
    s
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, "-")
      .replace(/-+/g, "-")
      .replace(/^-|-$/g, "");
  const name = [clean(project), clean(stack), clean(role)].filter((s) => s.length > 0).join("-");
  if (name.length <= MAX_NAME_LENGTH) return name;
  const hash = fnv1a(name).toString(16).padStart(8, "0");
  const tail = `${clean(stack)}-${clean(role)}`.slice(-(MAX_NAME_LENGTH - hash.length - 1)).replace(/^-+/, "");
  return `${hash}-${tail}`;
}

/** 32-bit FNV-1a: a short, stable suffix for names that must be shortened (not for security). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
