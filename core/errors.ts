/**
 * The one error type of `core/`. Messages read `<operation> <thing> '<id>': <reason>` and, where the caller
 * can do something about it, end with a hint, so every wrong input names the value and what was expected.
 */
export class ContractError extends Error {
  readonly operation: string;
  readonly thing: string;
  readonly id: string;
  readonly reason: string;
  readonly hint: string | undefined;

  constructor(operation: string, thing: string, id: string, reason: string, hint?: string) {
    super(`${operation} ${thing} '${id}': ${reason}${hint ? ` (${hint})` : ""}`);
    this.name = "ContractError";
    this.operation = operation;
    this.thing = thing;
    this.id = id;
    this.reason = reason;
    this.hint = hint;
  }
}

/** Renders any value for an error message: strings as-is, everything else as short JSON. */
export function describeValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value); // JSON would render NaN and Infinity as null
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
  try {
    const text = JSON.stringify(value);
    if (text === undefined) return String(value);
    return text.length > 120 ? `${text.slice(0, 117)}...` : text;
  } catch {
    return String(value);
  }
}
