/**
 * Turning influence scores into contributor weights and slashing evidence.
 */
import type { SparseVector } from "./features.ts";
import {
  argmax,
  type InfluenceModel,
  influenceScores,
  looInfluenceScores,
  predictProba,
  quantize,
  selfInfluence,
} from "./logistic.ts";
import { type ContributorWeight, normalizeToPpm } from "./ppm.ts";

/** Identity of training row i (same order as the rows of the training matrix). */
export interface TrainingRowRef {
  rowId: string;
  contributionId: string;
  contributorId: string;
}

export interface InfluentialRow {
  rowId: string;
  contributorId: string;
  /** Quantized influence (integer, 1e-12 loss units) as a decimal string. */
  influence: string;
}

/**
 * How a row's influence is estimated. `newton-loo` (default, what validators sign): the
 * test-loss change if the row were removed and the model retrained, approximated by one Newton
 * step (within 5% of retraining for the rows paid most, bench/RESULTS.md). `first-order`: the
 * classic g_tᵀH⁻¹g_i, which under-states high-leverage rows; kept for comparison.
 */
export type InfluenceEstimator = "newton-loo" | "first-order";

export interface InfluenceAttribution {
  method: "influence";
  estimator: InfluenceEstimator;
  /** Class whose loss is explained: the model's prediction unless a label was given. */
  label: number;
  probabilities: number[];
  /** Rows with the largest positive / negative influence (ties by row order). */
  topHelpful: InfluentialRow[];
  topHarmful: InfluentialRow[];
  /** ppm weights over contributors of positively influential rows; sum exactly 1e6 or []. */
  weights: ContributorWeight[];
  /** Sum of positive quantized influence (decimal string). */
  totalPositive: string;
  /** Set when no row has positive influence: weights is [] and nothing is paid by weight. */
  unattributed?: "no-positive-influence";
}

export interface AttributeInfluenceOptions {
  /** Explain this class instead of the predicted one. */
  label?: number;
  /** Number of evidence rows listed each side. Default 10. */
  topK?: number;
  /** Default "newton-loo". */
  estimator?: InfluenceEstimator;
}

function top(
  q: readonly bigint[],
  rows: readonly TrainingRowRef[],
  k: number,
  positive: boolean,
): InfluentialRow[] {
  const order = q
    .map((_v, i) => i)
    .filter((i) => (positive ? q[i]! > 0n : q[i]! < 0n))
    .sort((a, b) => {
      const d = positive ? q[b]! - q[a]! : q[a]! - q[b]!;
      return d !== 0n ? (d > 0n ? 1 : -1) : a - b;
    })
    .slice(0, k);
  return order.map((i) => ({
    rowId: rows[i]!.rowId,
    contributorId: rows[i]!.contributorId,
    influence: q[i]!.toString(),
  }));
}

/**
 * Attribute one prediction: influence of every training row on the loss of the predicted
 * class at `testRow` (by default its leave-one-out effect, see `InfluenceEstimator`); rows with
 * positive (helpful) influence earn in proportion to it,
 * aggregated per contributor. If no row helps, the result is explicitly unattributed.
 */
export function attributeInfluence(
  inf: InfluenceModel,
  rows: readonly TrainingRowRef[],
  testRow: SparseVector,
  options: AttributeInfluenceOptions = {},
): InfluenceAttribution {
  if (rows.length !== inf.x.rows) throw new RangeError("rows must match the training matrix");
  const p = predictProba(inf.model, testRow);
  const label = options.label ?? argmax(p);
  const estimator = options.estimator ?? "newton-loo";
  const scores =
    estimator === "newton-loo"
      ? looInfluenceScores(inf, testRow, label)
      : influenceScores(inf, testRow, label);
  const q = quantize(scores);
  return {
    method: "influence",
    estimator,
    label,
    probabilities: Array.from(p),
    ...attributeQuantized(q, rows, options.topK ?? 10),
  };
}

/** The part of an influence attribution that only depends on the rows' quantized scores. */
export interface QuantizedAttribution {
  topHelpful: InfluentialRow[];
  topHarmful: InfluentialRow[];
  weights: ContributorWeight[];
  totalPositive: string;
  unattributed?: "no-positive-influence";
}

/**
 * Rows with positive quantized influence earn in proportion to it, aggregated per contributor
 * (integer sums: independent of order) and normalized to ppm; the top rows each side as evidence.
 * Shared by the classifier path and LoRA influence (`attributeLoraInfluence`).
 */
export function attributeQuantized(
  q: readonly bigint[],
  rows: readonly TrainingRowRef[],
  topK: number,
): QuantizedAttribution {
  if (q.length !== rows.length) throw new RangeError("one score per row");
  const perContributor = new Map<string, bigint>();
  let total = 0n;
  q.forEach((v, i) => {
    if (v > 0n) {
      const c = rows[i]!.contributorId;
      perContributor.set(c, (perContributor.get(c) ?? 0n) + v);
      total += v;
    }
  });
  const weights = normalizeToPpm(
    [...perContributor].map(([contributorId, score]) => ({ contributorId, score })),
  );
  return {
    topHelpful: top(q, rows, topK, true),
    topHarmful: top(q, rows, topK, false),
    weights,
    totalPositive: total.toString(),
    ...(weights.length === 0 ? { unattributed: "no-positive-influence" as const } : {}),
  };
}

export interface SelfInfluenceEntry extends TrainingRowRef {
  /** Quantized g_iᵀ H⁻¹ g_i (1e-12 units), decimal string. */
  selfInfluence: string;
}

/**
 * Rows ranked by self-influence, highest first (ties by row order): candidates for review as
 * mislabeled or adversarial data (evidence for slashing proposals).
 */
export function rankSelfInfluence(
  inf: InfluenceModel,
  rows: readonly TrainingRowRef[],
  limit = 50,
): SelfInfluenceEntry[] {
  const q = quantize(selfInfluence(inf));
  return q
    .map((_v, i) => i)
    .sort((a, b) => (q[a]! !== q[b]! ? (q[b]! > q[a]! ? 1 : -1) : a - b))
    .slice(0, limit)
    .map((i) => ({ ...rows[i]!, selfInfluence: q[i]!.toString() }));
}
