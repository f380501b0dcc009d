import { mixInto } from "./hash32.ts";

/**
 * Quality heuristics for one row. All are cheap single passes; the score is an integer 0-100 so it
 * can be stored, compared and put in evidence without float noise.
 *
 * Signals (on the raw text unless noted):
 *  - chars: code points excluding whitespace (JS \s); words: words of the NORMALIZED text.
 *  - junkRatio: share of code points that are control characters (whitespace excluded),
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

enum CharClass {
  Space = 0,
  Junk = 1,
  Letter = 2,
  Other = 3,
}

// Classification of non-ASCII code points, memoized: real text uses few distinct ones and the
// regex tests are the slow part. Bounded so adversarial input cannot grow it without limit.
const classCache = new Map<number, CharClass>();
function classifyNonAscii(cp: number): CharClass {
  const cached = classCache.get(cp);
  if (cached !== undefined) return cached;
  const ch = String.fromCodePoint(cp);
  const cls = WHITESPACE.test(ch)
    ? CharClass.Space
    : JUNK.test(ch)
      ? CharClass.Junk
      : LETTER.test(ch)
        ? CharClass.Letter
        : CharClass.Other;
  if (classCache.size < 65_536) classCache.set(cp, cls);
  return cls;
}

// Scratch space reused across calls (the validator is synchronous, one row at a time).
const asciiSeen = new Uint32Array(128);
let asciiGeneration = 0;
let wordHashes = new Uint32Array(512);
let scratch = new Uint32Array(512);

/** Number of distinct values, and the number of values that occur more than once, in `a[0..n)` (sorted in place). */
function countRepeats(a: Uint32Array, n: number): { distinct: number; repeated: number } {
  const v = a.subarray(0, n).sort();
  let distinct = 0;
  let repeated = 0;
  for (let i = 0; i < n; ) {
    let j = i + 1;
    while (j < n && v[j] === v[i]) j++;
    distinct++;
    if (j - i > 1) repeated += j - i;
    i = j;
  }
  return { distinct, repeated };
}

export function qualitySignals(text: string, normalized: string): QualitySignals {
  let chars = 0;
  let junk = 0;
  let letters = 0;
  let distinctChars = 0;
  asciiGeneration = (asciiGeneration + 1) >>> 0;
  if (asciiGeneration === 0) {
    asciiSeen.fill(0);
    asciiGeneration = 1;
  }
  let nonAscii: Set<number> | undefined;
  for (let i = 0; i < text.length; i++) {
    let cp = text.charCodeAt(i);
    if (cp < 0x80) {
      if (cp === 0x20 || (cp >= 0x09 && cp <= 0x0d)) continue; // same as /\s/ on ASCII
      chars++;
      if (asciiSeen[cp] !== asciiGeneration) {
        asciiSeen[cp] = asciiGeneration;
        distinctChars++;
      }
      if (cp < 0x20 || cp === 0x7f) junk++;
      else if ((cp | 0x20) >= 0x61 && (cp | 0x20) <= 0x7a) letters++;
      continue;
    }
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < text.length) {
      const lo = text.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      }
    }
    const cls = classifyNonAscii(cp);
    if (cls === CharClass.Space) continue;
    chars++;
    nonAscii ??= new Set();
    if (!nonAscii.has(cp)) {
      nonAscii.add(cp);
      distinctChars++;
    }
    if (cls === CharClass.Junk) junk++;
    else if (cls === CharClass.Letter) letters++;
  }

  // Words of the normalized text (single spaces between words), hashed without allocating strings.
  let words = 0;
  let wellFormed = 0;
  let h = 0x811c9dc5;
  let len = 0;
  for (let i = 0; i <= normalized.length; i++) {
    const c = i < normalized.length ? normalized.charCodeAt(i) : 0x20;
    if (c === 0x20) {
      if (len > 0) {
        if (words === wordHashes.length) {
          const grown = new Uint32Array(words * 2);
          grown.set(wordHashes);
          wordHashes = grown;
        }
        wordHashes[words++] = h >>> 0;
        if (len <= 24) wellFormed++;
      }
      h = 0x811c9dc5;
      len = 0;
    } else {
      h = Math.imul(h ^ c, 0x01000193);
      len++;
    }
  }
  if (scratch.length < words) scratch = new Uint32Array(wordHashes.length);
  scratch.set(wordHashes.subarray(0, words));
  const distinctWords = countRepeats(scratch, words).distinct;
  const trigrams = words - 2;
  let repeated = 0;
  if (trigrams > 0) {
    for (let i = 0; i < trigrams; i++) {
      scratch[i] =
        mixInto(mixInto(mixInto(0x3c6ef372, wordHashes[i]!), wordHashes[i + 1]!), wordHashes[i + 2]!) >>> 0;
    }
    repeated = countRepeats(scratch, trigrams).repeated;
  }
  return {
    chars,
    words,
    junkRatio: chars === 0 ? 0 : junk / chars,
    letterRatio: chars === 0 ? 0 : letters / chars,
    distinctChars,
    distinctWordRatio: words === 0 ? 0 : distinctWords / words,
    repeatedTrigramRatio: trigrams > 0 ? repeated / trigrams : 0,
    wellFormedWordRatio: words === 0 ? 0 : wellFormed / words,
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
