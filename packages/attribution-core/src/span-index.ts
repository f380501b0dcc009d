/**
 * Span-attribution index of one datanet version: the concatenated token ids of all rows
 * (each row preceded by a separator), its suffix array (SA-IS), optional LCP array, the
 * row offset table and the row -> contribution -> contributor tables. Serialized as one
 * flat little-endian binary (header + section table + 8-byte-aligned typed-array sections,
 * CRC-32 over the whole file) that loads with a single read and zero-copy views.
 */
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { crc32 } from "node:zlib";
import { buildLcpArray, buildSuffixArray } from "./suffix-array.ts";

/** Internal symbol of the row separator. A model token id t is stored as t + 1. */
export const SEPARATOR = 0;
export const INDEX_FORMAT_VERSION = 1;
const MAGIC = "OLSPANIX";
const HEADER_BYTES = 64;
const SECTION_ENTRY_BYTES = 32;

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
 * Build the index. Rows are laid out in the given order: feed them in a canonical order
 * (e.g. by row id) so that every validator builds a byte-identical file. Contributions and
 * contributors are numbered in order of first appearance.
 */
export function buildSpanIndex(rows: readonly CorpusRow[], options: BuildSpanIndexOptions): SpanIndex {
  const { vocabSize, onProgress } = options;
  if (!Number.isInteger(vocabSize) || vocabSize < 1 || vocabSize >= 0x7fffffff) {
    throw new RangeError("vocabSize must be a positive int32");
  }
  let n = 0;
  for (const r of rows) n += r.tokens.length + 1;
  if (n >= 0x7fffffff) throw new RangeError(`index too large: ${n} symbols (shard it)`);
  const report = (phase: BuildProgress["phase"], fraction: number) => onProgress?.({ phase, fraction });

  const tokens = new Int32Array(n);
  const docStarts = new Int32Array(rows.length + 1);
  const docContribution = new Int32Array(rows.length);
  const contributionIndex = new Map<string, number>();
  const contributorIndex = new Map<string, number>();
  const contributionContributorList: number[] = [];
  const rowIds: string[] = [];
  let pos = 0;
  for (let d = 0; d < rows.length; d++) {
    const row = rows[d]!;
    let cIdx = contributorIndex.get(row.contributorId);
    if (cIdx === undefined) {
      cIdx = contributorIndex.size;
      contributorIndex.set(row.contributorId, cIdx);
    }
    let kIdx = contributionIndex.get(row.contributionId);
    if (kIdx === undefined) {
      kIdx = contributionIndex.size;
      contributionIndex.set(row.contributionId, kIdx);
      contributionContributorList.push(cIdx);
    } else if (contributionContributorList[kIdx] !== cIdx) {
      throw new Error(`contribution ${row.contributionId} belongs to two contributors`);
    }
    docContribution[d] = kIdx;
    rowIds.push(row.rowId);
    tokens[pos++] = SEPARATOR;
    docStarts[d] = pos;
    const t = row.tokens;
    for (let i = 0; i < t.length; i++) {
      const v = t[i]!;
      if (!Number.isInteger(v) || v < 0 || v >= vocabSize) {
        throw new RangeError(`row ${row.rowId}: token ${v} outside [0, ${vocabSize})`);
      }
      tokens[pos++] = v + 1;
    }
    if ((d & 1023) === 0) report("tokens", 0.02 * (pos / Math.max(1, n)));
  }
  docStarts[rows.length] = n + 1;
  const alphabetSize = vocabSize + 1;
  const unigramCounts = new Uint32Array(alphabetSize);
  for (let i = 0; i < n; i++) unigramCounts[tokens[i]!]!++;
  report("tokens", 0.02);

  const withLcp = options.withLcp ?? false;
  const saShare = withLcp ? 0.85 : 0.98;
  const sa = buildSuffixArray(tokens, alphabetSize, (f) => report("suffix-array", 0.02 + saShare * f));
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
    docContribution,
    contributionContributor: Int32Array.from(contributionContributorList),
    unigramCounts,
    alphabetSize,
    rowIds,
    contributionIds: [...contributionIndex.keys()],
    contributorIds: [...contributorIndex.keys()],
    meta: options.meta ?? {},
  };
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
    bytes: encodeSpanIndex(index).reduce((s, p) => s + p.byteLength, 0),
    meta: index.meta,
  };
}

// ---------------------------------------------------------------------------------------
// Binary format
//
// header (64 bytes, little-endian):
//   0  "OLSPANIX"   8  u32 version   12 u32 headerBytes (64 + 32 * sections)
//   16 u32 sections 20 u32 crc32 (of the whole file with this field zero)
//   24 u32 flags (bit 0: LCP present)   28 u32 alphabetSize
//   32 u32 symbols  36 u32 rows  40 u32 contributions  44 u32 contributors  48..64 zero
// section table: per section u32 id, u32 kind (1 int32, 2 uint32, 3 utf-8 JSON),
//   u64 offset, u64 byteLength, u64 zero. Sections start 8-byte aligned, zero padded.
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
type SectionId = (typeof SectionId)[keyof typeof SectionId];

function assertLittleEndian(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error("span index files are little-endian; big-endian hosts are not supported");
  }
}

function bytesOf(a: Int32Array | Uint32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Encode as a list of byte chunks (header first). Chunks share memory with the index: write
 * them out (e.g. `writeSpanIndexFile`) rather than concatenating 400 MB in memory.
 */
export function encodeSpanIndex(index: SpanIndex): Uint8Array[] {
  assertLittleEndian();
  const metaJson = new TextEncoder().encode(
    JSON.stringify({
      rowIds: index.rowIds,
      contributionIds: index.contributionIds,
      contributorIds: index.contributorIds,
      meta: index.meta,
    }),
  );
  const sections: Array<{ id: SectionId; kind: number; bytes: Uint8Array }> = [
    { id: SectionId.Tokens, kind: 1, bytes: bytesOf(index.tokens) },
    { id: SectionId.Sa, kind: 1, bytes: bytesOf(index.sa) },
    ...(index.lcp ? [{ id: SectionId.Lcp, kind: 1, bytes: bytesOf(index.lcp) }] : []),
    { id: SectionId.DocStarts, kind: 1, bytes: bytesOf(index.docStarts) },
    { id: SectionId.DocContribution, kind: 1, bytes: bytesOf(index.docContribution) },
    { id: SectionId.ContributionContributor, kind: 1, bytes: bytesOf(index.contributionContributor) },
    { id: SectionId.Unigram, kind: 2, bytes: bytesOf(index.unigramCounts) },
    { id: SectionId.Meta, kind: 3, bytes: metaJson },
  ];
  const headerBytes = HEADER_BYTES + SECTION_ENTRY_BYTES * sections.length;
  const header = new Uint8Array(headerBytes);
  const dv = new DataView(header.buffer);
  header.set(new TextEncoder().encode(MAGIC), 0);
  dv.setUint32(8, INDEX_FORMAT_VERSION, true);
  dv.setUint32(12, headerBytes, true);
  dv.setUint32(16, sections.length, true);
  dv.setUint32(24, index.lcp ? 1 : 0, true);
  dv.setUint32(28, index.alphabetSize, true);
  dv.setUint32(32, index.tokens.length, true);
  dv.setUint32(36, index.rowIds.length, true);
  dv.setUint32(40, index.contributionIds.length, true);
  dv.setUint32(44, index.contributorIds.length, true);
  const parts: Uint8Array[] = [header];
  let offset = headerBytes;
  sections.forEach((s, i) => {
    const pad = (8 - (offset % 8)) % 8;
    if (pad > 0) parts.push(new Uint8Array(pad));
    offset += pad;
    const e = HEADER_BYTES + SECTION_ENTRY_BYTES * i;
    dv.setUint32(e, s.id, true);
    dv.setUint32(e + 4, s.kind, true);
    dv.setBigUint64(e + 8, BigInt(offset), true);
    dv.setBigUint64(e + 16, BigInt(s.bytes.byteLength), true);
    parts.push(s.bytes);
    offset += s.bytes.byteLength;
  });
  let crc = 0;
  for (const p of parts) crc = crc32(p, crc);
  dv.setUint32(20, crc, true);
  return parts;
}

/** Encode into one Buffer (convenient for small indexes and content hashing). */
export function spanIndexToBuffer(index: SpanIndex): Buffer {
  return Buffer.concat(encodeSpanIndex(index));
}

export interface DecodeOptions {
  /** Verify the CRC-32 (one pass over the file, ~0.1 s per 400 MB). Default true. */
  verifyChecksum?: boolean;
}

export class IndexFormatError extends Error {
  override name = "IndexFormatError";
}

/** Decode a span index. Typed arrays are zero-copy views into `data` when it is 4-aligned. */
export function decodeSpanIndex(data: Uint8Array, options: DecodeOptions = {}): SpanIndex {
  assertLittleEndian();
  let buf = data;
  if (buf.byteOffset % 8 !== 0) buf = new Uint8Array(buf); // one copy to align views
  if (buf.byteLength < HEADER_BYTES) throw new IndexFormatError("truncated header");
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = new TextDecoder().decode(buf.subarray(0, 8));
  if (magic !== MAGIC) throw new IndexFormatError("not a span index (bad magic)");
  const version = dv.getUint32(8, true);
  if (version !== INDEX_FORMAT_VERSION) throw new IndexFormatError(`unsupported format version ${version}`);
  const headerBytes = dv.getUint32(12, true);
  const count = dv.getUint32(16, true);
  if (headerBytes !== HEADER_BYTES + SECTION_ENTRY_BYTES * count || headerBytes > buf.byteLength) {
    throw new IndexFormatError("corrupt header");
  }
  if (options.verifyChecksum ?? true) {
    const stored = dv.getUint32(20, true);
    let crc = crc32(buf.subarray(0, 20));
    crc = crc32(new Uint8Array(4), crc);
    crc = crc32(buf.subarray(24), crc);
    if (crc !== stored) throw new IndexFormatError("checksum mismatch");
  }
  const sections = new Map<number, Uint8Array>();
  for (let i = 0; i < count; i++) {
    const e = HEADER_BYTES + SECTION_ENTRY_BYTES * i;
    const id = dv.getUint32(e, true);
    const off = Number(dv.getBigUint64(e + 8, true));
    const len = Number(dv.getBigUint64(e + 16, true));
    if (off % 8 !== 0 || off + len > buf.byteLength) throw new IndexFormatError(`corrupt section ${id}`);
    sections.set(id, buf.subarray(off, off + len));
  }
  const need = (id: SectionId) => {
    const s = sections.get(id);
    if (!s) throw new IndexFormatError(`missing section ${id}`);
    return s;
  };
  const i32 = (s: Uint8Array) => new Int32Array(s.buffer, s.byteOffset, s.byteLength >>> 2);
  const u32 = (s: Uint8Array) => new Uint32Array(s.buffer, s.byteOffset, s.byteLength >>> 2);
  const metaObj = JSON.parse(new TextDecoder().decode(need(SectionId.Meta))) as {
    rowIds: string[];
    contributionIds: string[];
    contributorIds: string[];
    meta: Record<string, unknown>;
  };
  const lcpSection = sections.get(SectionId.Lcp);
  const index: SpanIndex = {
    tokens: i32(need(SectionId.Tokens)),
    sa: i32(need(SectionId.Sa)),
    lcp: lcpSection ? i32(lcpSection) : null,
    docStarts: i32(need(SectionId.DocStarts)),
    docContribution: i32(need(SectionId.DocContribution)),
    contributionContributor: i32(need(SectionId.ContributionContributor)),
    unigramCounts: u32(need(SectionId.Unigram)),
    alphabetSize: dv.getUint32(28, true),
    rowIds: metaObj.rowIds,
    contributionIds: metaObj.contributionIds,
    contributorIds: metaObj.contributorIds,
    meta: metaObj.meta,
  };
  const n = index.tokens.length;
  if (
    index.sa.length !== n ||
    (index.lcp !== null && index.lcp.length !== n) ||
    n !== dv.getUint32(32, true) ||
    index.docStarts.length !== index.rowIds.length + 1 ||
    index.docContribution.length !== index.rowIds.length ||
    index.contributionContributor.length !== index.contributionIds.length ||
    index.unigramCounts.length !== index.alphabetSize
  ) {
    throw new IndexFormatError("inconsistent section sizes");
  }
  return index;
}

export function writeSpanIndexFile(path: string, index: SpanIndex): void {
  // Chunk by chunk: avoids concatenating the whole index in memory.
  const fd = openSync(path, "w");
  try {
    for (const part of encodeSpanIndex(index)) {
      let off = 0;
      while (off < part.byteLength) off += writeSync(fd, part, off, part.byteLength - off);
    }
  } finally {
    closeSync(fd);
  }
}

export function readSpanIndexFile(path: string, options?: DecodeOptions): SpanIndex {
  return decodeSpanIndex(readFileSync(path), options);
}
