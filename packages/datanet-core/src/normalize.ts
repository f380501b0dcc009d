import { hash } from "node:crypto";

/*
 * Normalization used for the exact-duplicate key and for shingling. Exactly, in order:
 *  1. Unicode NFKC (compatibility forms fold: fullwidth letters, ligatures, superscripts, NBSP...).
 *     Pure-ASCII input skips this step: ASCII is already NFKC.
 *  2. Case folding: locale-independent `toLowerCase()`, then the full-folding cases it misses
 *     that matter for Latin/Greek text: "ß" -> "ss", final sigma "ς" -> "σ".
 *  3. Deleted outright: apostrophes (' ’ ʼ ‘ `) so "don't" == "dont", and invisible format
 *     characters (Unicode Cf: zero-width space/joiner, soft hyphen, BOM, bidi marks).
 *  4. Every other character that is not a letter (L), combining mark (M) or number (N) -
 *     punctuation, symbols, emoji, control characters, any whitespace - becomes a separator.
 *  5. Runs of separators collapse to one ASCII space; leading/trailing separators are dropped.
 * The result is a sequence of words of letters/marks/digits separated by single spaces.
 */
const APOSTROPHES_AND_FORMAT = /['\u2019\u02bc\u2018`\p{Cf}]/gu;
const NON_WORD = /[^\p{L}\p{M}\p{N}]+/gu;
const NON_ASCII = /[\u0080-\uffff]/;
const ASCII_APOSTROPHES = /['`]/g;
const ASCII_NON_WORD = /[^a-z0-9]+/g;

export function normalizeText(text: string): string {
  if (!NON_ASCII.test(text)) {
    // Fast path, same result as the general one for ASCII input (property-tested).
    return text.toLowerCase().replace(ASCII_APOSTROPHES, "").replace(ASCII_NON_WORD, " ").trim();
  }
  return normalizeTextGeneral(text);
}

/** The general path of `normalizeText`, exported for the equivalence test of the ASCII fast path. */
export function normalizeTextGeneral(text: string): string {
  let s = text.normalize("NFKC").toLowerCase();
  if (s.includes("ß")) s = s.replaceAll("ß", "ss");
  if (s.includes("ς")) s = s.replaceAll("ς", "σ");
  return s.replace(APOSTROPHES_AND_FORMAT, "").replace(NON_WORD, " ").trim();
}

/** SHA-256 of the UTF-8 bytes of the normalized text: the exact-duplicate key. */
export function contentHash(normalized: string): Buffer {
  // One-shot crypto.hash: ~1 us cheaper per row than createHash().update().digest().
  return hash("sha256", normalized, "buffer");
}

export function contentHashHex(normalized: string): string {
  return hash("sha256", normalized, "hex");
}
