import { ContractError, describeValue } from "./errors.ts";
import { dayOfTimestamp, formatDay, parseDay, parseTimestamp, type BackupDay, type BackupTimestamp } from "./time.ts";

/**
 * The storage layout of docs/design.md, owned here and nowhere else:
 * ```
 * backups/full/<ts>/<source>.db.zst | documents.tar.zst | metadata.json
 * backups/incremental/<ts>/changes.ndjson.zst | metadata.json
 * backups/daily/<yyyy-mm-dd>/<same files as full>
 * backups/drills/<ts>.json | <ts>.failed.json   (a passed or a failed restore drill)
 * backups/state/<name>          (the only overwritable keys)
 * ```
 */
export const ROOT = "backups/";
export const PREFIXES = {
  full: "backups/full/",
  incremental: "backups/incremental/",
  daily: "backups/daily/",
  drills: "backups/drills/",
  state: "backups/state/",
} as const;

export const MANIFEST_FILE = "metadata.json";
export const DOCUMENTS_FILE = "documents.tar.zst";
export const CHANGES_FILE = "changes.ndjson.zst";
export const DATABASE_SUFFIX = ".db.zst";
export const FAILED_DRILL_SUFFIX = ".failed.json";

/** Longest key the Worker accepts (R2 allows 1,024; we keep headroom for the API path). */
export const MAX_KEY_BYTES = 512;

/** A database's name inside a backup: letters, digits, `.`, `_`, `-`, `@` (LiveStore's `eventlog@6`). */
const SOURCE_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
const STATE_SEGMENT_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;

export type BackupSetKind = "full" | "incremental" | "daily";

/** Every kind of key, as data. `file` is the last segment of a backup set's object. */
export type BackupKey =
  | { kind: "full"; ts: BackupTimestamp; file: string }
  | { kind: "incremental"; ts: BackupTimestamp; file: string }
  | { kind: "daily"; day: BackupDay; file: string }
  | { kind: "drill"; ts: BackupTimestamp; failed?: true }
  | { kind: "state"; name: string };

/** Validates a database source name (the `<source>` of `<source>.db.zst`). */
export function assertSourceName(source: string): string {
  if (typeof source !== "string" || !SOURCE_RE.test(source) || source.includes("..")) {
    throw new ContractError(
      "validate",
      "source name",
      describeValue(source),
      "expected 1-128 characters of letters, digits, '.', '_', '-', '@', starting with a letter or digit",
      "name the database with --source, or rename the file",
    );
  }
  return source;
}

/** The object file name of a database snapshot. */
export function databaseFile(source: string): string {
  return `${assertSourceName(source)}${DATABASE_SUFFIX}`;
}

/** The source name of a database object file, or undefined when the file is not a database. */
export function sourceOfFile(file: string): string | undefined {
  if (!file.endsWith(DATABASE_SUFFIX)) return undefined;
  const source = file.slice(0, -DATABASE_SUFFIX.length);
  return SOURCE_RE.test(source) && !source.includes("..") ? source : undefined;
}

function assertSetFile(kind: BackupSetKind, file: string, key: string): void {
  const ok = kind === "incremental" ? file === MANIFEST_FILE || file === CHANGES_FILE : file === MANIFEST_FILE || file === DOCUMENTS_FILE || sourceOfFile(file) !== undefined;
  if (!ok) {
    const expected = kind === "incremental" ? `'${MANIFEST_FILE}' or '${CHANGES_FILE}'` : `'${MANIFEST_FILE}', '${DOCUMENTS_FILE}' or '<source>${DATABASE_SUFFIX}'`;
    throw new ContractError("parse", "backup key", key, `the file '${file}' is not one of ${expected}`);
  }
}

function assertStateName(name: string, key: string): void {
  const segments = name.split("/");
  if (!segments.every((s) => STATE_SEGMENT_RE.test(s) && s !== "..")) {
    throw new ContractError("parse", "backup key", key, "a state name is one or more '/'-separated segments of letters, digits, '.', '_', '-', '@'");
  }
}

/** Formats a key; throws a ContractError naming the bad part. Round-trips with `parseBackupKey`. */
export function formatBackupKey(key: BackupKey): string {
  let text: string;
  switch (key?.kind) {
    case "full":
    case "incremental":
      parseTimestamp(key.ts);
      text = `${PREFIXES[key.kind]}${key.ts}/${key.file}`;
      assertSetFile(key.kind, key.file, text);
      break;
    case "daily":
      parseDay(key.day);
      text = `${PREFIXES.daily}${key.day}/${key.file}`;
      assertSetFile("daily", key.file, text);
      break;
    case "drill":
      parseTimestamp(key.ts);
      // A failed drill has its own suffix, so a listing alone tells the last good drill from the last one.
      text = `${PREFIXES.drills}${key.ts}${key.failed ? FAILED_DRILL_SUFFIX : ".json"}`;
      break;
    case "state":
      text = `${PREFIXES.state}${key.name}`;
      assertStateName(key.name, text);
      break;
    default:
      throw new ContractError("format", "backup key", describeValue(key), "expected kind full, incremental, daily, drill or state");
  }
  assertKeyLength(text);
  return text;
}

/** Parses any key of the layout; rejects anything else with the reason. */
export function parseBackupKey(key: string): BackupKey {
  if (typeof key !== "string") throw new ContractError("parse", "backup key", describeValue(key), "expected a string");
  assertKeyLength(key);
  const parts = key.split("/");
  const [root, area, ...rest] = parts;
  if (root !== "backups" || area === undefined) {
    throw new ContractError("parse", "backup key", key, "expected a key under 'backups/'");
  }
  const fail = (reason: string): never => {
    throw new ContractError("parse", "backup key", key, reason);
  };
  switch (area) {
    case "full":
    case "incremental":
    case "daily": {
      if (rest.length !== 2) fail(`expected backups/${area}/<${area === "daily" ? "yyyy-mm-dd" : "ts"}>/<file>`);
      const [when, file] = rest as [string, string];
      if (area === "daily") {
        try {
          parseDay(when);
        } catch (e) {
          fail((e as ContractError).reason ?? "bad day");
        }
        assertSetFile("daily", file, key);
        return { kind: "daily", day: when, file };
      }
      try {
        parseTimestamp(when);
      } catch (_e) {
        fail(`'${when}' is not a timestamp: expected UTC YYYYMMDDTHHMMSSZ`);
      }
      assertSetFile(area, file, key);
      return { kind: area, ts: when, file };
    }
    case "drills": {
      const [file] = rest;
      if (rest.length !== 1 || !file?.endsWith(".json")) fail("expected backups/drills/<ts>.json or <ts>.failed.json");
      const failed = file!.endsWith(FAILED_DRILL_SUFFIX);
      const ts = file!.slice(0, -(failed ? FAILED_DRILL_SUFFIX : ".json").length);
      try {
        parseTimestamp(ts);
      } catch {
        fail(`'${ts}' is not a timestamp: expected UTC YYYYMMDDTHHMMSSZ`);
      }
      return failed ? { kind: "drill", ts, failed: true } : { kind: "drill", ts };
    }
    case "state": {
      const name = rest.join("/");
      assertStateName(name, key);
      return { kind: "state", name };
    }
    default:
      return fail("expected backups/full|incremental|daily|drills|state/...");
  }
}

function assertKeyLength(key: string): void {
  const bytes = new TextEncoder().encode(key).length;
  if (bytes > MAX_KEY_BYTES) {
    throw new ContractError("validate", "backup key", `${key.slice(0, 60)}...`, `is ${bytes} bytes, at most ${MAX_KEY_BYTES} are allowed`);
  }
}

/**
 * The Worker's key rule (docs/design.md, Worker API): `backups/(full|incremental|daily|drills|state)/...`, no `..`,
 * no empty segment, no control characters, at most 512 bytes. Looser than `parseBackupKey` on purpose: the
 * Worker is storage, and only the job needs to understand a key's structure.
 */
export function validateObjectKey(key: string): string {
  if (typeof key !== "string" || key.length === 0) {
    throw new ContractError("validate", "backup key", describeValue(key), "expected a non-empty key");
  }
  assertKeyLength(key);
  if (!/^backups\/(full|incremental|daily|drills|state)\//.test(key)) {
    throw new ContractError("validate", "backup key", key, "expected a key under backups/full|incremental|daily|drills|state/");
  }
  const segments = key.split("/");
  if (segments.some((s) => s === "")) throw new ContractError("validate", "backup key", key, "has an empty path segment");
  if (segments.some((s) => s === ".." || s === ".")) throw new ContractError("validate", "backup key", key, "has a '.' or '..' segment");
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(key)) throw new ContractError("validate", "backup key", key, "has a control character or a backslash");
  return key;
}

/** True when a key may be overwritten: only the mutable pointers under `backups/state/`. */
export function isOverwritableKey(key: string): boolean {
  return key.startsWith(PREFIXES.state);
}

/** The prefix of one backup set, e.g. `backups/full/20260131T060000Z/`. */
export function backupSetPrefix(kind: "full" | "incremental", ts: BackupTimestamp): string;
export function backupSetPrefix(kind: "daily", day: BackupDay): string;
export function backupSetPrefix(kind: BackupSetKind, id: string): string {
  if (kind === "daily") parseDay(id);
  else parseTimestamp(id);
  return `${PREFIXES[kind]}${id}/`;
}

/** The manifest key of a backup set. */
export function manifestKey(kind: BackupSetKind, id: string): string {
  return kind === "daily" ? formatBackupKey({ kind, day: id, file: MANIFEST_FILE }) : formatBackupKey({ kind, ts: id, file: MANIFEST_FILE });
}

/** The daily key a full backup's file is promoted to. */
export function dailyKeyFor(fullTs: BackupTimestamp, file: string): string {
  return formatBackupKey({ kind: "daily", day: dayOfTimestamp(fullTs), file });
}

/** The key of one file of a set, for the set's own location. */
export function fileKey(setKind: BackupSetKind, setId: string, name: string): string {
  return setKind === "daily" ? formatBackupKey({ kind: "daily", day: setId, file: name }) : formatBackupKey({ kind: setKind, ts: setId, file: name });
}

/**
 * Where the Worker keeps its per-key write claims (worker/src/claims.ts): outside `backups/`, so no key the
 * API accepts (`validateObjectKey`) can name one, and no client can write or delete a claim.
 */
export const CLAIMS_PREFIX = ".claims/";

/** True when a backup timestamp is more than `maxSkewMs` after `now`: it cannot come from the Worker's clock. */
export function isFutureTimestamp(ts: BackupTimestamp, now: Date, maxSkewMs: number): boolean {
  return parseTimestamp(ts).getTime() > now.getTime() + maxSkewMs;
}

/** True when a UTC day is after the day of `now + maxSkewMs` (today's daily key is fine all day). */
export function isFutureDay(day: BackupDay, now: Date, maxSkewMs: number): boolean {
  return day > formatDay(new Date(now.getTime() + maxSkewMs));
}

const TS_PREFIX_RE = /^\d{8}T\d{6}Z/;

/**
 * The one-clock rule of the Worker (issue 13): why a write to `key` is refused because its set id is in the
 * future, or undefined when it is not. `full/<ts>/`, `incremental/<ts>/` and `drills/<ts>...` are future when
 * `<ts>` is more than `maxSkewMs` after `now`; `daily/<day>/` when the day is after the day of `now + maxSkewMs`.
 * It reads keys as loosely as `validateObjectKey` accepts them (any file name), so a stray object cannot slip
 * past; `state/` and ids that are not times have no date and pass.
 */
export function futureKeyReason(key: string, now: Date, maxSkewMs: number): string | undefined {
  const [root, area, id = ""] = key.split("/");
  if (root !== "backups") return undefined;
  const ahead = (at: Date) => `${Math.round(((at.getTime() - now.getTime()) / 3_600_000) * 100) / 100} hours`;
  if (area === "full" || area === "incremental" || area === "drills") {
    const ts = TS_PREFIX_RE.exec(id)?.[0];
    if (ts === undefined) return undefined;
    let at: Date;
    try {
      at = parseTimestamp(ts);
    } catch {
      return undefined;
    }
    if (!isFutureTimestamp(ts, now, maxSkewMs)) return undefined;
    return `the set id ${ts} is ${ahead(at)} after the Worker's clock (${now.toISOString()}; at most ${maxSkewMs / 60_000} minutes of skew are allowed)`;
  }
  if (area === "daily") {
    let at: Date;
    try {
      at = parseDay(id);
    } catch {
      return undefined;
    }
    if (!isFutureDay(id, now, maxSkewMs)) return undefined;
    return `the day ${id} is after the Worker's UTC day (${formatDay(now)}, ${now.toISOString()}; ${ahead(at)} ahead)`;
  }
  return undefined;
}
