/**
 * Quality heuristics for one row. All are cheap single passes; the score is an integer 0-100 so it
 * can be stored, compared and put in evidence without float noise.
 *
 * Signals (on the raw text unless noted):
 *  - chars: code points excluding whitespace; words: words of the NORMALIZED text.
 *  - junkRatio: share of code points that are control characters (except tab/newline/CR),
 *    U+FFFD replacement characters, private-use, unassigned or surrogate code points.
 *  - letterRatio: share of non-whitespace code points that are letters (any script).
 *  - distinctChars: number of distinct non-whitespace code points.
 *  - distinctWordRatio: distinct words / words (normalized).
 *  - repeatedTrigramRatio: share of word 3-grams (normalized) that occur more than once.
 *  - wellFormedWordRatio: share of words of 1-24 code units (base64 blobs, hashes, minified
 *    code and long URLs are made of very long "words").
 *
 * Score = round(100 * product of factors), each factor in [0, 1]:
 *  - length       1 for >= 20 words, else 0.6 + 0.4 * words / 20
 *  - junk         max(0, 1 - 4 * junkRatio)
 *  - letters      1 if letterRatio >= 0.6, else letterRatio / 0.6
 *  - diversity    1 if distinctChars >= 12 (or the text is shorter than 24 chars), else distinctChars / 12
 *  - vocabulary   for >= 10 words: 1 if distinctWordRatio >= 0.35, else distinctWordRatio / 0.35
 *  - repetition   1 - 0.9 * max(0, repeatedTrigramRatio - 0.15) / 0.85
 *  - word shape   wellFormedWordRatio
 */
export interface QualitySignals {
  chars: number;
  words: number;
  junkRatio: number;
  letterRatio: number;
  distinctChars: number;
  distinctWordRatio: number;
  repeatedTrigramRatio: number;
  wellFormedWordRatio: number;
}

const JUNK = /[\p{Cc}\p{Co}\p{Cn}\p{Cs}\uFFFD]/u;
const LETTER = /\p{L}/u;
const WHITESPACE = /\s/u;

export function qualitySignals(text: string, normalized: string): QualitySignals {
  let chars = 0;
  let junk = 0;
  let letters = 0;
  const distinct = new Set<number>();
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0x20 || cp === 0x0a || cp === 0x09 || cp === 0x0d) continue;
    if (cp < 0x80) {
      // ASCII fast path: no regex per character for the common case.
      chars++;
      distinct.add(cp);
      if (cp < 0x20 || cp === 0x7f) junk++;
      else if ((cp | 0x20) >= 0x61 && (cp | 0x20) <= 0x7a) letters++;
      continue;
    }
    if (WHITESPACE.test(ch)) continue;
    chars++;
    distinct.add(cp);
    if (JUNK.test(ch)) junk++;
    else if (LETTER.test(ch)) letters++;
  }
  const words = normalized.length === 0 ? [] : normalized.split(" ");
  const wordSet = new Set(words);
  let wellFormed = 0;
  for (const w of words) if (w.length <= 24) wellFormed++;
  let repeated = 0;
  const trigrams = words.length - 2;
  if (trigrams > 0) {
    const counts = new Map<string, number>();
    for (let i = 0; i < trigrams; i++) {
      const g = `${words[i]} ${words[i + 1]} ${words[i + 2]}`;
      counts.set(g, (counts.get(g) ?? 0) + 1);
    }
    for (const c of counts.values()) if (c > 1) repeated += c;
  }
  return {
    chars,
    words: words.length,
    junkRatio: chars === 0 ? 0 : junk / chars,
    letterRatio: chars === 0 ? 0 : letters / chars,
    distinctChars: distinct.size,
    distinctWordRatio: words.length === 0 ? 0 : wordSet.size / words.length,
    repeatedTrigramRatio: trigrams > 0 ? repeated / trigrams : 0,
    wellFormedWordRatio: words.length === 0 ? 0 : wellFormed / words.length,
  };
}

export function qualityScore(s: QualitySignals): number {
  if (s.chars === 0 || s.words === 0) return 0;
  const length = s.words >= 20 ? 1 : 0.6 + (0.4 * s.words) / 20;
  const junk = Math.max(0, 1 - 4 * s.junkRatio);
  const letters = s.letterRatio >= 0.6 ? 1 : s.letterRatio / 0.6;
  const diversity = s.chars < 24 || s.distinctChars >= 12 ? 1 : s.distinctChars / 12;
  const vocabulary = s.words < 10 || s.distinctWordRatio >= 0.35 ? 1 : s.distinctWordRatio / 0.35;
  const repetition = 1 - (0.9 * Math.max(0, s.repeatedTrigramRatio - 0.15)) / 0.85;
  const shape = s.wellFormedWordRatio;
  const score = Math.round(100 * length * junk * letters * diversity * vocabulary * repetition * shape);
  return Math.min(100, Math.max(0, score));
}
