import { describe, expect, it } from "vitest";
import { checkCron, longestEmptyHours, longestFullAgeMinutes, longestGapMinutes, runMinutes } from "../../infra/cron.ts";

const problemOf = (expr: string) => {
  const checked = checkCron(expr);
  return "problem" in checked ? checked.problem : undefined;
};
const runsOf = (expr: string) => runMinutes(expr)!;

describe("cron schedules", () => {
  it.each([
    ["0 */6 * * *", undefined, 360],
    ["*/30 * * * *", undefined, 30],
    ["0 4 1 * *", undefined, 31 * 24 * 60],
    ["15 3 * * MON-FRI", undefined, 3 * 24 * 60],
    ["0 0 29 FEB *", undefined, (Date.UTC(2031, 0, 1) - Date.UTC(2026, 0, 1)) / 60_000],
    ["0 0,12 * * 0,7", undefined, 6 * 24 * 60 + 12 * 60],
    ["* * * * *", undefined, 1],
    ["every 6 hours", "must be a 5-field cron expression (minute hour day-of-month month day-of-week, UTC)", undefined],
    ["a b c d e", "minute 'a' is outside 0-59", undefined],
    ["99 */6 * * *", "minute '99' is outside 0-59", undefined],
    ["0 */0 * * *", "hour '*/0' has a step of 0", undefined],
    ["0 0 31 2 *", "never runs (no day matches it)", undefined],
    ["0 0 * 13 *", "month '13' is outside 1-12", undefined],
    ["0 0 1-x * *", "day of month '1-x' is outside 1-31", undefined],
    ["0 0 5-1 * *", "day of month '5-1' is outside 1-31", undefined],
  ] as const)("%s", (expr, problem, gap) => {
    expect(problemOf(expr)).toBe(problem);
    if (gap !== undefined) expect(longestGapMinutes(runsOf(expr))).toBe(gap);
  });

  it.each([
    // schedule, full due after (min), the newest full's longest age (h), the most empty clock hours in a row
    ["0 */6 * * *", 330, 6, 5],
    ["0 * * * *", 330, 6, 0],
    ["0 */4 * * *", 330, 8, 3],
    ["0 */5 * * *", 330, 10, 4],
    ["0 3 * * *", 330, 24, 23],
    ["0,50 0,8,16 * * *", 330, 8, 7],
  ] as const)("%s: fulls once due after %i min age to %i h; %i empty hours", (expr, due, age, empty) => {
    expect(longestFullAgeMinutes(runsOf(expr), due) / 60).toBe(age);
    expect(longestEmptyHours(runsOf(expr))).toBe(empty);
  });

  it("day of month and day of week: ORed when both are restricted, ANDed when one starts with *", () => {
    expect(longestGapMinutes(runsOf("0 0 1 * MON"))).toBeLessThan(7 * 24 * 60 + 1);
    // '*/2' starts with '*': odd days AND Mondays, as cron reads it, so some weeks have no run.
    expect(longestGapMinutes(runsOf("0 0 */2 * 1"))).toBeGreaterThan(7 * 24 * 60);
  });
});
