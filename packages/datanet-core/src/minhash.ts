import { fmix32, mixInto, seededUint32s } from "./hash32.ts";

/**
 * Shingles are taken from NORMALIZED text (see normalize.ts), so case, whitespace and punctuation
 * never change them.
 *  - `word`, size k: every run of k consecutive words ("the quick", "quick brown" for k = 2).
 *  - `char`, size k: every run of k consecutive UTF-16 code units, spaces included.
 * A text shorter than one shingle contributes one shingle: the whole text (so short rows still
 * get a signature); an empty text has no shingles.
 */
export interface ShingleConfig {
  kind: "word" | "char";
  size: number;
}

export interface MinHashConfig {
  /** Number of hash functions = signature length. */
  numPerm: number;
  /** Seed of the permutation family. Changing it changes every signature: stored signatures must be rebuilt. */
  seed: number;
  shingle: ShingleConfig;
}

export const DEFAULT_MINHASH_CONFIG: Readonly<MinHashConfig> = Object.freeze({
  numPerm: 128,
  seed: 0x0be11ed6,
  shingle: Object.freeze({ kind: "word", size: 2 }) as ShingleConfig,
});

const WORD_SEED = 0x2545f491;
const SPACE = 0x20;

/**
 * Computes the 32-bit hashes of a normalized text's shingles into `out` (grown when needed) and
 * returns how many were written. Duplicates are kept: MinHash ignores them and removing them
 * would cost more than it saves.
 */
export class Shingler {
  private buf = new Uint32Array(1024);
  private words = new Uint32Array(256);

  constructor(readonly config: ShingleConfig) {
    if (!Number.isInteger(config.size) || config.size < 1) throw new RangeError("shingle size must be >= 1");
  }

  /** Returns a view of the shingle hashes, valid until the next call. */
  hashes(normalized: string): Uint32Array {
    return this.config.kind === "word" ? this.wordShingles(normalized) : this.charShingles(normalized);
  }

  private ensure(n: number): Uint32Array {
    if (this.buf.length < n) this.buf = new Uint32Array(Math.max(n, this.buf.length * 2));
    return this.buf;
  }

  private wordShingles(s: string): Uint32Array {
    // Pass 1: one hash per word, computed over the code units, no substring allocation.
    let nw = 0;
    let h = WORD_SEED;
    let inWord = false;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === SPACE) {
        if (inWord) {
          if (nw === this.words.length) this.growWords();
          this.words[nw++] = fmix32(h);
          h = WORD_SEED;
          inWord = false;
        }
      } else {
        h = mixInto(h, c);
        inWord = true;
      }
    }
    if (inWord) {
      if (nw === this.words.length) this.growWords();
      this.words[nw++] = fmix32(h);
    }
    const k = this.config.size;
    if (nw === 0) return this.buf.subarray(0, 0);
    const count = nw >= k ? nw - k + 1 : 1;
    const out = this.ensure(count);
    const span = Math.min(k, nw);
    for (let i = 0; i < count; i++) {
      let x = k; // the shingle size is part of the hash: a 1-word text under k=2 is its own thing
      for (let j = 0; j < span; j++) x = mixInto(x, this.words[i + j]!);
      out[i] = fmix32(x ^ span);
    }
    return out.subarray(0, count);
  }

  private growWords(): void {
    const w = new Uint32Array(this.words.length * 2);
    w.set(this.words);
    this.words = w;
  }

  private charShingles(s: string): Uint32Array {
    const k = this.config.size;
    const n = s.length;
    if (n === 0) return this.buf.subarray(0, 0);
    const count = n >= k ? n - k + 1 : 1;
    const span = Math.min(k, n);
    const out = this.ensure(count);
    for (let i = 0; i < count; i++) {
      let x = k;
      for (let j = 0; j < span; j++) x = mixInto(x, s.charCodeAt(i + j));
      out[i] = fmix32(x ^ span);
    }
    return out.subarray(0, count);
  }
}

/**
 * MinHash with `numPerm` hash functions h_i(x) = (a_i * x + b_i) mod 2^32 over the 32-bit shingle
 * hashes (a_i odd, so each h_i is a permutation of the 32-bit space; a_i, b_i from a seeded
 * generator). The shingle hashes are already fully mixed (MurmurHash3 finalizer), and the minimum
 * is decided by the high bits, where multiply-add hashing is strong; one multiply and one add per
 * (shingle, permutation) keeps this, the hot loop of ingestion, cheap. sig[i] = min over shingles of
 * h_i; an empty text gets all 0xFFFFFFFF (`isEmptySignature`). Identical on every machine for the
 * same config.
 */
export class MinHasher {
  readonly config: MinHashConfig;
  private readonly mul: Uint32Array;
  private readonly add: Uint32Array;
  private readonly shingler: Shingler;

  constructor(config: Partial<MinHashConfig> = {}) {
    this.config = { ...DEFAULT_MINHASH_CONFIG, ...config };
    if (!Number.isInteger(this.config.numPerm) || this.config.numPerm < 1) {
      throw new RangeError("numPerm must be a positive integer");
    }
    const P = this.config.numPerm;
    const r = seededUint32s(this.config.seed, 2 * P);
    this.mul = new Uint32Array(P);
    this.add = new Uint32Array(P);
    for (let i = 0; i < P; i++) {
      this.mul[i] = r[2 * i]! | 1;
      this.add[i] = r[2 * i + 1]!;
    }
    this.shingler = new Shingler(this.config.shingle);
  }

  /** Signature of a normalized text; writes into `out` when given (avoids allocation in hot loops). */
  signature(normalized: string, out?: Uint32Array): Uint32Array {
    return this.signatureOfHashes(this.shingler.hashes(normalized), out);
  }

  signatureOfHashes(hashes: Uint32Array, out?: Uint32Array): Uint32Array {
    const P = this.config.numPerm;
    const sig = out ?? new Uint32Array(P);
    const mul = this.mul;
    const add = this.add;
    const n = hashes.length;
    // Permutation-major: the running minima stay in registers and the shingle hashes in L1;
    // four permutations per pass over the shingles (P is a multiple of 4 in practice).
    let i = 0;
    for (; i + 3 < P; i += 4) {
      const a0 = mul[i]!;
      const a1 = mul[i + 1]!;
      const a2 = mul[i + 2]!;
      const a3 = mul[i + 3]!;
      const b0 = add[i]!;
      const b1 = add[i + 1]!;
      const b2 = add[i + 2]!;
      const b3 = add[i + 3]!;
      let m0 = 0xffffffff;
      let m1 = 0xffffffff;
      let m2 = 0xffffffff;
      let m3 = 0xffffffff;
      for (let s = 0; s < n; s++) {
        const x = hashes[s]!;
        const h0 = (Math.imul(x, a0) + b0) >>> 0;
        const h1 = (Math.imul(x, a1) + b1) >>> 0;
        const h2 = (Math.imul(x, a2) + b2) >>> 0;
        const h3 = (Math.imul(x, a3) + b3) >>> 0;
        if (h0 < m0) m0 = h0;
        if (h1 < m1) m1 = h1;
        if (h2 < m2) m2 = h2;
        if (h3 < m3) m3 = h3;
      }
      sig[i] = m0;
      sig[i + 1] = m1;
      sig[i + 2] = m2;
      sig[i + 3] = m3;
    }
    for (; i < P; i++) {
      const a = mul[i]!;
      const b = add[i]!;
      let m = 0xffffffff;
      for (let s = 0; s < n; s++) {
        const h = (Math.imul(hashes[s]!, a) + b) >>> 0;
        if (h < m) m = h;
      }
      sig[i] = m;
    }
    return sig;
  }

  /** The set of distinct shingle hashes (for exact Jaccard in tests and offline checks). */
  shingleSet(normalized: string): Set<number> {
    return new Set(this.shingler.hashes(normalized));
  }
}

export function isEmptySignature(sig: Uint32Array): boolean {
  for (let i = 0; i < sig.length; i++) if (sig[i] !== 0xffffffff) return false;
  return true;
}

/** Fraction of equal positions: the unbiased MinHash estimate of Jaccard similarity. */
export function estimateJaccard(a: Uint32Array, b: Uint32Array): number {
  if (a.length !== b.length) throw new RangeError("signatures of different lengths");
  let eq = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) eq++;
  return eq / a.length;
}

export function exactJaccard(a: Set<number>, b: Set<number>): number {
  if (a.size === 0 && b.size === 0) return 1;
  let inter = 0;
  for (const x of a) if (b.has(x)) inter++;
  return inter / (a.size + b.size - inter);
}
