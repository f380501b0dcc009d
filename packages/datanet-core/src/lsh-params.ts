/**
 * LSH banding: a signature of `numPerm` values is cut into `bands` bands of `rows` values; two rows
 * become candidates when any band is identical. For Jaccard s the probability is
 * P(s) = 1 - (1 - s^rows)^bands, an S-curve whose steep part sits near (1/bands)^(1/rows).
 */
export interface BandConfig {
  bands: number;
  rows: number;
}

export function candidateProbability(s: number, bands: number, rows: number): number {
  return 1 - (1 - s ** rows) ** bands;
}

function integrate(f: (x: number) => number, a: number, b: number, steps = 256): number {
  if (b <= a) return 0;
  // Simpson's rule: plenty for these smooth curves, and deterministic.
  const h = (b - a) / steps;
  let sum = f(a) + f(b);
  for (let i = 1; i < steps; i++) sum += (i % 2 === 1 ? 4 : 2) * f(a + i * h);
  return (sum * h) / 3;
}

export interface ChooseBandsOptions {
  /** Weight of the false-positive area (pairs below the threshold that become candidates). */
  falsePositiveWeight?: number;
  /** Weight of the false-negative area (pairs above the threshold that are missed). */
  falseNegativeWeight?: number;
  /** Upper bound on bands: each band costs 8-12 bytes per indexed row. */
  maxBands?: number;
}

/**
 * Picks bands x rows (bands * rows <= numPerm) minimizing the weighted false-positive area below
 * the threshold plus the false-negative area above it (the standard LSH parameter search).
 * Candidates are verified afterwards, so false positives only cost time while false negatives are
 * lost duplicates: the default weights favour recall.
 */
export function chooseBands(
  threshold: number,
  numPerm: number,
  options: ChooseBandsOptions = {},
): BandConfig {
  if (!(threshold > 0 && threshold < 1)) throw new RangeError("threshold must be in (0, 1)");
  const fpW = options.falsePositiveWeight ?? 0.25;
  const fnW = options.falseNegativeWeight ?? 0.75;
  const maxBands = Math.min(options.maxBands ?? 32, numPerm);
  // The search takes ~10-20 ms and validators are created per job: remember the answers.
  const cacheKey = `${threshold}|${numPerm}|${fpW}|${fnW}|${maxBands}`;
  const cached = bandCache.get(cacheKey);
  if (cached !== undefined) return { ...cached };
  const best = searchBands(threshold, numPerm, fpW, fnW, maxBands);
  if (bandCache.size < 1_000) bandCache.set(cacheKey, best);
  return { ...best };
}

const bandCache = new Map<string, BandConfig>();

function searchBands(
  threshold: number,
  numPerm: number,
  fpW: number,
  fnW: number,
  maxBands: number,
): BandConfig {
  let best: BandConfig = { bands: 1, rows: numPerm };
  let bestErr = Number.POSITIVE_INFINITY;
  for (let b = 1; b <= maxBands; b++) {
    const maxR = Math.floor(numPerm / b);
    for (let r = 1; r <= maxR; r++) {
      const fp = integrate((s) => candidateProbability(s, b, r), 0, threshold);
      const fn = integrate((s) => 1 - candidateProbability(s, b, r), threshold, 1);
      const err = fpW * fp + fnW * fn;
      if (err < bestErr - 1e-12) {
        bestErr = err;
        best = { bands: b, rows: r };
      }
    }
  }
  return best;
}
