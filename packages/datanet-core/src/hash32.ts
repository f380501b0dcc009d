/** 32-bit hashing primitives (Math.imul based, no allocation) shared by shingling, MinHash and LSH. */

/** MurmurHash3's finalizer: a bijection on 32-bit integers with full avalanche. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3's block mixing step: folds one 32-bit word into a running hash. */
export function mixInto(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** splitmix32-style generator: deterministic seeds for permutations from one 32-bit seed. */
export function seededUint32s(seed: number, count: number): Uint32Array {
  const out = new Uint32Array(count);
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state = (state + 0x9e3779b9) >>> 0;
    out[i] = fmix32(state ^ Math.imul(i + 1, 0x632be5ab));
  }
  return out;
}
