/**
 * Five-field cron expressions (UTC), as Render cron jobs and Cloudflare cron triggers take them: minute, hour,
 * day of month, month, day of week. Checked before `up`, so a schedule that cannot parse, or never fires, or
 * leaves longer between backups than the freshness alarms allow, fails the plan instead of the deploy or the
 * night.
 */

const FIELDS = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12, names: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"] },
  { name: "day of week", min: 0, max: 7, names: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"] },
] as const;

/** The values each field allows, or why the expression is not one. */
export function parseCron(expr: string): Set<number>[] | string {
  const parts = expr.trim().split(/\s+/);
  if (parts.length !== 5) return "must be a 5-field cron expression (minute hour day-of-month month day-of-week, UTC)";
  const sets: Set<number>[] = [];
  for (const [i, part] of parts.entries()) {
    const f = FIELDS[i]!;
    const names: readonly string[] = "names" in f ? f.names : [];
    const value = (s: string): number => {
      const named = names.indexOf(s.toUpperCase());
      if (named >= 0) return named + (f.name === "month" ? 1 : 0);
      return /^\d+$/.test(s) ? Number(s) : Number.NaN;
    };
    const set = new Set<number>();
    for (const item of part.split(",")) {
      const m = /^(\*|([^-/]+)(?:-([^-/]+))?)(?:\/(\d+))?$/.exec(item);
      if (!m) return `${f.name} '${item}' is not a value, a range or a step`;
      const from = m[1] === "*" ? f.min : value(m[2]!);
      const to = m[1] === "*" ? f.max : m[3] !== undefined ? value(m[3]) : m[4] !== undefined ? f.max : from;
      const step = m[4] === undefined ? 1 : Number(m[4]);
      if (!Number.isInteger(from) || !Number.isInteger(to) || from < f.min || to > f.max || from > to) return `${f.name} '${item}' is outside ${f.min}-${f.max}`;
      if (step < 1) return `${f.name} '${item}' has a step of 0`;
      for (let v = from; v <= to; v += step) set.add(f.name === "day of week" && v === 7 ? 0 : v);
    }
    sets.push(set);
  }
  return sets;
}

const WINDOW_START = Date.UTC(2026, 0, 1);
/** Five years: every weekday meets every date, and a leap day comes. */
const WINDOW_END = Date.UTC(2031, 0, 1);
const WINDOW_MINUTES = (WINDOW_END - WINDOW_START) / 60_000;

/**
 * Every run over the five years from 2026, in minutes from its start; undefined when the expression does not
 * parse. Day of month and day of week are ORed when both are restricted (neither starts with `*`), as cron does.
 */
export function runMinutes(expr: string): number[] | undefined {
  const sets = parseCron(expr);
  if (typeof sets === "string") return undefined;
  const [minutes, hours, days, months, weekdays] = sets as [Set<number>, Set<number>, Set<number>, Set<number>, Set<number>];
  const parts = expr.trim().split(/\s+/);
  const anyDay = parts[2]!.startsWith("*");
  const anyWeekday = parts[4]!.startsWith("*");
  const hourList = [...hours].sort((a, b) => a - b);
  const minuteList = [...minutes].sort((a, b) => a - b);
  const runs: number[] = [];
  for (let day = WINDOW_START; day < WINDOW_END; day += 86_400_000) {
    const d = new Date(day);
    if (!months.has(d.getUTCMonth() + 1)) continue;
    const dayOk = days.has(d.getUTCDate());
    const weekdayOk = weekdays.has(d.getUTCDay());
    if (!(anyDay || anyWeekday ? dayOk && weekdayOk : dayOk || weekdayOk)) continue;
    const base = (day - WINDOW_START) / 60_000;
    for (const h of hourList) for (const m of minuteList) runs.push(base + h * 60 + m);
  }
  return runs;
}

/** The longest time between two runs, in minutes, counting round from the last to the first (`runs` of `runMinutes`, not empty). */
export function longestGapMinutes(runs: readonly number[]): number {
  let longest = runs[0]! + WINDOW_MINUTES - runs.at(-1)!;
  for (let i = 1; i < runs.length; i++) longest = Math.max(longest, runs[i]! - runs[i - 1]!);
  return longest;
}

/** The most clock hours in a row with no run (what an hourly "no success" alarm counts), counting round. */
export function longestEmptyHours(runs: readonly number[]): number {
  const hour = (m: number) => Math.floor(m / 60);
  let longest = hour(runs[0]! + WINDOW_MINUTES) - hour(runs.at(-1)!) - 1;
  for (let i = 1; i < runs.length; i++) longest = Math.max(longest, hour(runs[i]!) - hour(runs[i - 1]!) - 1);
  return longest;
}

/**
 * How old the newest full backup gets, in minutes, when each run takes a full once the last one is `dueMinutes`
 * old (`auto`) and an incremental otherwise: the longest time between two fulls.
 */
export function longestFullAgeMinutes(runs: readonly number[], dueMinutes: number): number {
  let longest = 0;
  let full = runs[0]!;
  for (const t of runs) {
    if (t - full < dueMinutes) continue;
    longest = Math.max(longest, t - full);
    full = t;
  }
  // After the last full, the newest full ages until the first full of the next round.
  return Math.max(longest, runs.find((t) => t + WINDOW_MINUTES - full >= dueMinutes)! + WINDOW_MINUTES - full);
}

/** A schedule's runs (`runMinutes`, never empty), or why it cannot be used. */
export function checkCron(expr: string): { runs: number[] } | { problem: string } {
  const parsed = parseCron(expr);
  if (typeof parsed === "string") return { problem: parsed };
  const runs = runMinutes(expr)!;
  return runs.length === 0 ? { problem: "never runs (no day matches it)" } : { runs };
}
