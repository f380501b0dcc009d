/**
 * Suffix arrays over integer alphabets.
 *
 * `buildSuffixArray` is SA-IS (Nong, Zhang & Chan 2009): linear time, induced sorting,
 * organised as in Yuta Mori's sais-lite. It reads the text as a `Uint8Array` (bytes),
 * `Uint16Array` (token ids < 65,536) or `Int32Array`, so a byte or small-alphabet text is
 * never widened to 4 bytes per symbol. Memory beyond the text and the output (4 B/symbol):
 * - no S/L type array: types are recomputed from adjacent symbols where needed, and the
 *   induced sorts carry the one bit they need in each entry's sign;
 * - the reduced problem of each level lives in the output array (a level has at most n/2
 *   LMS positions), and its bucket arrays in the free middle of the output when they fit
 *   (else they are allocated: at most 8 B per reduced symbol);
 * - two bucket arrays of alphabet size at the top level.
 * All loops are iterative; the only recursion is on the reduced string, whose length at
 * least halves per level, so the depth is bounded by log2(n) (< 32 for Int32 indices).
 *
 * The end of the string acts as a virtual sentinel smaller than every symbol, so the input
 * needs no terminator. The result is the unique suffix array of the text (a suffix that is
 * a proper prefix of another sorts first): independent of the text's array type.
 *
 * `buildSuffixArray` runs the native build of the same algorithm (@openledger/suffix-native, C++
 * with prefetching; ~3x faster) when the install compiled it, and this TypeScript otherwise.
 *
 * Why hand-written: no maintained npm package builds suffix arrays (libsais/libdivsufsort are
 * C libraries, not on npm); the TypeScript builder is what runs where the addon could not be built.
 */
import { nativeSuffixArrayBuild, nativeSuffixArrayStatus } from "./native-suffix-array.ts";

export { nativeSuffixArrayStatus };

/** Called with a fraction in [0, 1] as the build advances (top level only, monotone). */
export type SaProgress = (fraction: number) => void;

/** A text the builder reads: bytes, 16-bit or 32-bit symbols. */
export type SaText = Uint8Array | Uint16Array | Int32Array;

export interface SaOptions {
  /**
   * Progress of the build. The TypeScript builder reports as it goes; the native one reports only
   * its end (it runs to completion in one call, ~3x faster).
   */
  progress?: SaProgress;
  /**
   * "auto" (default): native when the addon is built, else TypeScript (with one process warning).
   * "native": the addon or an error. "typescript": never the addon (tests, benchmarks).
   */
  builder?: "auto" | "native" | "typescript";
}

const PROGRESS_STEP = 1 << 22;

function fillBuckets(bkt: Int32Array, counts: Int32Array, k: number, end: boolean): void {
  let sum = 0;
  for (let c = 0; c < k; c++) {
    const x = counts[c]!;
    sum += x;
    bkt[c] = end ? sum : sum - x;
  }
}

/**
 * Stage 1 of a level: sorts the LMS substrings. LMS positions are seeded at the ends of
 * their buckets, then an L scan and an S scan induce the order (as in the final sort), but
 * every entry is cleared (0 = empty) once it has induced its predecessor, and an LMS
 * suffix is stored complemented (~p < 0) when the S scan places it. Afterwards the
 * negative entries, in array order, are exactly the LMS positions sorted by their LMS
 * substrings. Position 0 is never LMS, so 0 can mean "empty". Kept apart from `induce`
 * (same scans, different bookkeeping per entry) so neither hot loop tests a mode flag.
 */
function sortLmsSubstrings(
  text: SaText,
  sa: Int32Array,
  n: number,
  counts: Int32Array,
  bkt: Int32Array,
  k: number,
): void {
  sa.fill(0, 0, n);
  // Seed: LMS positions (S-type, L-type predecessor) at the ends of their buckets. Types
  // from right to left: n-1 is L (it precedes the virtual sentinel).
  fillBuckets(bkt, counts, k, true);
  let c1 = text[n - 1]!;
  let sType = false; // type of i+1
  for (let i = n - 2; i >= 0; i--) {
    const c0 = text[i]!;
    const s: boolean = c0 < c1 || (c0 === c1 && sType);
    if (!s && sType) sa[--bkt[c1]!] = i + 1; // i+1 is S, i is L: i+1 is LMS
    sType = s;
    c1 = c0;
  }
  // L scan. Positive entries have an L-type predecessor to induce; ~j marks one whose
  // predecessor is S-type (kept, positive, for the S scan).
  fillBuckets(bkt, counts, k, false);
  c1 = text[n - 1]!;
  let b = bkt[c1]!;
  sa[b++] = n >= 2 && text[n - 2]! < c1 ? ~(n - 1) : n - 1;
  for (let i = 0; i < n; i++) {
    let j = sa[i]!;
    if (j > 0) {
      j--;
      const c0 = text[j]!;
      if (c0 !== c1) {
        bkt[c1] = b;
        c1 = c0;
        b = bkt[c1]!;
      }
      sa[b++] = j > 0 && text[j - 1]! < c0 ? ~j : j;
      sa[i] = 0;
    } else if (j < 0) sa[i] = ~j;
  }
  // S scan: positive entries induce their S-type predecessor; one whose own predecessor
  // is L-type is LMS: stored as ~j and left alone (the result).
  fillBuckets(bkt, counts, k, true);
  c1 = 0;
  b = bkt[0]!;
  for (let i = n - 1; i >= 0; i--) {
    let j = sa[i]!;
    if (j > 0) {
      j--;
      const c0 = text[j]!;
      if (c0 !== c1) {
        bkt[c1] = b;
        c1 = c0;
        b = bkt[c1]!;
      }
      sa[--b] = j > 0 && text[j - 1]! > c0 ? ~j : j;
      sa[i] = 0;
    }
  }
}

/**
 * Final stage of a level: induce the order of L-type then S-type suffixes from the sorted
 * LMS suffixes placed (as non-negative values) at the ends of their buckets; empty slots
 * hold -1.
 *
 * Instead of looking up a type array at random positions, each entry carries one flag in its
 * sign (as in sais-lite): an entry is stored complemented (~j) when its predecessor must NOT
 * be induced by the scan that will read it. Whether j-1 is S- or L-type follows from
 * comparing text[j-1] with text[j] (adjacent in memory) because the type of j is known at
 * the time j is placed. The bucket pointer of the current symbol is cached in `b`.
 */
function induce(
  text: SaText,
  sa: Int32Array,
  n: number,
  counts: Int32Array,
  bkt: Int32Array,
  k: number,
  report: ((done: number) => void) | null,
): void {
  // L scan. The suffix n-1 precedes the virtual sentinel (which sorts first): it heads its
  // L bucket. Positive entries have an L-type predecessor to induce.
  fillBuckets(bkt, counts, k, false);
  let c1 = text[n - 1]!;
  let b = bkt[c1]!;
  sa[b++] = n >= 2 && text[n - 2]! < c1 ? ~(n - 1) : n - 1;
  for (let i = 0; i < n; i++) {
    let j = sa[i]!;
    sa[i] = ~j;
    if (j > 0) {
      j--;
      const c0 = text[j]!;
      if (c0 !== c1) {
        bkt[c1] = b;
        c1 = c0;
        b = bkt[c1]!;
      }
      // j is L-type; j-1 is S-type iff text[j-1] < text[j]: flag it for the S scan.
      sa[b++] = j > 0 && text[j - 1]! < c1 ? ~j : j;
    }
    if (report !== null && (i & (PROGRESS_STEP - 1)) === 0) report(i);
  }
  // S scan. After the flip above, positive entries are exactly those whose predecessor is
  // S-type; entries that are negative now are restored.
  fillBuckets(bkt, counts, k, true);
  c1 = 0;
  b = bkt[0]!;
  for (let i = n - 1; i >= 0; i--) {
    let j = sa[i]!;
    if (j > 0) {
      j--;
      const c0 = text[j]!;
      if (c0 !== c1) {
        bkt[c1] = b;
        c1 = c0;
        b = bkt[c1]!;
      }
      // j is S-type; j-1 is L-type iff text[j-1] > text[j]: then it was induced already.
      sa[--b] = j === 0 || text[j - 1]! > c1 ? ~j : j;
    } else sa[i] = ~j;
    if (report !== null && (i & (PROGRESS_STEP - 1)) === 0) report(2 * n - i);
  }
}

/**
 * One SA-IS level over text[0..n) (symbols in [0, k)) into sa[0..n). `counts` holds the
 * symbol counts; `bkt` is scratch of length >= k.
 */
function saisLevel(
  text: SaText,
  sa: Int32Array,
  n: number,
  k: number,
  counts: Int32Array,
  bkt: Int32Array,
  progress: SaProgress | null,
): void {
  if (n === 1) {
    sa[0] = 0;
    return;
  }
  // Top-level work units: 2n (first induce) + 2n (final induce); naming/recursion are
  // reported at fixed fractions between them.
  sortLmsSubstrings(text, sa, n, counts, bkt, k);
  if (progress !== null) progress(0.3);

  // Compact the sorted LMS positions (the negative entries) into sa[0..n1).
  let n1 = 0;
  for (let i = 0; i < n; i++) {
    const p = sa[i]!;
    if (p < 0) sa[n1++] = ~p;
  }
  // Name the LMS substrings: equal substrings get equal names. First store each LMS
  // substring's length at sa[n1 + p/2] (distinct slots: LMS positions are >= 2 apart) in one
  // right-to-left pass; then, in sorted order, only substrings of equal length need their
  // text compared (equal text and equal length imply equal types, since both end S-type).
  // The last LMS substring runs into the virtual sentinel: length 0 marks it unique.
  sa.fill(0, n1, n);
  {
    let c1 = text[n - 1]!;
    let sType = false;
    let next = -1;
    for (let i = n - 2; i >= 0; i--) {
      const c0 = text[i]!;
      const s: boolean = c0 < c1 || (c0 === c1 && sType);
      if (!s && sType) {
        const p = i + 1;
        sa[n1 + (p >> 1)] = next < 0 ? 0 : next - p + 1;
        next = p;
      }
      sType = s;
      c1 = c0;
    }
  }
  let name = 0;
  let prev = -1;
  let prevLen = 0;
  for (let i = 0; i < n1; i++) {
    const pos = sa[i]!;
    const slot = n1 + (pos >> 1);
    const len = sa[slot]!;
    let diff = true;
    if (prev >= 0 && len === prevLen && len !== 0) {
      diff = false;
      for (let d = 0; d < len; d++) {
        if (text[pos + d] !== text[prev + d]) {
          diff = true;
          break;
        }
      }
    }
    if (diff) {
      name++;
      prev = pos;
      prevLen = len;
    }
    sa[slot] = name; // names 1..; 0 = no LMS position here
  }
  for (let i = n - 1, j = n - 1; i >= n1; i--) {
    const v = sa[i]!;
    if (v > 0) sa[j--] = v - 1;
  }
  if (progress !== null) progress(0.45);

  // Stage 2: sort the reduced string (names in text order), recursing if names repeat.
  // Its bucket arrays go in the free middle of sa when they fit.
  const s1 = sa.subarray(n - n1, n);
  const sa1 = sa.subarray(0, n1);
  if (name < n1) {
    const free = n - 2 * n1;
    const counts1 = free >= 2 * name ? sa.subarray(n1, n1 + name) : new Int32Array(name);
    const bkt1 = free >= 2 * name ? sa.subarray(n1 + name, n1 + 2 * name) : new Int32Array(name);
    counts1.fill(0);
    for (let i = 0; i < n1; i++) counts1[s1[i]!]!++;
    saisLevel(s1, sa1, n1, name, counts1, bkt1, null);
  } else for (let i = 0; i < n1; i++) sa1[s1[i]!] = i;
  if (progress !== null) progress(0.55);

  // Stage 3: LMS positions in text order into s1, map the reduced ranks back to them, put
  // the sorted LMS suffixes at the ends of their buckets and induce the full order.
  {
    let c1 = text[n - 1]!;
    let sType = false;
    let j = n1;
    for (let i = n - 2; i >= 0; i--) {
      const c0 = text[i]!;
      const s: boolean = c0 < c1 || (c0 === c1 && sType);
      if (!s && sType) s1[--j] = i + 1;
      sType = s;
      c1 = c0;
    }
  }
  for (let i = 0; i < n1; i++) sa1[i] = s1[sa1[i]!]!;
  sa.fill(-1, n1, n);
  fillBuckets(bkt, counts, k, true);
  for (let i = n1 - 1; i >= 0; i--) {
    const j = sa[i]!;
    sa[i] = -1;
    sa[--bkt[text[j]!]!] = j;
  }
  const report2 =
    progress === null ? null : (done: number) => progress(0.55 + Math.min(1, done / (2 * n)) * 0.45);
  induce(text, sa, n, counts, bkt, k, report2);
}

let warnedFallback = false;

/**
 * Suffix array of `text` (symbols in [0, alphabetSize)) by SA-IS. Returns a new Int32Array
 * of length text.length. Ties cannot occur: a suffix that is a proper prefix of another
 * sorts first (virtual end sentinel). Native and TypeScript builds give the same array.
 */
export function buildSuffixArray(text: SaText, alphabetSize: number, options: SaOptions = {}): Int32Array {
  if (!(text instanceof Uint8Array || text instanceof Uint16Array || text instanceof Int32Array)) {
    throw new TypeError("text must be a Uint8Array, Uint16Array or Int32Array");
  }
  if (!Number.isInteger(alphabetSize) || alphabetSize < 1 || alphabetSize > 0x7fffffff) {
    throw new RangeError("alphabetSize must be an integer in [1, 2^31)");
  }
  const builder = options.builder ?? "auto";
  if (builder !== "typescript") {
    if (nativeSuffixArrayBuild !== null) {
      const sa = nativeSuffixArrayBuild(text, alphabetSize);
      options.progress?.(1);
      return sa;
    }
    const why = nativeSuffixArrayStatus().reason;
    if (builder === "native") throw new Error(`native SA-IS unavailable: ${why}`);
    if (!warnedFallback) {
      warnedFallback = true;
      process.emitWarning(
        `native SA-IS unavailable (${why}); suffix arrays use the TypeScript builder (~0.3x the speed)`,
        { code: "OPENLEDGER_SA_NATIVE_MISSING" },
      );
    }
  }
  return buildSuffixArrayTs(text, alphabetSize, options.progress);
}

function buildSuffixArrayTs(text: SaText, k: number, progress?: SaProgress): Int32Array {
  const n = text.length;
  const counts = new Int32Array(k);
  for (let i = 0; i < n; i++) {
    const c = text[i]!;
    if (c < 0 || c >= k) throw new RangeError(`symbol ${c} at ${i} outside alphabet [0, ${k})`);
    counts[c]!++;
  }
  const sa = new Int32Array(n);
  if (n > 0) saisLevel(text, sa, n, k, counts, new Int32Array(k), progress ?? null);
  progress?.(1);
  return sa;
}

/**
 * Kasai et al. LCP array: lcp[i] = length of the longest common prefix of the suffixes at
 * sa[i-1] and sa[i]; lcp[0] = 0. Linear time; uses one temporary rank array.
 */
export function buildLcpArray(text: SaText, sa: Int32Array): Int32Array {
  const n = text.length;
  const rank = new Int32Array(n);
  for (let i = 0; i < n; i++) rank[sa[i]!] = i;
  const lcp = new Int32Array(n);
  let h = 0;
  for (let i = 0; i < n; i++) {
    const r = rank[i]!;
    if (r > 0) {
      const j = sa[r - 1]!;
      while (i + h < n && j + h < n && text[i + h] === text[j + h]) h++;
      lcp[r] = h;
      if (h > 0) h--;
    } else h = 0;
  }
  return lcp;
}

/** Compare the suffixes of `text` at a and b (shorter-prefix-first). */
export function compareSuffixes(text: SaText, a: number, b: number): number {
  const n = text.length;
  if (a === b) return 0;
  while (a < n && b < n) {
    const d = text[a]! - text[b]!;
    if (d !== 0) return d;
    a++;
    b++;
  }
  return a === n ? -1 : 1;
}

/**
 * Reference construction by comparison sort (O(n log n * average LCP)). Used as the
 * correctness oracle in tests and as the baseline in the benchmark.
 */
export function buildSuffixArrayBySort(text: SaText): Int32Array {
  const idx = new Int32Array(text.length);
  for (let i = 0; i < idx.length; i++) idx[i] = i;
  idx.sort((a, b) => compareSuffixes(text, a, b));
  return idx;
}
