/**
 * Span-attribution index of one datanet version: the concatenated token ids of all rows
 * (each row preceded by a separator), its suffix array (SA-IS), optional LCP array, the
 * row offset table and the row -> contribution -> contributor tables. Serialized in the
 * flat-binary container (little-endian, CRC-32) that loads with a single read and zero-copy
 * views.
 */
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import {
  asInt32,
  asJson,
  asUint32,
  bytesOf,
  type DecodeOptions,
  decodeFlat,
  encodeFlat,
  FlatFormatError,
  flatByteLength,
  jsonBytes,
  type Section,
  SectionKind,
} from "./flat-binary.ts";
import { buildLcpArray, buildSuffixArray } from "./suffix-array.ts";

/** Internal symbol of the row separator. A model token id t is stored as t + 1. */
export const SEPARATOR = 0;
export const INDEX_FORMAT_VERSION = 1;
const MAGIC = "OLSPANIX";

export interface CorpusRow {
  /** Datanet row id (returned as evidence). */
  rowId: string;
  contributionId: string;
  contributorId: string;
  /** Token ids of the row under the served model's tokenizer, each in [0, vocabSize). */
  tokens: ArrayLike<number>;
}

export interface BuildProgress {
  phase: "tokens" | "suffix-array" | "lcp" | "done";
  /** Overall fraction of the build in [0, 1], monotone. */
  fraction: number;
}

export interface BuildSpanIndexOptions {
  /** Tokenizer vocabulary size: every token id must be in [0, vocabSize). */
  vocabSize: number;
  /** Also store the Kasai LCP array (+4 bytes/token); speeds up span counting. */
  withLcp?: boolean;
  onProgress?: (p: BuildProgress) => void;
  /** Free-form JSON metadata stored in the file (datanet id, version, tokenizer hash...). */
  meta?: Record<string, unknown>;
}

export interface SpanIndex {
  /** Internal symbols: separator 0, token t as t + 1. Row d's first token is at docStarts[d]. */
  tokens: Int32Array;
  sa: Int32Array;
  lcp: Int32Array | null;
  /** Length rows + 1; row d spans [docStarts[d], docStarts[d + 1] - 1); last entry = n + 1. */
  docStarts: Int32Array;
  docContribution: Int32Array;
  contributionContributor: Int32Array;
  /** Occurrences of every internal symbol (index 0 counts separators). */
  unigramCounts: Uint32Array;
  /** vocabSize + 1. */
  alphabetSize: number;
  rowIds: string[];
  contributionIds: string[];
  contributorIds: string[];
  meta: Record<string, unknown>;
}

/**
 * Incremental builder: add rows one by one (e.g. from a database cursor, so the caller never
 * holds every row's tokens), then `finish` builds the suffix array. Rows are laid out in the
 * order added: add them in a canonical order (e.g. by row id) so that every validator builds
 * a byte-identical file. Contributions and contributors are numbered by first appearance.
 */
export class SpanIndexBuilder {
  readonly #vocabSize: number;
  #tokens: Int32Array;
  #n = 0;
  #docStarts: number[] = [];
  #docContribution: number[] = [];
  readonly #contributionIndex = new Map<string, number>();
  readonly #contributorIndex = new Map<string, number>();
  readonly #contributionContributor: number[] = [];
  readonly #rowIds: string[] = [];
  #finished = false;

  /** `capacityTokens`: expected total tokens + rows (avoids regrowing the buffer). */
  constructor(options: { vocabSize: number; capacityTokens?: number }) {
    const { vocabSize } = options;
    if (!Number.isInteger(vocabSize) || vocabSize < 1 || vocabSize >= 0x7fffffff) {
      throw new RangeError("vocabSize must be a positive int32");
    }
    this.#vocabSize = vocabSize;
    this.#tokens = new Int32Array(Math.max(1024, options.capacityTokens ?? 0));
  }

  /** Symbols so far (tokens + one separator per row). */
  get symbolCount(): number {
    return this.#n;
  }

  add(row: CorpusRow): void {
    if (this.#finished) throw new Error("builder already finished");
    const t = row.tokens;
    const need = this.#n + t.length + 1;
    if (need >= 0x7fffffff) throw new RangeError(`index too large: ${need} symbols (shard it)`);
    // Validate before mutating anything, so a rejected row leaves the builder unchanged.
    const vocab = this.#vocabSize;
    for (let i = 0; i < t.length; i++) {
      const v = t[i]!;
      if (!Number.isInteger(v) || v < 0 || v >= vocab) {
        throw new RangeError(`row ${row.rowId}: token ${v} outside [0, ${vocab})`);
      }
    }
    let cIdx = this.#contributorIndex.get(row.contributorId);
    let kIdx = this.#contributionIndex.get(row.contributionId);
    if (kIdx !== undefined && this.#contributionContributor[kIdx] !== cIdx) {
      throw new Error(`contribution ${row.contributionId} belongs to two contributors`);
    }
    if (cIdx === undefined) {
      cIdx = this.#contributorIndex.size;
      this.#contributorIndex.set(row.contributorId, cIdx);
    }
    if (kIdx === undefined) {
      kIdx = this.#contributionIndex.size;
      this.#contributionIndex.set(row.contributionId, kIdx);
      this.#contributionContributor.push(cIdx);
    }
    if (need > this.#tokens.length) {
      const grown = new Int32Array(Math.min(0x7fffffff, Math.max(need, this.#tokens.length * 2)));
      grown.set(this.#tokens.subarray(0, this.#n));
      this.#tokens = grown;
    }
    const tokens = this.#tokens;
    let pos = this.#n;
    tokens[pos++] = SEPARATOR;
    this.#docStarts.push(pos);
    for (let i = 0; i < t.length; i++) tokens[pos++] = t[i]! + 1;
    this.#n = pos;
    this.#docContribution.push(kIdx);
    this.#rowIds.push(row.rowId);
  }

  /** Build the suffix array (and LCP) and return the index. The builder is spent. */
  finish(options: Omit<BuildSpanIndexOptions, "vocabSize"> = {}): SpanIndex {
    if (this.#finished) throw new Error("builder already finished");
    this.#finished = true;
    const report = (phase: BuildProgress["phase"], fraction: number) =>
      options.onProgress?.({ phase, fraction });
    const n = this.#n;
    // Trim the buffer unless it is (almost) exact: the index keeps this array.
    const tokens = this.#tokens.length - n > n >>> 4 ? this.#tokens.slice(0, n) : this.#tokens.subarray(0, n);
    this.#tokens = new Int32Array(0);
    const rows = this.#rowIds.length;
    const docStarts = new Int32Array(rows + 1);
    docStarts.set(this.#docStarts);
    docStarts[rows] = n + 1;
    const alphabetSize = this.#vocabSize + 1;
    const unigramCounts = new Uint32Array(alphabetSize);
    for (let i = 0; i < n; i++) unigramCounts[tokens[i]!]!++;
    report("tokens", 0.02);
    const withLcp = options.withLcp ?? false;
    const saShare = withLcp ? 0.85 : 0.98;
    const sa = buildSuffixArray(tokens, alphabetSize, {
      progress: (f) => report("suffix-array", 0.02 + saShare * f),
    });
    let lcp: Int32Array | null = null;
    if (withLcp) {
      report("lcp", 0.02 + saShare);
      lcp = buildLcpArray(tokens, sa);
    }
    report("done", 1);
    return {
      tokens,
      sa,
      lcp,
      docStarts,
      docContribution: Int32Array.from(this.#docContribution),
      contributionContributor: Int32Array.from(this.#contributionContributor),
      unigramCounts,
      alphabetSize,
      rowIds: this.#rowIds,
      contributionIds: [...this.#contributionIndex.keys()],
      contributorIds: [...this.#contributorIndex.keys()],
      meta: options.meta ?? {},
    };
  }
}

/** Build the index from rows already in memory (see SpanIndexBuilder for row order). */
export function buildSpanIndex(rows: readonly CorpusRow[], options: BuildSpanIndexOptions): SpanIndex {
  let n = 0;
  for (const r of rows) n += r.tokens.length + 1;
  const builder = new SpanIndexBuilder({ vocabSize: options.vocabSize, capacityTokens: n });
  for (const row of rows) builder.add(row);
  return builder.finish(options);
}

/** Row (document) index containing symbol position `pos` (a separator maps to the next row). */
export function rowAt(index: SpanIndex, pos: number): number {
  const starts = index.docStarts;
  let lo = 0;
  let hi = starts.length - 1; // rows
  // Largest d with starts[d] <= pos.
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (starts[mid]! <= pos) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Model token ids of row d. */
export function rowTokens(index: SpanIndex, d: number): Int32Array {
  const s = index.docStarts[d]!;
  const e = index.docStarts[d + 1]! - 1;
  return index.tokens.subarray(s, e).map((v) => v - 1);
}

export interface IndexStats {
  formatVersion: number;
  tokens: number;
  rows: number;
  contributions: number;
  contributors: number;
  alphabetSize: number;
  hasLcp: boolean;
  bytes: number;
  meta: Record<string, unknown>;
}

export function indexStats(index: SpanIndex): IndexStats {
  return {
    formatVersion: INDEX_FORMAT_VERSION,
    tokens: index.tokens.length - index.rowIds.length,
    rows: index.rowIds.length,
    contributions: index.contributionIds.length,
    contributors: index.contributorIds.length,
    alphabetSize: index.alphabetSize,
    hasLcp: index.lcp !== null,
    bytes: flatByteLength(spanSections(index)),
    meta: index.meta,
  };
}

// ---------------------------------------------------------------------------------------
// Binary format (flat-binary container, magic "OLSPANIX"): header words 0 flags (bit 0: LCP),
// 1 alphabetSize, 2 symbols, 3 rows, 4 contributions, 5 contributors. Sections: tokens, SA,
// [LCP], row starts, row -> contribution, contribution -> contributor (int32), unigram counts
// (uint32), ids + meta (JSON).
// ---------------------------------------------------------------------------------------

const SectionId = {
  Tokens: 1,
  Sa: 2,
  Lcp: 3,
  DocStarts: 4,
  DocContribution: 5,
  ContributionContributor: 6,
  Unigram: 7,
  Meta: 8,
} as const;

/**
 * Encode as a list of byte chunks (header first). Chunks share memory with the index: write
 * them out (e.g. `writeSpanIndexFile`) rather than concatenating 400 MB in memory.
 */
export function encodeSpanIndex(index: SpanIndex): Uint8Array[] {
  const words = [
    index.lcp ? 1 : 0,
    index.alphabetSize,
    index.tokens.length,
    index.rowIds.length,
    index.contributionIds.length,
    index.contributorIds.length,
  ];
  return encodeFlat(MAGIC, INDEX_FORMAT_VERSION, words, spanSections(index));
}

function spanSections(index: SpanIndex): Section[] {
  return [
    { id: SectionId.Tokens, kind: SectionKind.Int32, bytes: bytesOf(index.tokens) },
    { id: SectionId.Sa, kind: SectionKind.Int32, bytes: bytesOf(index.sa) },
    ...(index.lcp ? [{ id: SectionId.Lcp, kind: SectionKind.Int32, bytes: bytesOf(index.lcp) }] : []),
    { id: SectionId.DocStarts, kind: SectionKind.Int32, bytes: bytesOf(index.docStarts) },
    { id: SectionId.DocContribution, kind: SectionKind.Int32, bytes: bytesOf(index.docContribution) },
    {
      id: SectionId.ContributionContributor,
      kind: SectionKind.Int32,
      bytes: bytesOf(index.contributionContributor),
    },
    { id: SectionId.Unigram, kind: SectionKind.Uint32, bytes: bytesOf(index.unigramCounts) },
    {
      id: SectionId.Meta,
      kind: SectionKind.Json,
      bytes: jsonBytes({
        rowIds: index.rowIds,
        contributionIds: index.contributionIds,
        contributorIds: index.contributorIds,
        meta: index.meta,
      }),
    },
  ];
}

/** Encode into one Buffer (convenient for small indexes and content hashing). */
export function spanIndexToBuffer(index: SpanIndex): Buffer {
  return Buffer.concat(encodeSpanIndex(index));
}

/** Decode a span index. Typed arrays are zero-copy views into `data` when it is 8-aligned. */
export function decodeSpanIndex(data: Uint8Array, options: DecodeOptions = {}): SpanIndex {
  const f = decodeFlat(data, MAGIC, [INDEX_FORMAT_VERSION], options);
  const ids = asJson<{
    rowIds: string[];
    contributionIds: string[];
    contributorIds: string[];
    meta: Record<string, unknown>;
  }>(f.need(SectionId.Meta));
  const lcpSection = f.section(SectionId.Lcp);
  const index: SpanIndex = {
    tokens: asInt32(f.need(SectionId.Tokens)),
    sa: asInt32(f.need(SectionId.Sa)),
    lcp: lcpSection ? asInt32(lcpSection) : null,
    docStarts: asInt32(f.need(SectionId.DocStarts)),
    docContribution: asInt32(f.need(SectionId.DocContribution)),
    contributionContributor: asInt32(f.need(SectionId.ContributionContributor)),
    unigramCounts: asUint32(f.need(SectionId.Unigram)),
    alphabetSize: f.words[1]!,
    rowIds: ids.rowIds,
    contributionIds: ids.contributionIds,
    contributorIds: ids.contributorIds,
    meta: ids.meta,
  };
  const n = index.tokens.length;
  if (
    index.sa.length !== n ||
    (index.lcp !== null && index.lcp.length !== n) ||
    n !== f.words[2] ||
    index.docStarts.length !== index.rowIds.length + 1 ||
    index.docContribution.length !== index.rowIds.length ||
    index.contributionContributor.length !== index.contributionIds.length ||
    index.unigramCounts.length !== index.alphabetSize
  ) {
    throw new FlatFormatError("inconsistent section sizes");
  }
  return index;
}

/** Write encoded chunks to `path` one by one (no full in-memory copy). */
export function writeChunks(path: string, parts: readonly Uint8Array[]): void {
  const fd = openSync(path, "w");
  try {
    for (const part of parts) {
      let off = 0;
      while (off < part.byteLength) off += writeSync(fd, part, off, part.byteLength - off);
    }
  } finally {
    closeSync(fd);
  }
}

export function writeSpanIndexFile(path: string, index: SpanIndex): void {
  writeChunks(path, encodeSpanIndex(index));
}

export function readSpanIndexFile(path: string, options?: DecodeOptions): SpanIndex {
  return decodeSpanIndex(readFileSync(path), options);
}
