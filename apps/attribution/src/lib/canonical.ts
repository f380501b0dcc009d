/**
 * Canonical JSON of attribution results: what validators hash and sign, so two validators
 * that computed the same result produce the same bytes.
 *
 * - object keys sorted by UTF-16 code units (not locale order, which differs between machines);
 * - numbers must be safe integers (floats differ in formatting and in rounding between
 *   implementations; fractional quantities are carried as integers: ppm, fixed point, or decimal
 *   strings for bigints); bigint is written as a decimal string;
 * - no whitespace; strings escaped as JSON.stringify does (deterministic in ECMAScript);
 * - undefined, functions, symbols, NaN/Infinity, and non-plain objects are refused rather than
 *   silently dropped or converted.
 */
export class CanonicalJsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CanonicalJsonError";
  }
}

export function canonicalJson(value: unknown): string {
  return encode(value, "$");
}

function encode(value: unknown, at: string): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "string":
      return JSON.stringify(value);
    case "bigint":
      return JSON.stringify(value.toString());
    case "number":
      if (!Number.isSafeInteger(value)) throw new CanonicalJsonError(`${at}: ${value} is not a safe integer`);
      return Object.is(value, -0) ? "0" : String(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map((v, i) => encode(v, `${at}[${i}]`)).join(",")}]`;
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new CanonicalJsonError(`${at}: only plain objects and arrays are allowed`);
      }
      const keys = Object.keys(value).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      const parts = keys.map((k) => {
        const v = (value as Record<string, unknown>)[k];
        if (v === undefined) throw new CanonicalJsonError(`${at}.${k}: undefined is not allowed`);
        return `${JSON.stringify(k)}:${encode(v, `${at}.${k}`)}`;
      });
      return `{${parts.join(",")}}`;
    }
    default:
      throw new CanonicalJsonError(`${at}: ${typeof value} cannot be encoded`);
  }
}
