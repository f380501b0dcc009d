/**
 * Maximal-matching-span query (infini-gram / OLMoTrace style) and span scoring.
 *
 * For every start l of the output x[0..L), binary-search x[l..L) in the suffix array; the
 * longest match is the LCP with the suffix at the insertion point or the one before it.
 * A span is kept when length >= minLen, corpus count <= maxCount, and its right end passes
 * the right end of the last kept span (maximality). Query symbols are model token ids + 1,
 * never the separator 0, so no match can cross a row boundary.
 *
 * Scores are integers (bigint) end to end; the only inputs are token counts.
 */
import { log2Fixed } from "./det-math.ts";
import { type ContributorWeight, normalizeToPpm } from "./ppm.ts";
import { rowAt, type SpanIndex } from "./span-index.ts";

export interface SpanQueryOptions {
  /** Minimum span length in tokens. Default 8. */
  minLen?: number;
  /** Maximum number of corpus occurrences for a span to count as evidence. Default 100. */
  maxCount?: number;
  /** At most this many (lowest-numbered) rows are listed per span. Default 16. */
  maxRowsPerSpan?: number;
}

export interface Span {
  /** Output token range [start, end). */
  start: number;
  end: number;
  /** Occurrences of x[start..end) in the corpus (1 <= count <= maxCount). */
  count: number;
  /** Suffix-array interval [saLo, saHi) of the occurrences. */
  saLo: number;
  saHi: number;
  /** Sorted distinct row indices containing the span (capped at maxRowsPerSpan). */
  rows: number[];
  rowsTruncated: boolean;
}

interface Interval {
  lo: number;
  hi: number;
}

/**
 * Search q[from..from+m) in the suffix array. upper=false: first suffix >= the pattern
 * (a suffix that starts with the pattern counts as >=). upper=true: first suffix that is
 * > the pattern and does not start with it. Manber-Myers: comparisons resume at
 * min(lcp(lo), lcp(hi)), so one search costs O(m + log n).
 * Returns the bound and the lcp of the pattern with the suffix just before it and at it.
 */
function search(
  index: SpanIndex,
  q: Int32Array,
  from: number,
  m: number,
  upper: boolean,
): { pos: number; lcpBefore: number; lcpAt: number } {
  const { tokens, sa } = index;
  const n = tokens.length;
  let lo = -1;
  let hi = n;
  let llo = 0;
  let lhi = 0;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    const s = sa[mid]!;
    let h = Math.min(llo, lhi);
    while (h < m && s + h < n && tokens[s + h] === q[from + h]) h++;
    const goLeft = upper
      ? h < m && s + h < n && q[from + h]! < tokens[s + h]!
      : h === m || (s + h < n && q[from + h]! < tokens[s + h]!);
    if (goLeft) {
      hi = mid;
      lhi = h;
    } else {
      lo = mid;
      llo = h;
    }
  }
  return { pos: hi, lcpBefore: lo >= 0 ? llo : 0, lcpAt: hi < n ? lhi : 0 };
}

/** Convert model token ids to query symbols (+1). Ids >= vocabSize can never match. */
function toSymbols(index: SpanIndex, output: ArrayLike<number>): Int32Array {
  const q = new Int32Array(output.length);
  for (let i = 0; i < output.length; i++) {
    const v = output[i]!;
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`invalid token id ${v} at ${i}`);
    q[i] = Math.min(v + 1, index.alphabetSize);
  }
  return q;
}

/** SA interval of the suffixes starting with q[from..from+m), or null if wider than maxCount. */
function interval(
  index: SpanIndex,
  q: Int32Array,
  from: number,
  m: number,
  anchor: number,
  maxCount: number,
): Interval | null {
  const lcp = index.lcp;
  if (lcp !== null) {
    // Walk the LCP array outwards from a known occurrence: O(count), stops past maxCount.
    const n = lcp.length;
    let a = anchor;
    let b = anchor + 1;
    while (a > 0 && lcp[a]! >= m) {
      a--;
      if (b - a > maxCount) return null;
    }
    while (b < n && lcp[b]! >= m) {
      b++;
      if (b - a > maxCount) return null;
    }
    return { lo: a, hi: b };
  }
  const a = search(index, q, from, m, false).pos;
  const b = search(index, q, from, m, true).pos;
  return b - a > maxCount ? null : { lo: a, hi: b };
}

function rowsOf(
  index: SpanIndex,
  saLo: number,
  saHi: number,
  cap: number,
): { rows: number[]; truncated: boolean } {
  const set = new Set<number>();
  for (let i = saLo; i < saHi; i++) set.add(rowAt(index, index.sa[i]!));
  const all = [...set].sort((a, b) => a - b);
  return { rows: all.slice(0, cap), truncated: all.length > cap };
}

/** Maximal matching spans of `output` (model token ids) in the index. */
export function findSpans(
  index: SpanIndex,
  output: ArrayLike<number>,
  options: SpanQueryOptions = {},
): Span[] {
  const minLen = Math.max(1, options.minLen ?? 8);
  const maxCount = options.maxCount ?? 100;
  const maxRows = options.maxRowsPerSpan ?? 16;
  const q = toSymbols(index, output);
  const L = q.length;
  const spans: Span[] = [];
  let lastEnd = 0;
  for (let l = 0; l + minLen <= L && lastEnd < L; l++) {
    const r = search(index, q, l, L - l, false);
    const m = Math.max(r.lcpAt, r.lcpBefore);
    if (m < minLen || l + m <= lastEnd) continue;
    const anchor = r.lcpAt >= r.lcpBefore ? r.pos : r.pos - 1;
    const iv = interval(index, q, l, m, anchor, maxCount);
    if (iv === null) continue;
    const saLo = iv.lo;
    const saHi = iv.hi;
    const { rows, truncated } = rowsOf(index, saLo, saHi, maxRows);
    spans.push({ start: l, end: l + m, count: saHi - saLo, saLo, saHi, rows, rowsTruncated: truncated });
    lastEnd = l + m;
  }
  return spans;
}

// ---------------------------------------------------------------------------------------
// Scoring
// ---------------------------------------------------------------------------------------

export type SpanWeighting = "length" | "rarity";

export interface SpanScoreOptions {
  /** "length": weight = span length; "rarity": weight = -sum log2 unigram probability. */
  weighting?: SpanWeighting;
  /** Credit at most this many occurrences (lowest corpus positions) per span. Default 16. */
  maxCreditedOccurrences?: number;
}

/** Fixed-point scale of span weights: 2^16 units per token (length) or per bit (rarity). */
export const WEIGHT_FRAC_BITS = 16;
/** Extra bits kept when a span weight is split across occurrences. */
const SHARE_FRAC_BITS = 20n;

/** Per-symbol rarity -log2(count / total) in 2^-16 bits (integer math; see det-math). */
export function rarityTable(index: SpanIndex): Int32Array {
  const counts = index.unigramCounts;
  let total = 0;
  for (let s = 1; s < counts.length; s++) total += counts[s]!;
  const out = new Int32Array(counts.length);
  if (total === 0) return out;
  const logTotal = log2Fixed(total, WEIGHT_FRAC_BITS);
  for (let s = 1; s < counts.length; s++) {
    const c = counts[s]!;
    out[s] = c > 0 ? logTotal - log2Fixed(c, WEIGHT_FRAC_BITS) : 0;
  }
  return out;
}

/** Integer weight of output span [start, end). */
export function spanWeight(
  index: SpanIndex,
  output: ArrayLike<number>,
  span: Pick<Span, "start" | "end">,
  weighting: SpanWeighting,
  rarity?: Int32Array,
): bigint {
  if (weighting === "length") return BigInt(span.end - span.start) << BigInt(WEIGHT_FRAC_BITS);
  const table = rarity ?? rarityTable(index);
  let w = 0n;
  for (let i = span.start; i < span.end; i++) w += BigInt(table[output[i]! + 1]!);
  return w;
}

/**
 * Row scores: each span's weight is split equally over its first `maxCreditedOccurrences`
 * occurrences (by corpus position); each occurrence credits its row. Returns row -> score.
 */
export function scoreRows(
  index: SpanIndex,
  output: ArrayLike<number>,
  spans: readonly Span[],
  options: SpanScoreOptions = {},
): Map<number, bigint> {
  const weighting = options.weighting ?? "length";
  const cap = Math.max(1, options.maxCreditedOccurrences ?? 16);
  const rarity = weighting === "rarity" ? rarityTable(index) : undefined;
  const scores = new Map<number, bigint>();
  for (const span of spans) {
    const w = spanWeight(index, output, span, weighting, rarity) << SHARE_FRAC_BITS;
    const positions = Array.from(index.sa.subarray(span.saLo, span.saHi)).sort((a, b) => a - b);
    const k = Math.min(cap, positions.length);
    const share = w / BigInt(k);
    for (let i = 0; i < k; i++) {
      const row = rowAt(index, positions[i]!);
      scores.set(row, (scores.get(row) ?? 0n) + share);
    }
  }
  return scores;
}

export interface SpanAttribution {
  method: "span";
  weighting: SpanWeighting;
  spans: Array<{ start: number; end: number; count: number; rowIds: string[]; rowsTruncated: boolean }>;
  /** Credited rows, by score descending then row id. Scores are decimal bigint strings. */
  rows: Array<{ rowId: string; contributionId: string; contributorId: string; score: string }>;
  /** Contributor weights in ppm (sum exactly 1,000,000), or [] when nothing matched. */
  weights: ContributorWeight[];
  totalScore: string;
}

/** Query, score and aggregate one output: the whole span-attribution pipeline. */
export function attributeSpans(
  index: SpanIndex,
  output: ArrayLike<number>,
  options: SpanQueryOptions & SpanScoreOptions = {},
): SpanAttribution {
  const weighting = options.weighting ?? "length";
  const spans = findSpans(index, output, options);
  const rowScores = scoreRows(index, output, spans, options);
  const rows = [...rowScores]
    .filter(([, score]) => score > 0n)
    .map(([d, score]) => {
      const k = index.docContribution[d]!;
      return {
        rowId: index.rowIds[d]!,
        contributionId: index.contributionIds[k]!,
        contributorId: index.contributorIds[index.contributionContributor[k]!]!,
        score,
      };
    })
    .sort((a, b) =>
      a.score !== b.score ? (a.score > b.score ? -1 : 1) : a.rowId < b.rowId ? -1 : a.rowId > b.rowId ? 1 : 0,
    );
  let total = 0n;
  for (const r of rows) total += r.score;
  return {
    method: "span",
    weighting,
    spans: spans.map((s) => ({
      start: s.start,
      end: s.end,
      count: s.count,
      rowIds: s.rows.map((d) => index.rowIds[d]!),
      rowsTruncated: s.rowsTruncated,
    })),
    rows: rows.map((r) => ({ ...r, score: r.score.toString() })),
    weights: normalizeToPpm(rows.map((r) => ({ contributorId: r.contributorId, score: r.score }))),
    totalScore: total.toString(),
  };
}
