import { hash } from "node:crypto";
import { createRequire } from "node:module";

/*
 * Normalization used for the exact-duplicate key and for shingling. Exactly, in order:
 *  1. Unicode NFKD (compatibility forms fold: fullwidth letters, ligatures, superscripts, NBSP...;
 *     accented letters split into base + combining marks). Pure-ASCII input skips steps 1-5: ASCII
 *     is unchanged by them.
 *  2. Case folding: locale-independent `toLowerCase()`, then the full-folding cases it misses
 *     that matter for Latin/Greek text: "ß" -> "ss", final sigma "ς" -> "σ".
 *  3. Look-alikes (then the deletions of step 6, so that step 4 sees the final neighbours): a non-ASCII character whose Unicode confusables prototype (UTS #39,
 *     confusables.txt, via the maintained `unhomoglyph` table) is plain ASCII becomes that ASCII,
 *     lower case (Cyrillic "а", Greek omicron "ο", dotless "ı" -> "a", "o", "i"). Only non-ASCII
 *     sources: ASCII text (and its stored hashes) is untouched, and ASCII letters that are
 *     confusable with each other ("l"/"1", "rn"/"m") are not merged.
 *  4. Combining marks (Unicode M) that follow a Latin, Greek or Cyrillic letter are dropped, so a
 *     copy with an accent on every letter is the same text. Marks of other scripts stay: in
 *     Devanagari, Thai, Arabic... they are vowels and consonant signs, not decoration.
 *  5. NFC: what is left recomposes.
 *  6. Deleted outright: apostrophes (' ’ ʼ ‘ `) so "don't" == "dont", and invisible format
 *     characters (Unicode Cf: zero-width space/joiner, soft hyphen, BOM, bidi marks).
 *  7. Every other character that is not a letter (L), combining mark (M) or number (N) -
 *     punctuation, symbols, emoji, control characters, any whitespace - becomes a separator.
 *  8. Runs of separators collapse to one ASCII space; leading/trailing separators are dropped.
 * The result is a sequence of words of letters/marks/digits separated by single spaces.
 */
const APOSTROPHES_AND_FORMAT = /['\u2019\u02bc\u2018`\p{Cf}]/gu;
const NON_WORD = /[^\p{L}\p{M}\p{N}]+/gu;
const NON_ASCII = /[\u0080-\uffff]/;
const ASCII_APOSTROPHES = /['`]/g;
const ASCII_NON_WORD = /[^a-z0-9]+/g;
const MARKS_AFTER_LGC = /([\p{Script=Latin}\p{Script=Greek}\p{Script=Cyrillic}])\p{M}+/gu;
const NON_ASCII_CHAR = /[\u0080-\u{10ffff}]/gu;

/**
 * Non-ASCII code point -> its ASCII confusables prototype, lower case. The key is case-folded, so a
 * lower-case letter whose upper case has an ASCII prototype maps too (Cyrillic "т": its prototype
 * is the small capital "ᴛ", its capital "Т" is "T").
 */
const LOOKALIKES: ReadonlyMap<string, string> = (() => {
  const table = createRequire(import.meta.url)("unhomoglyph/data.json") as Record<string, string>;
  const ascii = (to: string | undefined) =>
    to !== undefined && to.length > 0 && [...to].every((c) => c.charCodeAt(0) < 0x80);
  const single = (c: string) => [...c].length === 1 && c.codePointAt(0)! > 0x7f;
  const out = new Map<string, string>();
  for (const [from, to] of Object.entries(table))
    if (single(from) && ascii(to)) out.set(from, to.toLowerCase());
  for (const [from, to] of Object.entries(table)) {
    const lower = from.toLowerCase();
    if (single(from) && ascii(to) && lower !== from && single(lower) && !out.has(lower))
      out.set(lower, to.toLowerCase());
  }
  return out;
})();

export function normalizeText(text: string): string {
  if (!NON_ASCII.test(text)) {
    // Fast path, same result as the general one for ASCII input (property-tested).
    return text.toLowerCase().replace(ASCII_APOSTROPHES, "").replace(ASCII_NON_WORD, " ").trim();
  }
  return normalizeTextGeneral(text);
}

/** The general path of `normalizeText`, exported for the equivalence test of the ASCII fast path. */
export function normalizeTextGeneral(text: string): string {
  let s = text.normalize("NFKD").toLowerCase();
  if (s.includes("ß")) s = s.replaceAll("ß", "ss");
  if (s.includes("ς")) s = s.replaceAll("ς", "σ");
  s = s.replace(NON_ASCII_CHAR, (c) => LOOKALIKES.get(c) ?? c).replace(APOSTROPHES_AND_FORMAT, "");
  // After the deletions: a mark that now follows a Latin letter goes too (idempotence).
  s = s.replace(MARKS_AFTER_LGC, "$1").normalize("NFC");
  return s.replace(NON_WORD, " ").trim();
}

/** SHA-256 of the UTF-8 bytes of the normalized text: the exact-duplicate key. */
export function contentHash(normalized: string): Buffer {
  // One-shot crypto.hash: ~1 us cheaper per row than createHash().update().digest().
  return hash("sha256", normalized, "buffer");
}

export function contentHashHex(normalized: string): string {
  return hash("sha256", normalized, "hex");
}
