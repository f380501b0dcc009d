import { fmix32, mixInto } from "./hash32.ts";

/**
 * The dedupe index of one datanet: exact-duplicate lookup by SHA-256 of normalized text, and
 * MinHash-LSH candidate lookup, over every accepted row. Everything lives in flat typed arrays
 * indexed by an internal ordinal (0, 1, 2, ... in insertion order):
 *
 *   ids       Float64Array[n]        caller's row id (any integer up to 2^53, e.g. a bigserial)
 *   sha       Uint32Array[4n]        first 128 bits of the SHA-256 (collision-free in practice;
 *                                    the database keeps the full hash under a unique index)
 *   sig8      Uint8Array[numPerm*n]  low 8 bits of each MinHash value ("b-bit MinHash", b = 8)
 *                                    used to estimate similarity of candidates
 *   chain     Int32Array[2*bands*n]  per band entry e = ord*bands+band: [band key, next entry],
 *                                    interleaved so walking a chain costs one cache miss per entry
 *   heads     Int32Array[2^k]        chain heads, load <= 2 entries per head (measured: a lower
 *                                    load costs memory and does not make queries faster)
 *   exact     Int32Array[2^k]        open-addressing table (linear probing) of ordinals by SHA
 *
 * About 8 + 16 + numPerm + bands*(8 + 2..4) + 8..16 bytes per row: for 128 perms and 26 bands
 * (the defaults) ~430 bytes, i.e. ~430 MB for 1M rows, with no per-row objects for the GC to walk.
 *
 * Chains are always kept in descending entry order (insertion pushes to the front and rehashing
 * walks entries in ascending order), so the candidate order - and so every outcome - depends only
 * on the rows and their insertion order, never on table sizes or on how the index was loaded.
 */
export interface IndexParams {
  numPerm: number;
  bands: number;
  rows: number;
}

/** Estimated similarity of a candidate plus who it is. */
export interface Candidate {
  ord: number;
  id: number;
  similarity: number;
}

const MAGIC = "OLDNIDX1";
const EMPTY = -1;
const B_BIT = 8;
const B_BIT_COLLISION = 1 / (1 << B_BIT);

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function grow<T extends Float64Array | Uint32Array | Uint8Array | Int32Array>(arr: T, length: number): T {
  const out = new (arr.constructor as new (n: number) => T)(length);
  out.set(arr);
  return out;
}

/** Band key: hash of the `rows` values of one band, salted by the band index. */
export function computeBandKeys(sig: Uint32Array, params: IndexParams, out?: Uint32Array): Uint32Array {
  const keys = out ?? new Uint32Array(params.bands);
  for (let b = 0; b < params.bands; b++) {
    let h = Math.imul(b + 1, 0x9e3779b1);
    const base = b * params.rows;
    for (let j = 0; j < params.rows; j++) h = mixInto(h, sig[base + j]!);
    keys[b] = fmix32(h ^ params.rows);
  }
  return keys;
}

function shaWord(sha: Uint8Array, w: number): number {
  const o = w * 4;
  return (sha[o]! | (sha[o + 1]! << 8) | (sha[o + 2]! << 16) | (sha[o + 3]! << 24)) >>> 0;
}

export class DatanetIndex {
  readonly params: IndexParams;
  private count = 0;
  private capacity: number;
  private ids: Float64Array;
  private sha: Uint32Array;
  private sig8: Uint8Array;
  private chain: Int32Array;
  private heads: Int32Array;
  private exact: Int32Array;

  constructor(params: IndexParams, initialCapacity = 1024) {
    if (params.bands * params.rows > params.numPerm) throw new RangeError("bands * rows must be <= numPerm");
    if (params.bands < 1 || params.rows < 1) throw new RangeError("bands and rows must be >= 1");
    this.params = { numPerm: params.numPerm, bands: params.bands, rows: params.rows };
    this.capacity = Math.max(16, initialCapacity);
    this.ids = new Float64Array(this.capacity);
    this.sha = new Uint32Array(this.capacity * 4);
    this.sig8 = new Uint8Array(this.capacity * params.numPerm);
    this.chain = new Int32Array(this.capacity * params.bands * 2);
    this.heads = new Int32Array(nextPow2(Math.ceil((this.capacity * params.bands) / 2))).fill(EMPTY);
    this.exact = new Int32Array(nextPow2(this.capacity * 2)).fill(EMPTY);
  }

  get size(): number {
    return this.count;
  }

  /** Bytes held by the typed arrays (what the index costs in memory). */
  get memoryBytes(): number {
    return (
      this.ids.byteLength +
      this.sha.byteLength +
      this.sig8.byteLength +
      this.chain.byteLength +
      this.heads.byteLength +
      this.exact.byteLength
    );
  }

  idOf(ord: number): number {
    return this.ids[ord]!;
  }

  /**
   * Pre-sizes for `rows` rows. Growing copies the per-row arrays and may rehash the band table
   * (a few seconds at 1M rows), so a service should reserve the expected size plus headroom once
   * when it loads a datanet. Without a reservation the index grows by 1.5x when full.
   */
  reserve(rows: number): void {
    if (rows <= this.capacity) return;
    const cap = Math.ceil(rows / 1024) * 1024;
    const { numPerm, bands } = this.params;
    this.ids = grow(this.ids, cap);
    this.sha = grow(this.sha, cap * 4);
    this.sig8 = grow(this.sig8, cap * numPerm);
    this.chain = grow(this.chain, cap * bands * 2);
    this.capacity = cap;
    const wantHeads = nextPow2(Math.ceil((cap * bands) / 2));
    if (wantHeads > this.heads.length) this.rebuildHeads(wantHeads);
    const wantExact = nextPow2(cap * 2);
    if (wantExact > this.exact.length) this.rebuildExact(wantExact);
  }

  /**
   * Adds one row. `keys` are its band keys (computeBandKeys) when the caller already has them.
   * Returns the row's ordinal.
   */
  add(id: number, sha256: Uint8Array, sig: Uint32Array, keys?: Uint32Array): number {
    const { numPerm, bands } = this.params;
    if (sig.length !== numPerm) throw new RangeError(`signature length ${sig.length} != numPerm ${numPerm}`);
    if (sha256.length < 16) throw new RangeError("sha256 must have at least 16 bytes");
    if (!Number.isSafeInteger(id)) throw new RangeError(`row id ${id} is not a safe integer`);
    if (this.count === this.capacity) this.reserve(Math.ceil(this.capacity * 1.5));
    const ord = this.count++;
    this.ids[ord] = id;
    for (let w = 0; w < 4; w++) this.sha[ord * 4 + w] = shaWord(sha256, w);
    const sbase = ord * numPerm;
    for (let i = 0; i < numPerm; i++) this.sig8[sbase + i] = sig[i]! & 0xff;
    const k = keys ?? computeBandKeys(sig, this.params);
    const mask = this.heads.length - 1;
    for (let b = 0; b < bands; b++) {
      const e = ord * bands + b;
      const key = k[b]! | 0;
      const slot = fmix32(key ^ b) & mask;
      this.chain[2 * e] = key;
      this.chain[2 * e + 1] = this.heads[slot]!;
      this.heads[slot] = e;
    }
    this.insertExact(ord);
    return ord;
  }

  /** Ordinal of an indexed row with the same content hash, or -1. */
  findExact(sha256: Uint8Array): number {
    const w0 = shaWord(sha256, 0);
    const w1 = shaWord(sha256, 1);
    const w2 = shaWord(sha256, 2);
    const w3 = shaWord(sha256, 3);
    const mask = this.exact.length - 1;
    for (let slot = w0 & mask; ; slot = (slot + 1) & mask) {
      const ord = this.exact[slot]!;
      if (ord === EMPTY) return -1;
      const o = ord * 4;
      if (this.sha[o] === w0 && this.sha[o + 1] === w1 && this.sha[o + 2] === w2 && this.sha[o + 3] === w3)
        return ord;
    }
  }

  /**
   * Ordinals sharing at least one band with the query (each once, in a deterministic order).
   * At most `maxPerBucket` entries are read per band (the most recent ones), which bounds the
   * cost of a query even when thousands of rows share a band (boilerplate).
   */
  candidates(keys: Uint32Array, maxPerBucket = 256): number[] {
    const { bands } = this.params;
    const mask = this.heads.length - 1;
    const chain = this.chain;
    const out: number[] = [];
    for (let b = 0; b < bands; b++) {
      const key = keys[b]! | 0;
      let seen = 0;
      for (
        let e = this.heads[fmix32(key ^ b) & mask]!;
        e !== EMPTY && seen < maxPerBucket;
        e = chain[2 * e + 1]!
      ) {
        if (chain[2 * e] === key && e % bands === b) {
          out.push((e - b) / bands);
          seen++;
        }
      }
    }
    if (out.length > 1) {
      out.sort((x, y) => x - y);
      let w = 1;
      for (let i = 1; i < out.length; i++) if (out[i] !== out[w - 1]) out[w++] = out[i]!;
      out.length = w;
    }
    return out;
  }

  /**
   * Estimated Jaccard similarity between a full signature and an indexed row, from the stored low
   * 8 bits: matches happen with probability J + (1 - J)/256, corrected for here.
   */
  similarity(ord: number, sig: Uint32Array): number {
    const P = this.params.numPerm;
    const base = ord * P;
    let eq = 0;
    for (let i = 0; i < P; i++) if (this.sig8[base + i] === (sig[i]! & 0xff)) eq++;
    const raw = eq / P;
    const j = (raw - B_BIT_COLLISION) / (1 - B_BIT_COLLISION);
    return j < 0 ? 0 : Math.min(j, 1);
  }

  /**
   * The most similar indexed row among the LSH candidates whose estimated similarity is at least
   * `threshold`, or undefined. Ties go to the earliest row (lowest ordinal): the original.
   */
  bestMatch(
    sig: Uint32Array,
    keys: Uint32Array,
    threshold: number,
    maxPerBucket?: number,
  ): Candidate | undefined {
    let best: Candidate | undefined;
    for (const ord of this.candidates(keys, maxPerBucket)) {
      const s = this.similarity(ord, sig);
      if (s >= threshold && (best === undefined || s > best.similarity)) {
        best = { ord, id: this.ids[ord]!, similarity: s };
      }
    }
    return best;
  }

  private insertExact(ord: number): void {
    if ((this.count + 1) * 2 > this.exact.length) {
      this.rebuildExact(this.exact.length * 2);
      return; // the rebuild inserted every row up to `count`, this one included
    }
    const mask = this.exact.length - 1;
    let slot = this.sha[ord * 4]! & mask;
    while (this.exact[slot] !== EMPTY) slot = (slot + 1) & mask;
    this.exact[slot] = ord;
  }

  private rebuildExact(size: number): void {
    this.exact = new Int32Array(size).fill(EMPTY);
    const mask = size - 1;
    for (let ord = 0; ord < this.count; ord++) {
      let slot = this.sha[ord * 4]! & mask;
      while (this.exact[slot] !== EMPTY) slot = (slot + 1) & mask;
      this.exact[slot] = ord;
    }
  }

  private rebuildHeads(size: number): void {
    const { bands } = this.params;
    this.heads = new Int32Array(size).fill(EMPTY);
    const mask = size - 1;
    const entries = this.count * bands;
    for (let e = 0; e < entries; e++) {
      const slot = fmix32(this.chain[2 * e]! ^ (e % bands)) & mask;
      this.chain[2 * e + 1] = this.heads[slot]!;
      this.heads[slot] = e;
    }
  }

  /**
   * Binary snapshot: "OLDNIDX1", u32 header length, JSON header {version, numPerm, bands, rows,
   * count}, then ids (f64), sha (u32 x4), sig8 (u8), band keys (u32) for `count` rows, all
   * little-endian. The hash tables are rebuilt on load, so the format does not depend on them.
   */
  serialize(): Buffer {
    const { numPerm, bands, rows } = this.params;
    const n = this.count;
    const header = Buffer.from(JSON.stringify({ version: 1, numPerm, bands, rows, count: n }), "utf8");
    const keys = new Int32Array(n * bands);
    for (let e = 0; e < keys.length; e++) keys[e] = this.chain[2 * e]!;
    const parts = [
      Buffer.from(MAGIC, "ascii"),
      Buffer.alloc(4),
      header,
      Buffer.from(this.ids.buffer, this.ids.byteOffset, n * 8),
      Buffer.from(this.sha.buffer, this.sha.byteOffset, n * 16),
      Buffer.from(this.sig8.buffer, this.sig8.byteOffset, n * numPerm),
      Buffer.from(keys.buffer, keys.byteOffset, n * bands * 4),
    ];
    parts[1]!.writeUInt32LE(header.length, 0);
    return Buffer.concat(parts);
  }

  static deserialize(buf: Uint8Array): DatanetIndex {
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (b.length < 12 || b.toString("ascii", 0, 8) !== MAGIC) throw new Error("not a datanet index snapshot");
    const hlen = b.readUInt32LE(8);
    const header = JSON.parse(b.toString("utf8", 12, 12 + hlen)) as IndexParams & {
      version: number;
      count: number;
    };
    if (header.version !== 1) throw new Error(`unsupported index snapshot version ${header.version}`);
    const { numPerm, bands, rows, count: n } = header;
    const expected = 12 + hlen + n * (8 + 16 + numPerm + bands * 4);
    if (b.length !== expected) throw new Error(`index snapshot has ${b.length} bytes, expected ${expected}`);
    const idx = new DatanetIndex({ numPerm, bands, rows }, 16);
    idx.reserve(n);
    let off = 12 + hlen;
    // Copy through Uint8Array views: the source buffer is not necessarily aligned for f64/u32.
    const copy = (target: Float64Array | Uint32Array | Int32Array | Uint8Array, bytes: number) => {
      new Uint8Array(target.buffer, target.byteOffset, bytes).set(b.subarray(off, off + bytes));
      off += bytes;
    };
    copy(idx.ids, n * 8);
    copy(idx.sha, n * 16);
    copy(idx.sig8, n * numPerm);
    const keys = new Int32Array(n * bands);
    copy(keys, n * bands * 4);
    for (let e = 0; e < keys.length; e++) idx.chain[2 * e] = keys[e]!;
    idx.count = n;
    idx.rebuildHeads(idx.heads.length);
    idx.rebuildExact(idx.exact.length);
    return idx;
  }

  /** Rebuilds an index from stored rows (id, SHA-256, full signature), e.g. read from Postgres. */
  static fromRecords(
    params: IndexParams,
    records: Iterable<{ id: number; sha256: Uint8Array; signature: Uint32Array }>,
    expectedRows = 1024,
  ): DatanetIndex {
    const idx = new DatanetIndex(params, expectedRows);
    const keys = new Uint32Array(params.bands);
    for (const r of records) idx.add(r.id, r.sha256, r.signature, computeBandKeys(r.signature, params, keys));
    return idx;
  }
}

/** A signature as bytes for storage (bytea): numPerm little-endian u32 values. */
export function signatureToBytes(sig: Uint32Array): Buffer {
  const out = Buffer.alloc(sig.length * 4);
  for (let i = 0; i < sig.length; i++) out.writeUInt32LE(sig[i]!, i * 4);
  return out;
}

export function signatureFromBytes(bytes: Uint8Array): Uint32Array {
  if (bytes.length % 4 !== 0) throw new RangeError("signature bytes must be a multiple of 4");
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const sig = new Uint32Array(bytes.length / 4);
  for (let i = 0; i < sig.length; i++) sig[i] = b.readUInt32LE(i * 4);
  return sig;
}
