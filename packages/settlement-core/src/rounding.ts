/** Integer helpers for money: bigint only, no floating point anywhere. */

/** ceil(a / b) for a >= 0, b > 0. */
export function ceilDiv(a: bigint, b: bigint): bigint {
  if (b <= 0n) throw new RangeError("ceilDiv: divisor must be positive");
  if (a < 0n) throw new RangeError("ceilDiv: dividend must be >= 0");
  return (a + b - 1n) / b;
}

export interface WeightedKey<K> {
  key: K;
  weight: bigint;
}

/**
 * Splits `total` (>= 0) in proportion to `weights` with the largest-remainder (Hamilton)
 * method: each part is floor(total * w / W), then the units left over go one each to the
 * parts with the largest remainders. Ties on the remainder go to the key that comes first
 * in `tieBreak` order (the caller's list order when no comparator is given), so the result
 * is identical on every machine. Parts always sum to `total` exactly; a zero weight never
 * receives anything. Duplicate keys are not merged: callers pass distinct keys.
 */
export function largestRemainder<K>(
  total: bigint,
  weights: readonly WeightedKey<K>[],
  tieBreak?: (a: K, b: K) => number,
): Map<K, bigint> {
  if (total < 0n) throw new RangeError("largestRemainder: total must be >= 0");
  let sum = 0n;
  for (const w of weights) {
    if (w.weight < 0n) throw new RangeError("largestRemainder: weights must be >= 0");
    sum += w.weight;
  }
  const out = new Map<K, bigint>();
  if (sum === 0n) {
    if (total !== 0n) throw new RangeError("largestRemainder: nothing to split a non-zero total over");
    for (const w of weights) out.set(w.key, 0n);
    return out;
  }
  let assigned = 0n;
  const rems: { index: number; key: K; rem: bigint }[] = [];
  weights.forEach((w, index) => {
    const scaled = total * w.weight;
    const part = scaled / sum;
    out.set(w.key, part);
    assigned += part;
    rems.push({ index, key: w.key, rem: scaled % sum });
  });
  let left = total - assigned; // < number of non-zero remainders
  rems.sort((a, b) => {
    if (a.rem !== b.rem) return a.rem > b.rem ? -1 : 1;
    return tieBreak ? tieBreak(a.key, b.key) : a.index - b.index;
  });
  for (const r of rems) {
    if (left === 0n) break;
    out.set(r.key, (out.get(r.key) ?? 0n) + 1n);
    left -= 1n;
  }
  return out;
}

/** Byte-wise ascending order of lower-case strings (addresses): locale-independent. */
export function compareAscii(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
