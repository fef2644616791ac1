import { describeValue } from "./errors.ts";

/**
 * Checks of a parsed JSON value against the shape its type declares, for core's contracts (the manifest, the
 * retention policy). Pure, and no library: zod cost the CLI 16 MiB at start-up (issue 16).
 *
 * A check returns the value rebuilt from what it declares (an object keeps only its declared fields, as zod's
 * objects did) and records each problem as `<path>: expected <what>, got <value>`, the path dotted from the root
 * (`files.0.sha256`). It goes on after a problem, so the caller throws every problem at once.
 */
export type Check<T> = (value: unknown, path: string, problems: string[]) => T;

/** One check per field of `T`, optional ones included. */
export type Fields<T> = { [K in keyof T]-?: Check<T[K]> };

/** The path of a field or an item under `path` (`""` is the root). */
export function pathOf(path: string, key: string | number): string {
  return path === "" ? String(key) : `${path}.${key}`;
}

/** Records that the value at `path` is not what was expected. */
export function expected(problems: string[], path: string, what: string, value: unknown): void {
  const got = value === undefined ? "nothing" : value === "" ? "an empty string" : describeValue(value);
  problems.push(`${path || "(root)"}: expected ${what}, got ${got}`);
}

/** A check from a predicate and what it expects. */
export function rule<T>(what: string, test: (value: unknown) => boolean): Check<T> {
  return (value, path, problems) => {
    if (!test(value)) expected(problems, path, what, value);
    return value as T;
  };
}

export const string: Check<string> = rule("a string", (v) => typeof v === "string");
export const nonEmptyString: Check<string> = rule("a non-empty string", (v) => typeof v === "string" && v.length > 0);

/** A safe integer, at least `min` when given. */
export function wholeNumber(min?: number): Check<number> {
  return rule(min === undefined ? "a whole number" : `a whole number >= ${min}`, (v) => Number.isSafeInteger(v) && (min === undefined || (v as number) >= min));
}

/** A finite number, at least `min` when given. */
export function finiteNumber(min?: number): Check<number> {
  return rule(min === undefined ? "a number" : `a number >= ${min}`, (v) => typeof v === "number" && Number.isFinite(v) && (min === undefined || v >= min));
}

/** One of the given strings: `'full' or 'incremental'`. */
export function oneOf<const T extends readonly string[]>(...values: T): Check<T[number]> {
  const quoted = values.map((v) => `'${v}'`);
  const what = quoted.length === 1 ? quoted[0]! : `${quoted.slice(0, -1).join(", ")} or ${quoted.at(-1)}`;
  return rule(what, (v) => typeof v === "string" && values.includes(v));
}

/** Absent (undefined) or what `check` accepts. */
export function optional<T>(check: Check<T>): Check<T | undefined> {
  return (value, path, problems) => (value === undefined ? undefined : check(value, path, problems));
}

/** null or what `check` accepts. */
export function nullable<T>(check: Check<T>): Check<T | null> {
  return (value, path, problems) => (value === null ? null : check(value, path, problems));
}

/** A list of what `check` accepts, of at least `minItems` items. */
export function listOf<T>(check: Check<T>, minItems = 0): Check<T[]> {
  return (value, path, problems) => {
    if (!Array.isArray(value) || value.length < minItems) {
      expected(problems, path, minItems > 0 ? `a list of at least ${minItems}` : "a list", value);
      return value as T[];
    }
    return value.map((item, i) => check(item, pathOf(path, i), problems));
  };
}

/** A list of exactly two items. */
export function pair<A, B>(first: Check<A>, second: Check<B>): Check<[A, B]> {
  return (value, path, problems) => {
    if (!Array.isArray(value) || value.length !== 2) {
      expected(problems, path, "a list of 2", value);
      return value as [A, B];
    }
    return [first(value[0], pathOf(path, 0), problems), second(value[1], pathOf(path, 1), problems)];
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** An object whose every value `check` accepts (any keys). */
export function recordOf<T>(check: Check<T>): Check<Record<string, T>> {
  return (value, path, problems) => {
    if (!isObject(value)) {
      expected(problems, path, "an object", value);
      return value as Record<string, T>;
    }
    return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, check(v, pathOf(path, key), problems)]));
  };
}

/**
 * An object with the declared fields. Other fields are dropped (`strip`, for formats that may grow: an older
 * reader ignores a newer field) or each one is a problem (`reject`, for a config where a typo must not pass).
 * A field that is absent stays absent.
 */
export function object<T>(fields: Fields<T>, unknown: "strip" | "reject" = "strip"): Check<T> {
  return (value, path, problems) => {
    if (!isObject(value)) {
      expected(problems, path, "an object", value);
      return value as T;
    }
    const out: Record<string, unknown> = {};
    for (const [key, check] of Object.entries(fields) as [string, Check<unknown>][]) {
      const v = check(Object.hasOwn(value, key) ? value[key] : undefined, pathOf(path, key), problems);
      if (v !== undefined) out[key] = v;
    }
    if (unknown === "reject") {
      for (const key of Object.keys(value)) {
        if (!Object.hasOwn(fields, key)) problems.push(`${pathOf(path, key)}: unknown field (expected only ${Object.keys(fields).join(", ")})`);
      }
    }
    return out as T;
  };
}
