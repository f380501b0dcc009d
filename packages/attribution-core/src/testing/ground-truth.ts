/**
 * Ground-truth checks of the influence estimates on real data (shared by tests and bench):
 * - leave-one-out: predicted change of a test loss when a row is removed (g_tᵀH⁻¹g_i) vs
 *   the actual change after retraining without the row (warm-started, to convergence);
 * - mislabel detection: flip a seeded 10% of the labels, rank rows by self-influence, AUC.
 */
import { type FeatureOptions, hashFeatures, toCsr } from "../features.ts";
import {
  influenceScores,
  prepareInfluence,
  retrainWithout,
  rowLoss,
  selfInfluence,
  trainLogistic,
} from "../logistic.ts";
import { type LabelledText, mulberry32, shuffled } from "./spam-assassin.ts";

export function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i]!;
    mb += b[i]!;
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i]! - ma;
    const db = b[i]! - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return sab / Math.sqrt(saa * sbb);
}

/** ROC AUC of `scores` for `positives` (Mann-Whitney, ties count one half). */
export function rocAuc(scores: ArrayLike<number>, positives: ArrayLike<boolean>): number {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((x, y) => scores[x]! - scores[y]!);
  let rankSumPos = 0;
  let nPos = 0;
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && scores[idx[j + 1]!] === scores[idx[i]!]) j++;
    const avgRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      if (positives[idx[k]!]) {
        rankSumPos += avgRank;
        nPos++;
      }
    }
    i = j + 1;
  }
  const nNeg = idx.length - nPos;
  return (rankSumPos - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

export interface LooOptions {
  train: readonly LabelledText[];
  test: readonly LabelledText[];
  features: FeatureOptions;
  lambda: number;
  /** Rows sampled (seeded) for retraining. */
  sampleRows: number;
  /** Test points whose loss is tracked (the first ones of `test`). */
  testPoints: number;
  seed: number;
  onProgress?: (done: number, total: number) => void;
}

export interface LooResult {
  /** Pearson r of predicted vs actual loss change, per test point. */
  pearsonPerTest: number[];
  /** Pearson r over all (test point, row) pairs pooled. */
  pearsonPooled: number;
  predicted: number[];
  actual: number[];
  trainIterations: number;
}

export function looExperiment(o: LooOptions): LooResult {
  const xTrain = toCsr(
    o.train.map((r) => hashFeatures(r.text, o.features)),
    o.features.dim,
  );
  const y = Int32Array.from(o.train.map((r) => r.label));
  const trained = trainLogistic(xTrain, y, { classes: 2, lambda: o.lambda, tolerance: 1e-10 });
  const inf = prepareInfluence(trained.model, xTrain, y);
  const tests = o.test
    .slice(0, o.testPoints)
    .map((t) => ({ x: hashFeatures(t.text, o.features), y: t.label }));
  const scores = tests.map((t) => influenceScores(inf, t.x, t.y));
  const base = tests.map((t) => rowLoss(trained.model, t.x, t.y));
  const rows = shuffled(
    Array.from({ length: xTrain.rows }, (_, i) => i),
    o.seed,
  ).slice(0, o.sampleRows);
  const predicted: number[][] = tests.map(() => []);
  const actual: number[][] = tests.map(() => []);
  rows.forEach((row, n) => {
    const loo = retrainWithout(inf, y, row);
    tests.forEach((t, k) => {
      predicted[k]!.push(scores[k]![row]!);
      actual[k]!.push(rowLoss(loo, t.x, t.y) - base[k]!);
    });
    o.onProgress?.(n + 1, rows.length);
  });
  return {
    pearsonPerTest: tests.map((_, k) => pearson(predicted[k]!, actual[k]!)),
    pearsonPooled: pearson(predicted.flat(), actual.flat()),
    predicted: predicted.flat(),
    actual: actual.flat(),
    trainIterations: trained.iterations,
  };
}

export interface MislabelOptions {
  data: readonly LabelledText[];
  features: FeatureOptions;
  lambda: number;
  flipFraction: number;
  seed: number;
}

export interface MislabelResult {
  auc: number;
  flipped: number;
  /** Fraction of flipped rows among the top-`flipped` self-influence ranks. */
  precisionAtFlipped: number;
}

export function mislabelExperiment(o: MislabelOptions): MislabelResult {
  const x = toCsr(
    o.data.map((r) => hashFeatures(r.text, o.features)),
    o.features.dim,
  );
  const rnd = mulberry32(o.seed);
  const flippedMask = o.data.map(() => rnd() < o.flipFraction);
  const y = Int32Array.from(o.data.map((r, i) => (flippedMask[i] ? 1 - r.label : r.label)));
  const trained = trainLogistic(x, y, { classes: 2, lambda: o.lambda });
  const self = selfInfluence(prepareInfluence(trained.model, x, y));
  const flipped = flippedMask.filter(Boolean).length;
  const top = Array.from(self, (_, i) => i)
    .sort((a, b) => self[b]! - self[a]! || a - b)
    .slice(0, flipped);
  return {
    auc: rocAuc(self, flippedMask),
    flipped,
    precisionAtFlipped: top.filter((i) => flippedMask[i]).length / Math.max(1, flipped),
  };
}
