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

/** Occurrences of a span in one shard: the suffix-array interval [saLo, saHi). */
export interface ShardHit {
  shard: number;
  saLo: number;
  saHi: number;
}

/** A row of one shard (shard 0 when a single index is queried). */
export interface RowRef {
  shard: number;
  row: number;
}

export interface Span {
  /** Output token range [start, end). */
  start: number;
  end: number;
  /** Occurrences of x[start..end) in the corpus, all shards (1 <= count <= maxCount). */
  count: number;
  /** Per-shard suffix-array intervals of the occurrences (shards with none are omitted). */
  hits: ShardHit[];
  /** Distinct rows containing the span, by (shard, row), capped at maxRowsPerSpan. */
  rows: RowRef[];
  rowsTruncated: boolean;
}

/** One index, or the shards of one datanet version (rows in shard order = corpus order). */
export type SpanShards = SpanIndex | readonly SpanIndex[];

function asShards(shards: SpanShards): readonly SpanIndex[] {
  const list = Array.isArray(shards) ? (shards as readonly SpanIndex[]) : [shards as SpanIndex];
  if (list.length === 0) throw new RangeError("no index shards");
  for (const s of list) {
    if (s.alphabetSize !== list[0]!.alphabetSize) throw new RangeError("shards use different vocabularies");
  }
  return list;
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
  shards: readonly SpanIndex[],
  hits: readonly ShardHit[],
  cap: number,
): { rows: RowRef[]; truncated: boolean } {
  const rows: RowRef[] = [];
  for (const h of hits) {
    const index = shards[h.shard]!;
    const set = new Set<number>();
    for (let i = h.saLo; i < h.saHi; i++) set.add(rowAt(index, index.sa[i]!));
    for (const row of [...set].sort((a, b) => a - b)) rows.push({ shard: h.shard, row });
  }
  return { rows: rows.slice(0, cap), truncated: rows.length > cap };
}

/**
 * Maximal matching spans of `output` (model token ids) in one index or across shards. With
 * shards, the longest match at l is the maximum over shards and its count is the sum over
 * the shards where that longest match occurs — the same spans as one index over all rows.
 */
export function findSpans(
  shardsIn: SpanShards,
  output: ArrayLike<number>,
  options: SpanQueryOptions = {},
): Span[] {
  const shards = asShards(shardsIn);
  const minLen = Math.max(1, options.minLen ?? 8);
  const maxCount = options.maxCount ?? 100;
  const maxRows = options.maxRowsPerSpan ?? 16;
  const q = toSymbols(shards[0]!, output);
  const L = q.length;
  const spans: Span[] = [];
  const lens = new Int32Array(shards.length);
  const anchors = new Int32Array(shards.length);
  let lastEnd = 0;
  for (let l = 0; l + minLen <= L && lastEnd < L; l++) {
    let m = 0;
    shards.forEach((index, s) => {
      const r = search(index, q, l, L - l, false);
      lens[s] = Math.max(r.lcpAt, r.lcpBefore);
      anchors[s] = r.lcpAt >= r.lcpBefore ? r.pos : r.pos - 1;
      if (lens[s]! > m) m = lens[s]!;
    });
    if (m < minLen || l + m <= lastEnd) continue;
    const hits: ShardHit[] = [];
    let count = 0;
    for (let s = 0; s < shards.length && count <= maxCount; s++) {
      if (lens[s] !== m) continue;
      const iv = interval(shards[s]!, q, l, m, anchors[s]!, maxCount - count);
      if (iv === null) {
        count = maxCount + 1;
        break;
      }
      hits.push({ shard: s, saLo: iv.lo, saHi: iv.hi });
      count += iv.hi - iv.lo;
    }
    if (count > maxCount) continue;
    const { rows, truncated } = rowsOf(shards, hits, maxRows);
    spans.push({ start: l, end: l + m, count, hits, rows, rowsTruncated: truncated });
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

/**
 * Per-symbol rarity -log2(count / total) in 2^-16 bits (integer math; see det-math), from the
 * unigram counts summed over all shards.
 */
export function rarityTable(shardsIn: SpanShards): Int32Array {
  const shards = asShards(shardsIn);
  const size = shards[0]!.alphabetSize;
  const counts = new Float64Array(size);
  for (const index of shards) for (let s = 1; s < size; s++) counts[s] = counts[s]! + index.unigramCounts[s]!;
  let total = 0;
  for (let s = 1; s < size; s++) total += counts[s]!;
  const out = new Int32Array(size);
  if (total === 0) return out;
  const logTotal = log2Fixed(total, WEIGHT_FRAC_BITS);
  for (let s = 1; s < size; s++) {
    const c = counts[s]!;
    out[s] = c > 0 ? logTotal - log2Fixed(c, WEIGHT_FRAC_BITS) : 0;
  }
  return out;
}

/** Integer weight of output span [start, end). */
export function spanWeight(
  shards: SpanShards,
  output: ArrayLike<number>,
  span: Pick<Span, "start" | "end">,
  weighting: SpanWeighting,
  rarity?: Int32Array,
): bigint {
  if (weighting === "length") return BigInt(span.end - span.start) << BigInt(WEIGHT_FRAC_BITS);
  const table = rarity ?? rarityTable(shards);
  let w = 0n;
  for (let i = span.start; i < span.end; i++) w += BigInt(table[output[i]! + 1]!);
  return w;
}

export interface RowScore extends RowRef {
  score: bigint;
}

/**
 * Row scores: each span's weight is split equally over its first `maxCreditedOccurrences`
 * occurrences in corpus order (shard, position); each occurrence credits its row. Returns
 * rows with a positive score, by (shard, row).
 */
export function scoreRows(
  shardsIn: SpanShards,
  output: ArrayLike<number>,
  spans: readonly Span[],
  options: SpanScoreOptions = {},
): RowScore[] {
  const shards = asShards(shardsIn);
  const weighting = options.weighting ?? "length";
  const cap = Math.max(1, options.maxCreditedOccurrences ?? 16);
  const rarity = weighting === "rarity" ? rarityTable(shards) : undefined;
  const scores = new Map<number, bigint>(); // key: shard * 2^31 + row
  for (const span of spans) {
    const w = spanWeight(shards, output, span, weighting, rarity) << SHARE_FRAC_BITS;
    const occurrences: RowRef[] = [];
    for (const h of span.hits) {
      if (occurrences.length >= cap) break;
      const index = shards[h.shard]!;
      const positions = Array.from(index.sa.subarray(h.saLo, h.saHi)).sort((a, b) => a - b);
      for (const p of positions.slice(0, cap - occurrences.length))
        occurrences.push({ shard: h.shard, row: rowAt(index, p) });
    }
    const share = w / BigInt(occurrences.length);
    for (const o of occurrences) {
      const key = o.shard * 2 ** 31 + o.row;
      scores.set(key, (scores.get(key) ?? 0n) + share);
    }
  }
  return [...scores]
    .filter(([, score]) => score > 0n)
    .sort((a, b) => a[0] - b[0])
    .map(([key, score]) => ({ shard: Math.floor(key / 2 ** 31), row: key % 2 ** 31, score }));
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
  shardsIn: SpanShards,
  output: ArrayLike<number>,
  options: SpanQueryOptions & SpanScoreOptions = {},
): SpanAttribution {
  const shards = asShards(shardsIn);
  const weighting = options.weighting ?? "length";
  const spans = findSpans(shards, output, options);
  const rows = scoreRows(shards, output, spans, options)
    .map(({ shard, row, score }) => {
      const index = shards[shard]!;
      const k = index.docContribution[row]!;
      return {
        rowId: index.rowIds[row]!,
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
      rowIds: s.rows.map((r) => shards[r.shard]!.rowIds[r.row]!),
      rowsTruncated: s.rowsTruncated,
    })),
    rows: rows.map((r) => ({ ...r, score: r.score.toString() })),
    weights: normalizeToPpm(rows.map((r) => ({ contributorId: r.contributorId, score: r.score }))),
    totalScore: total.toString(),
  };
}
