/**
 * Integer normalization of non-negative scores to parts per million that sum to exactly
 * 1,000,000 (largest-remainder / Hamilton method). Pure bigint arithmetic: identical on
 * every machine.
 */

export const PPM_TOTAL = 1_000_000;

export interface ContributorScore {
  contributorId: string;
  /** Non-negative fixed-point score (any scale: only ratios matter). */
  score: bigint;
}

export interface ContributorWeight {
  contributorId: string;
  /** Share in parts per million; all weights of one result sum to exactly 1,000,000. */
  ppm: number;
}

function compareIds(a: string, b: string): number {
  // Code-unit order, not locale order: locale collation differs between machines.
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Largest-remainder rounding of `scores` to ppm. Entries with a zero score, and entries whose
 * rounded weight is zero, are dropped. Remainder ties go to the smaller contributor id.
 * Duplicate ids are summed first. Returns [] when the total score is zero: the caller decides
 * what an unattributed result pays (see README, "When nothing is attributed").
 * The result is sorted by contributor id.
 */
export function normalizeToPpm(scores: readonly ContributorScore[]): ContributorWeight[] {
  const merged = new Map<string, bigint>();
  for (const { contributorId, score } of scores) {
    if (score < 0n) throw new RangeError(`negative score for ${contributorId}`);
    merged.set(contributorId, (merged.get(contributorId) ?? 0n) + score);
  }
  const entries = [...merged].filter(([, s]) => s > 0n).sort((a, b) => compareIds(a[0], b[0]));
  let total = 0n;
  for (const [, s] of entries) total += s;
  if (total === 0n) return [];
  const ppm = BigInt(PPM_TOTAL);
  const floors = entries.map(([id, s]) => ({ id, base: (s * ppm) / total, rem: (s * ppm) % total }));
  let assigned = 0n;
  for (const f of floors) assigned += f.base;
  let left = Number(ppm - assigned); // < entries.length
  const order = floors
    .map((_f, i) => i)
    .sort((a, b) => {
      const ra = floors[a]!.rem;
      const rb = floors[b]!.rem;
      if (ra !== rb) return ra > rb ? -1 : 1;
      return compareIds(floors[a]!.id, floors[b]!.id);
    });
  const weights = floors.map((f) => Number(f.base));
  for (const i of order) {
    if (left === 0) break;
    weights[i]!++;
    left--;
  }
  const out: ContributorWeight[] = [];
  floors.forEach((f, i) => {
    if (weights[i]! > 0) out.push({ contributorId: f.id, ppm: weights[i]! });
  });
  return out;
}
