/**
 * Ground-truth checks of the influence estimates on real data (shared by tests and bench):
 * - leave-one-out: predicted change of a test loss when a row is removed (g_tᵀH⁻¹g_i) vs
 *   the actual change after retraining without the row (warm-started, to convergence);
 * - mislabel detection: flip a seeded 10% of the labels, rank rows by self-influence, AUC;
 * - top rows: for each test point's most influential rows, the ratio of each estimator
 *   (first-order g_tᵀH⁻¹g_i, one-Newton-step leave-one-out) to the retrained effect.
 */
import { type FeatureOptions, hashFeatures, toCsr } from "../features.ts";
import {
  argmax,
  influenceScores,
  looInfluenceScores,
  predictProba,
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

/** Hash, train to max|∇F| <= 1e-10 and prepare influence on labelled texts (binary). */
function fitTexts(train: readonly LabelledText[], features: FeatureOptions, lambda: number) {
  const x = toCsr(
    train.map((r) => hashFeatures(r.text, features)),
    features.dim,
  );
  const y = Int32Array.from(train.map((r) => r.label));
  const trained = trainLogistic(x, y, { classes: 2, lambda, tolerance: 1e-10 });
  return { x, y, trained, inf: prepareInfluence(trained.model, x, y) };
}

export function looExperiment(o: LooOptions): LooResult {
  const { x: xTrain, y, trained, inf } = fitTexts(o.train, o.features, o.lambda);
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

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface TopRowsLooOptions {
  train: readonly LabelledText[];
  test: readonly LabelledText[];
  features: FeatureOptions;
  lambda: number;
  /** Test points (the first ones of `test`); the loss explained is the predicted class's. */
  testPoints: number;
  /** Rows per test point compared with retraining. Default 10. */
  topK?: number;
  /**
   * Candidate rows retrained per test point: the `candidates` largest |score| of each
   * estimator (union). The top-k by retrained effect is then taken among them. Default 30.
   */
  candidates?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface EstimatorRatios {
  /** Median over all (test point, top row) pairs of predicted / retrained effect. */
  median: number;
  p10: number;
  p90: number;
  ratios: number[];
}

export interface TopRowsLooResult {
  firstOrder: EstimatorRatios;
  newtonLoo: EstimatorRatios;
  /** Distinct rows retrained (one exact leave-one-out optimum each). */
  retrains: number;
  testPoints: number;
  topK: number;
  trainRows: number;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function ratios(values: number[]): EstimatorRatios {
  const s = [...values].sort((a, b) => a - b);
  return { median: median(values), p10: quantile(s, 0.1), p90: quantile(s, 0.9), ratios: values };
}

/**
 * For each test point, its `topK` most influential training rows by the *retrained*
 * leave-one-out effect on the loss of the predicted class (so the selection favours neither
 * estimator), and each estimator's ratio to that effect. Rows whose removal changes the loss by
 * less than 1e-9 of the largest effect are skipped (a ratio of noise).
 */
export function topRowsLooExperiment(o: TopRowsLooOptions): TopRowsLooResult {
  const topK = o.topK ?? 10;
  const perEstimator = o.candidates ?? 30;
  const { x, y, trained, inf } = fitTexts(o.train, o.features, o.lambda);
  const tests = o.test.slice(0, o.testPoints).map((t) => {
    const v = hashFeatures(t.text, o.features);
    return { x: v, y: argmax(predictProba(trained.model, v)) };
  });
  const first = tests.map((t) => influenceScores(inf, t.x, t.y));
  const newton = tests.map((t) => looInfluenceScores(inf, t.x, t.y));
  const base = tests.map((t) => rowLoss(trained.model, t.x, t.y));
  const byAbs = (s: Float64Array) =>
    Array.from(s, (_v, i) => i)
      .sort((a, b) => Math.abs(s[b]!) - Math.abs(s[a]!) || a - b)
      .slice(0, perEstimator);
  const candidates = [...new Set(tests.flatMap((_t, k) => [...byAbs(first[k]!), ...byAbs(newton[k]!)]))].sort(
    (a, b) => a - b,
  );
  const actual = new Map<number, number[]>();
  candidates.forEach((row, n) => {
    const loo = retrainWithout(inf, y, row);
    actual.set(
      row,
      tests.map((t, k) => rowLoss(loo, t.x, t.y) - base[k]!),
    );
    o.onProgress?.(n + 1, candidates.length);
  });
  const fo: number[] = [];
  const nl: number[] = [];
  tests.forEach((_t, k) => {
    const eff = (i: number) => actual.get(i)![k]!;
    const top = [...candidates].sort((a, b) => Math.abs(eff(b)) - Math.abs(eff(a)) || a - b).slice(0, topK);
    const floor = Math.abs(eff(top[0]!)) * 1e-9;
    for (const i of top) {
      if (!(Math.abs(eff(i)) > floor)) continue;
      fo.push(first[k]![i]! / eff(i));
      nl.push(newton[k]![i]! / eff(i));
    }
  });
  return {
    firstOrder: ratios(fo),
    newtonLoo: ratios(nl),
    retrains: candidates.length,
    testPoints: tests.length,
    topK,
    trainRows: x.rows,
  };
}
