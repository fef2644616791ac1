import { ContractError, describeValue } from "./errors.ts";

/** A backup timestamp: UTC `YYYYMMDDTHHMMSSZ`, so that string order is time order. */
export type BackupTimestamp = string;
/** A UTC day: `YYYY-MM-DD`, the key of the daily tier. */
export type BackupDay = string;

const TS_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const DAY_RE = /^(\d{4})-(\d{2})-(\d{2})$/;

function assertDate(operation: string, value: unknown): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new ContractError(operation, "time", describeValue(value), "expected a valid Date");
  }
  const year = value.getUTCFullYear();
  if (year < 1970 || year > 9999) {
    throw new ContractError(operation, "time", value.toISOString(), "expected a year between 1970 and 9999");
  }
  return value;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** Formats a time as a backup timestamp (seconds are truncated). */
export function formatTimestamp(time: Date): BackupTimestamp {
  const t = assertDate("format", time);
  return `${pad(t.getUTCFullYear(), 4)}${pad(t.getUTCMonth() + 1)}${pad(t.getUTCDate())}` + `T${pad(t.getUTCHours())}${pad(t.getUTCMinutes())}${pad(t.getUTCSeconds())}Z`;
}

/** Parses a backup timestamp; rejects anything that is not a real UTC second in `YYYYMMDDTHHMMSSZ`. */
export function parseTimestamp(ts: string): Date {
  const m = typeof ts === "string" ? TS_RE.exec(ts) : null;
  if (!m) {
    throw new ContractError("parse", "timestamp", describeValue(ts), "expected UTC YYYYMMDDTHHMMSSZ, e.g. 20260131T060000Z");
  }
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  if (formatTimestamp(date) !== ts) {
    throw new ContractError("parse", "timestamp", ts, "not a real calendar time");
  }
  return date;
}

/** True when `ts` is a well-formed backup timestamp. */
export function isTimestamp(ts: string): boolean {
  try {
    parseTimestamp(ts);
    return true;
  } catch {
    return false;
  }
}

/** The UTC day of a time, `YYYY-MM-DD`. */
export function formatDay(time: Date): BackupDay {
  const t = assertDate("format", time);
  return `${pad(t.getUTCFullYear(), 4)}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
}

/** Parses a `YYYY-MM-DD` day to its UTC midnight. */
export function parseDay(day: string): Date {
  const m = typeof day === "string" ? DAY_RE.exec(day) : null;
  if (!m) throw new ContractError("parse", "day", describeValue(day), "expected UTC YYYY-MM-DD, e.g. 2026-01-31");
  const [, y, mo, d] = m.map(Number) as [number, number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d));
  if (formatDay(date) !== day) throw new ContractError("parse", "day", day, "not a real calendar day");
  return date;
}

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?Z$/;
const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * True for a UTC time as `Date.toISOString()` writes it (`2026-01-31T06:00:00.000Z`, any fraction of a second or
 * none) that is a real calendar time: what manifests and the chain record (`createdAt`, `capturedAt`, ...).
 */
export function isIsoTime(value: unknown): value is string {
  const m = typeof value === "string" ? ISO_RE.exec(value) : null;
  if (!m) return false;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  const days = mo === 2 && leap ? 29 : MONTH_DAYS[mo - 1];
  return days !== undefined && d >= 1 && d <= days && h < 24 && mi < 60 && s < 60;
}

/** The UTC day a backup timestamp falls on. */
export function dayOfTimestamp(ts: BackupTimestamp): BackupDay {
  return formatDay(parseTimestamp(ts));
}

/**
 * Parses a user-given point in time: a backup timestamp, an ISO 8601 date-time with a zone, or `latest`
 * (returned as `"latest"`). Used by `restore --at` and `verify --at`.
 */
export function parsePointInTime(value: string): Date | "latest" {
  if (value === "latest") return "latest";
  if (TS_RE.test(value)) return parseTimestamp(value);
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value)) {
    const date = new Date(value);
    if (!Number.isNaN(date.getTime())) return date;
  }
  throw new ContractError(
    "parse",
    "point in time",
    describeValue(value),
    "expected 'latest', a backup timestamp (20260131T060000Z) or an ISO time with a zone (2026-01-31T06:00:00Z)",
  );
}
