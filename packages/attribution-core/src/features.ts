/**
 * Deterministic hashed n-gram features ("hashing trick") for small text classifiers.
 *
 * Words are maximal runs of Unicode letters/digits after lower-casing; features are word
 * 1-grams and (optionally) 2-grams, hashed with 32-bit FNV-1a over UTF-16 code units into
 * `dim` buckets. Row vectors hold bucket counts scaled to unit L2 norm. Only integer hashing,
 * +, *, / and sqrt (all correctly rounded in IEEE-754) are used, so features are
 * bit-identical on every machine.
 */

export interface FeatureOptions {
  /** Number of hash buckets D. */
  dim: number;
  /** Largest n-gram order: 1 (words) or 2 (words + word pairs). Default 2. */
  maxNgram?: 1 | 2;
  /** Hash seed (FNV offset basis is xored with it). Default 0. */
  seed?: number;
  /** Only the first maxChars characters are read (bounds the cost of huge rows). */
  maxChars?: number;
}

/** Sparse vector: strictly increasing indices in [0, dim) and their values. */
export interface SparseVector {
  indices: Int32Array;
  values: Float64Array;
}

/** Compressed sparse rows: row r is entries rowPtr[r]..rowPtr[r+1]. */
export interface CsrMatrix {
  rows: number;
  dim: number;
  rowPtr: Int32Array;
  indices: Int32Array;
  values: Float64Array;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

export function fnv1a(text: string, seed = 0): number {
  let h = (FNV_OFFSET ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME) >>> 0;
  }
  return h;
}

const WORD = /[\p{L}\p{N}]+/gu;

export function tokenizeWords(text: string): string[] {
  return text.toLowerCase().match(WORD) ?? [];
}

export function hashFeatures(text: string, options: FeatureOptions): SparseVector {
  const { dim } = options;
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError("dim must be a positive integer");
  const seed = options.seed ?? 0;
  const maxNgram = options.maxNgram ?? 2;
  const src = options.maxChars !== undefined ? text.slice(0, options.maxChars) : text;
  const words = tokenizeWords(src);
  const counts = new Map<number, number>();
  for (let i = 0; i < words.length; i++) {
    const b1 = fnv1a(words[i]!, seed) % dim;
    counts.set(b1, (counts.get(b1) ?? 0) + 1);
    if (maxNgram >= 2 && i + 1 < words.length) {
      // The space cannot occur inside a word, so "a b" never collides with a unigram string.
      const b2 = fnv1a(`${words[i]} ${words[i + 1]}`, seed) % dim;
      counts.set(b2, (counts.get(b2) ?? 0) + 1);
    }
  }
  const indices = Int32Array.from([...counts.keys()].sort((a, b) => a - b));
  const values = new Float64Array(indices.length);
  let sq = 0;
  for (let i = 0; i < indices.length; i++) {
    const c = counts.get(indices[i]!)!;
    values[i] = c;
    sq += c * c;
  }
  const norm = Math.sqrt(sq);
  if (norm > 0) for (let i = 0; i < values.length; i++) values[i] = values[i]! / norm;
  return { indices, values };
}

export function toCsr(vectors: readonly SparseVector[], dim: number): CsrMatrix {
  const rowPtr = new Int32Array(vectors.length + 1);
  let nnz = 0;
  vectors.forEach((v, r) => {
    nnz += v.indices.length;
    rowPtr[r + 1] = nnz;
  });
  const indices = new Int32Array(nnz);
  const values = new Float64Array(nnz);
  vectors.forEach((v, r) => {
    for (let i = 0; i < v.indices.length; i++) {
      const j = v.indices[i]!;
      if (j < 0 || j >= dim || (i > 0 && j <= v.indices[i - 1]!))
        throw new RangeError(`row ${r}: bad index ${j}`);
    }
    indices.set(v.indices, rowPtr[r]!);
    values.set(v.values, rowPtr[r]!);
  });
  return { rows: vectors.length, dim, rowPtr, indices, values };
}

export function csrRow(m: CsrMatrix, r: number): SparseVector {
  const a = m.rowPtr[r]!;
  const b = m.rowPtr[r + 1]!;
  return { indices: m.indices.subarray(a, b), values: m.values.subarray(a, b) };
}

/** Dense float32 [rows, dim] matrix (the ONNX model's input). */
export function toDenseFloat32(vectors: readonly SparseVector[], dim: number): Float32Array {
  const out = new Float32Array(vectors.length * dim);
  vectors.forEach((v, r) => {
    for (let i = 0; i < v.indices.length; i++) out[r * dim + v.indices[i]!] = v.values[i]!;
  });
  return out;
}
