/**
 * Suffix arrays over integer alphabets.
 *
 * `buildSuffixArray` is SA-IS (Nong, Zhang & Chan 2009): linear time, induced sorting. The
 * implementation works on typed arrays only: the reduced problem of each level is stored in
 * the upper half of the output array (LMS positions are at most n/2), so extra memory is one
 * byte per symbol for the S/L types plus two bucket arrays of alphabet size. All loops are
 * iterative; the only recursion is on the reduced string, whose length at least halves per
 * level, so the depth is bounded by log2(n) (< 32 for any Int32-indexed input).
 *
 * The end of the string acts as a virtual sentinel smaller than every symbol, so the input
 * needs no terminator.
 */

/** Called with a fraction in [0, 1] as the build advances (top level only, monotone). */
export type SaProgress = (fraction: number) => void;

const PROGRESS_STEP = 1 << 22;

function fillBuckets(bkt: Int32Array, counts: Int32Array, end: boolean): void {
  let sum = 0;
  const k = counts.length;
  for (let c = 0; c < k; c++) {
    sum += counts[c]!;
    bkt[c] = end ? sum : sum - counts[c]!;
  }
}

function countSymbols(text: Int32Array, n: number, k: number): Int32Array {
  const counts = new Int32Array(k);
  for (let i = 0; i < n; i++) {
    const c = text[i]!;
    if (c < 0 || c >= k) throw new RangeError(`symbol ${c} at ${i} outside alphabet [0, ${k})`);
    counts[c]!++;
  }
  return counts;
}

/**
 * Induce the order of L-type then S-type suffixes from the LMS suffixes already placed (as
 * non-negative values) at the ends of their buckets; empty slots hold -1.
 *
 * Instead of looking up a type array at random positions, each entry carries one flag in its
 * sign (as in Yuta Mori's sais-lite): an entry is stored complemented (~j) when its
 * predecessor must NOT be induced by the scan that will read it. Whether j-1 is S- or L-type
 * follows from comparing text[j-1] with text[j] (adjacent in memory) because the type of j is
 * known at the time j is placed. The bucket pointer of the current symbol is cached in `b`.
 */
function induce(
  text: Int32Array,
  sa: Int32Array,
  n: number,
  counts: Int32Array,
  bkt: Int32Array,
  report: ((done: number) => void) | null,
): void {
  // L scan. The suffix n-1 precedes the virtual sentinel (which sorts first): it heads its
  // L bucket. Positive entries have an L-type predecessor to induce.
  fillBuckets(bkt, counts, false);
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
  fillBuckets(bkt, counts, true);
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

function saisLevel(
  text: Int32Array,
  sa: Int32Array,
  n: number,
  k: number,
  progress: SaProgress | null,
): void {
  if (n === 0) return;
  if (n === 1) {
    sa[0] = 0;
    return;
  }
  // Top-level work units: 2n (first induce) + 2n (final induce); naming/recursion are
  // reported at fixed fractions between them.
  const total = 4 * n;
  const report = progress === null ? null : (done: number) => progress(Math.min(1, (done / total) * 0.9));

  const types = new Uint8Array(n);
  types[n - 1] = 0;
  for (let i = n - 2; i >= 0; i--) {
    const a = text[i]!;
    const b = text[i + 1]!;
    types[i] = a < b || (a === b && types[i + 1] === 1) ? 1 : 0;
  }
  const counts = countSymbols(text, n, k);
  const bkt = new Int32Array(k);

  // Stage 1: sort the LMS substrings.
  sa.fill(-1, 0, n);
  fillBuckets(bkt, counts, true);
  for (let i = 1; i < n; i++) {
    if (types[i] === 1 && types[i - 1] === 0) sa[--bkt[text[i]!]!] = i;
  }
  induce(text, sa, n, counts, bkt, report);

  // Compact the sorted LMS positions into sa[0..n1).
  let n1 = 0;
  for (let i = 0; i < n; i++) {
    const p = sa[i]!;
    if (p > 0 && types[p] === 1 && types[p - 1] === 0) sa[n1++] = p;
  }
  // Name the LMS substrings: equal substrings get equal names. First store each LMS
  // substring's length at sa[n1 + p/2] (distinct slots: LMS positions are >= 2 apart) in one
  // sequential pass; then, in sorted order, only substrings of equal length need their text
  // compared (equal text and equal length imply equal types, since both end S-type). The last
  // LMS substring runs into the virtual sentinel: length 0 marks it unique.
  sa.fill(-1, n1, n);
  for (let i = n - 1, next = -1; i >= 1; i--) {
    if (types[i] === 1 && types[i - 1] === 0) {
      sa[n1 + (i >> 1)] = next < 0 ? 0 : next - i + 1;
      next = i;
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
    sa[slot] = name - 1;
  }
  for (let i = n - 1, j = n - 1; i >= n1; i--) {
    const v = sa[i]!;
    if (v >= 0) sa[j--] = v;
  }
  if (progress !== null) progress(0.45);

  // Stage 2: sort the reduced string (names in text order), recursing if names repeat.
  const s1 = sa.subarray(n - n1, n);
  const sa1 = sa.subarray(0, n1);
  if (name < n1) saisLevel(s1, sa1, n1, name, null);
  else for (let i = 0; i < n1; i++) sa1[s1[i]!] = i;
  if (progress !== null) progress(0.55);

  // Stage 3: map reduced ranks back to LMS positions and induce the full order.
  for (let i = 1, j = 0; i < n; i++) {
    if (types[i] === 1 && types[i - 1] === 0) s1[j++] = i;
  }
  for (let i = 0; i < n1; i++) sa1[i] = s1[sa1[i]!]!;
  sa.fill(-1, n1, n);
  fillBuckets(bkt, counts, true);
  for (let i = n1 - 1; i >= 0; i--) {
    const j = sa[i]!;
    sa[i] = -1;
    sa[--bkt[text[j]!]!] = j;
  }
  const report2 = progress === null ? null : (done: number) => progress(0.55 + (done / (2 * n)) * 0.45);
  induce(text, sa, n, counts, bkt, report2);
}

/**
 * Suffix array of `text` (symbols in [0, alphabetSize)) by SA-IS. Returns a new Int32Array
 * of length text.length. Ties cannot occur: a suffix that is a proper prefix of another
 * sorts first (virtual end sentinel).
 */
export function buildSuffixArray(text: Int32Array, alphabetSize: number, progress?: SaProgress): Int32Array {
  const n = text.length;
  if (!Number.isInteger(alphabetSize) || alphabetSize < 1) throw new RangeError("alphabetSize must be >= 1");
  const sa = new Int32Array(n);
  saisLevel(text, sa, n, alphabetSize, progress ?? null);
  progress?.(1);
  return sa;
}

/**
 * Kasai et al. LCP array: lcp[i] = length of the longest common prefix of the suffixes at
 * sa[i-1] and sa[i]; lcp[0] = 0. Linear time; uses one temporary rank array.
 */
export function buildLcpArray(text: Int32Array, sa: Int32Array): Int32Array {
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
export function compareSuffixes(text: Int32Array, a: number, b: number): number {
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
export function buildSuffixArrayBySort(text: Int32Array): Int32Array {
  const idx = new Int32Array(text.length);
  for (let i = 0; i < idx.length; i++) idx[i] = i;
  idx.sort((a, b) => compareSuffixes(text, a, b));
  return idx;
}
