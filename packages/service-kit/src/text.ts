import { z } from "zod";

/**
 * Text Postgres can store. A `text` column refuses U+0000 (error 22021) and a `jsonb` value
 * refuses `\u0000` (22P05); a lone UTF-16 surrogate has no UTF-8 encoding at all, so the driver
 * would have to replace it (silently changing the text) or fail. Such input is a client mistake:
 * it is refused at the edge with a 400 naming the field, never a 500 from the database.
 */

const NUL = "\u0000";
/** A high surrogate not followed by a low one, or a low surrogate not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `value` cannot be stored as Postgres text, or undefined when it can. */
export function unstorableText(value: string): string | undefined {
  const nul = value.indexOf(NUL);
  if (nul >= 0) return `contains U+0000 (NUL) at character ${nul}, which cannot be stored`;
  const lone = LONE_SURROGATE.exec(value);
  if (lone) {
    const unit = lone[0].charCodeAt(0).toString(16).toUpperCase();
    return `contains a lone UTF-16 surrogate (U+${unit}) at character ${lone.index}, which is not valid Unicode text`;
  }
  return undefined;
}

/**
 * The first string (object key or value) anywhere inside a JSON-like value that cannot be stored,
 * with its path (`["rows", 3, "text"]`); undefined when everything can be. For bodies stored as
 * jsonb or spread over text columns (rows with free-form metadata).
 */
export function findUnstorableText(
  value: unknown,
  path: (string | number)[] = [],
): { path: (string | number)[]; problem: string } | undefined {
  if (typeof value === "string") {
    const problem = unstorableText(value);
    return problem ? { path, problem } : undefined;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findUnstorableText(value[i], [...path, i]);
      if (found) return found;
    }
    return undefined;
  }
  if (value !== null && typeof value === "object") {
    for (const [key, v] of Object.entries(value)) {
      const keyProblem = unstorableText(key);
      if (keyProblem) return { path: [...path, key], problem: `key ${keyProblem}` };
      const found = findUnstorableText(v, [...path, key]);
      if (found) return found;
    }
  }
  return undefined;
}

/** Dotted path as the error handler prints it (`rows.3.text`). */
export function textPath(path: readonly (string | number)[]): string {
  return path.map(String).join(".");
}

/**
 * A zod string Postgres can store: refuses U+0000 and lone surrogates. Chain further checks as on
 * any string (`safeText().trim().min(1).max(200)`). Inside a route schema a failure answers 400
 * VALIDATION_FAILED with `body.<field>: contains U+0000 (NUL) …`.
 */
export function safeText(): z.ZodString {
  return z.string().check((ctx) => {
    const problem = unstorableText(ctx.value);
    if (problem) ctx.issues.push({ code: "custom", message: problem, input: ctx.value });
  });
}

/**
 * Refines any schema (an array of unknown rows, a metadata object) so that no string inside it,
 * keys included, is unstorable; the issue names the nested path.
 */
export function storableJson<S extends z.ZodType>(schema: S): S {
  return schema.check((ctx) => {
    const found = findUnstorableText(ctx.value);
    if (found)
      ctx.issues.push({ code: "custom", message: found.problem, input: ctx.value, path: found.path });
  }) as S;
}
