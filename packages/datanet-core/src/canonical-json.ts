import { createHash } from "node:crypto";

/**
 * Canonical JSON for hashing: object keys sorted by UTF-16 code unit order (JS default sort),
 * no whitespace, strings as JSON.stringify writes them, only safe integers as numbers (fractions
 * must be scaled to integers first, e.g. ppm) and no undefined inside arrays. Object properties
 * whose value is undefined are omitted. The same value gives the same bytes on every machine.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isSafeInteger(value))
        throw new TypeError(`canonical JSON allows only safe integers, got ${value}`);
      return String(value);
    case "bigint":
      return JSON.stringify(value.toString());
    case "object": {
      if (Array.isArray(value)) {
        return `[${value
          .map((v) => {
            if (v === undefined) throw new TypeError("canonical JSON: undefined in an array");
            return canonicalJson(v);
          })
          .join(",")}]`;
      }
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot encode ${typeof value}`);
  }
}

/** "0x" + SHA-256 of the canonical JSON's UTF-8 bytes: a bytes32 usable on-chain as a reason/evidence hash. */
export function canonicalHash(value: unknown): `0x${string}` {
  return `0x${createHash("sha256").update(canonicalJson(value), "utf8").digest("hex")}`;
}
