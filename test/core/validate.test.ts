import { describe, expect, it } from "vitest";
import { finiteNumber, listOf, nonEmptyString, nullable, object, oneOf, optional, pair, recordOf, rule, string, wholeNumber, type Check } from "../../core/validate.ts";

/** Runs a check at the path `x`: what it returns and the problems it records. */
function run<T>(check: Check<T>, value: unknown): { value: T; problems: string[] } {
  const problems: string[] = [];
  return { value: check(value, "x", problems), problems };
}

describe("the checks of core's contracts", () => {
  // Each rule: one value it takes, one it refuses with the message it records.
  it.each<[string, Check<unknown>, unknown, unknown, string]>([
    ["string", string, "", 1, "x: expected a string, got 1"],
    ["nonEmptyString", nonEmptyString, "a", "", "x: expected a non-empty string, got an empty string"],
    ["wholeNumber()", wholeNumber(), -3, 1.5, "x: expected a whole number, got 1.5"],
    ["wholeNumber(): a safe integer", wholeNumber(), Number.MAX_SAFE_INTEGER, 2 ** 53, "x: expected a whole number, got 9007199254740992"],
    ["wholeNumber(0)", wholeNumber(0), 0, -1, "x: expected a whole number >= 0, got -1"],
    ["wholeNumber(1)", wholeNumber(1), 1, 0, "x: expected a whole number >= 1, got 0"],
    ["finiteNumber()", finiteNumber(), -0.5, Number.NaN, "x: expected a number, got NaN"],
    ["finiteNumber(0)", finiteNumber(0), 0.5, Number.POSITIVE_INFINITY, "x: expected a number >= 0, got Infinity"],
    ["oneOf, one value", oneOf("ok"), "ok", "corrupt", "x: expected 'ok', got corrupt"],
    ["oneOf, two values", oneOf("zstd", "none"), "none", "gzip", "x: expected 'zstd' or 'none', got gzip"],
    ["oneOf, three values", oneOf("rows", "derived", "none"), "derived", null, "x: expected 'rows', 'derived' or 'none', got null"],
    ["optional", optional(string), undefined, null, "x: expected a string, got null"],
    ["nullable", nullable(string), null, undefined, "x: expected a string, got nothing"],
    ["listOf", listOf(string), [], { 0: "a" }, 'x: expected a list, got {"0":"a"}'],
    ["listOf, minItems", listOf(string, 1), ["a"], [], "x: expected a list of at least 1, got []"],
    ["listOf, its items", listOf(string), ["a", "b"], ["a", 2], "x.1: expected a string, got 2"],
    ["pair", pair(string, string), ["a", "b"], ["a", "b", "c"], 'x: expected a list of 2, got ["a","b","c"]'],
    ["pair, its items", pair(wholeNumber(), wholeNumber()), [1, 2], [1, "2"], "x.1: expected a whole number, got 2"],
    ["recordOf", recordOf(wholeNumber(0)), {}, [], "x: expected an object, got []"],
    ["recordOf, its values", recordOf(wholeNumber(0)), { "a/b": 1 }, { "a/b": -1 }, "x.a/b: expected a whole number >= 0, got -1"],
    ["object", object<{ a: string }>({ a: string }), { a: "" }, "a", "x: expected an object, got a"],
    ["object, its fields", object<{ a: string }>({ a: string }), { a: "" }, {}, "x.a: expected a string, got nothing"],
    ["object, strict", object<{ a?: string }>({ a: optional(string) }, "reject"), {}, { b: 1 }, "x.b: unknown field (expected only a)"],
    ["rule", rule("an even number", (v) => typeof v === "number" && v % 2 === 0), 2, 3, "x: expected an even number, got 3"],
  ])("%s: takes %j, refuses %j", (_name, check, good, bad, message) => {
    expect(run(check, good)).toEqual({ value: good, problems: [] });
    expect(run(check, bad).problems).toEqual([message]);
  });

  it("names the root '(root)' and records every problem, in field order", () => {
    const problems: string[] = [];
    object<{ a: string; b: number[] }>({ a: string, b: listOf(wholeNumber()) })({ a: 1, b: [1, "x", 2.5] }, "", problems);
    expect(problems).toEqual(["a: expected a string, got 1", "b.1: expected a whole number, got x", "b.2: expected a whole number, got 2.5"]);
    const atRoot: string[] = [];
    string(null, "", atRoot);
    expect(atRoot).toEqual(["(root): expected a string, got null"]);
  });

  it("an object keeps only its declared fields, and an absent one stays absent", () => {
    const check = object<{ a: string; b?: string; c: { d: number } }>({ a: string, b: optional(string), c: object({ d: wholeNumber() }) });
    const { value, problems } = run(check, { a: "x", extra: 1, c: { d: 1, more: true } });
    expect(problems).toEqual([]);
    expect(value).toStrictEqual({ a: "x", c: { d: 1 } });
    expect(Object.keys(value)).toEqual(["a", "c"]);
  });

  it("an object reads only its own fields, not inherited ones", () => {
    expect(run(object<{ toString: string }>({ toString: string }), {}).problems).toEqual(["x.toString: expected a string, got nothing"]);
  });
});
