import { ContractError, describeValue } from "./errors.ts";
import type { Watermark } from "./manifest.ts";

/**
 * The incremental format (`changes.ndjson.zst`, uncompressed): one JSON object per line,
 * `{"s": source, "t": table, "r": {column: value}}`, in key order per table. SQLite values map to JSON
 * except BLOBs (`{"$base64": "..."}`) and integers beyond 2^53 (`{"$int": "..."}`), so a row round-trips
 * exactly. The job writes it and restore reads it; both through these functions.
 */
export type SqlValue = null | number | bigint | string | Uint8Array;
export type Row = Record<string, SqlValue>;

export interface ChangeLine {
  source: string;
  table: string;
  row: Row;
}

/** A table exported incrementally: rows whose key tuple (`columns`, ascending) is past the watermark. */
export interface ChangeTable {
  table: string;
  columns: string[];
}

/** LiveStore's append-only event log (docs/design.md fact 7): keyed by the global then the client sequence number. */
export const DEFAULT_CHANGE_TABLES: readonly ChangeTable[] = Object.freeze([{ table: "eventlog", columns: ["seqNumGlobal", "seqNumClient"] }]);

function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function encodeValue(v: SqlValue): unknown {
  if (v instanceof Uint8Array) return { $base64: bytesToBase64(v) };
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : { $int: v.toString() };
  return v;
}

function decodeValue(v: unknown, where: string): SqlValue {
  if (v === null || typeof v === "number" || typeof v === "string") return v;
  if (typeof v === "object" && v !== null) {
    const o = v as Record<string, unknown>;
    if (typeof o.$base64 === "string") return base64ToBytes(o.$base64);
    if (typeof o.$int === "string" && /^-?\d+$/.test(o.$int)) return BigInt(o.$int);
  }
  throw new ContractError("decode", "change value", where, `unsupported value ${describeValue(v)}`);
}

/** One NDJSON line (without the newline). */
export function encodeChangeLine(change: ChangeLine): string {
  const r: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(change.row)) r[k] = encodeValue(v);
  return JSON.stringify({ s: change.source, t: change.table, r });
}

/** Parses one NDJSON line; `where` (e.g. `changes.ndjson.zst:12`) names it in errors. */
export function decodeChangeLine(line: string, where = "change"): ChangeLine {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    throw new ContractError("decode", "change line", where, `not JSON: ${(e as Error).message}`);
  }
  const o = value as { s?: unknown; t?: unknown; r?: unknown };
  if (typeof o?.s !== "string" || typeof o.t !== "string" || typeof o.r !== "object" || o.r === null || Array.isArray(o.r)) {
    throw new ContractError("decode", "change line", where, 'expected {"s": source, "t": table, "r": {column: value}}');
  }
  const row: Row = {};
  for (const [k, v] of Object.entries(o.r as Record<string, unknown>)) row[k] = decodeValue(v, `${where} column ${k}`);
  return { source: o.s, table: o.t, row };
}

/** Compares key tuples (numbers, bigints, strings) the way SQLite orders them: numbers before text. */
export function compareKeys(a: readonly (number | bigint | string)[], b: readonly (number | bigint | string)[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x === undefined || y === undefined) return x === undefined ? (y === undefined ? 0 : -1) : 1;
    const xs = typeof x === "string";
    const ys = typeof y === "string";
    if (xs !== ys) return xs ? 1 : -1;
    if (x < y) return -1;
    if (x > y) return 1;
  }
  return 0;
}

/** True when a row's key is past a watermark (a null watermark value means "from the start"). */
export function isPastWatermark(row: Row, watermark: Pick<Watermark, "columns" | "value">): boolean {
  if (watermark.value === null) return true;
  const key = watermark.columns.map((c) => {
    const v = row[c];
    if (typeof v !== "number" && typeof v !== "bigint" && typeof v !== "string") {
      throw new ContractError("compare", "row key", c, `expected a number or text key, got ${describeValue(v === undefined ? "nothing" : String(v))}`);
    }
    return v;
  });
  return compareKeys(key, watermark.value) > 0;
}
