/**
 * LoRA influence against actual retraining of the adapter (issue #19, Part B), in a setting
 * small enough to retrain many times here: the tiny Llama-architecture base model (random
 * weights, 2 layers, hidden 64, byte tokens), a rank-4 LoRA on q/k/v/o, and a few hundred real
 * rows — SpamAssassin subjects fine-tuned as `subject>label` with the loss on the answer byte
 * only (prompt-masked, as instruction tuning does).
 *
 * - lds: linear datamodeling score (TRAK; dattri's definition): M random half-size subsets,
 *   an adapter retrained on each (same seed, same data order minus the rows left out); per
 *   test answer, Spearman between Σ_{i∈S} τ_i and minus the retrained answer loss; mean over
 *   test answers.
 * - ldsDrop: the same statistic by EleutherAI Bergson's protocol (its leaderboard's LDS): 100
 *   retrains each DROPPING a random 1% of the rows (300 rows: 3 rows; at 160 rows 1% would be 1.6),
 *   per-answer Spearman, mean over 50 answers (Bergson: 50 queries), 95% CI from 10,000 bootstrap
 *   resamples of the retrains. ldsKeep90 (metagradient runs only) drops 10%.
 * - looSpearman: Spearman between τ_i and the retrained leave-one-out change of each test
 *   answer's loss over K removed rows; mean over test answers.
 * - mislabelAuc: 10% of the training labels flipped; ROC AUC of the flipped rows by
 *   self-influence.
 * - msPerAnswer: the answer's gradient (one run of the per-example gradient graph) + scoring.
 * Each figure is given for the signed estimator (damped Fisher inverse, exact via the Gram
 * matrix: `loraInfluenceScores`) and for peers computed in the same run against the same ground
 * truth: DataInf's closed form and Grad-Dot (TracIn at the final adapter), from the same gradients;
 * and metagradients through the recorded training run (`adamwMetagradientInfluence`, MAGIC-style):
 * exact (a Hessian-vector product per step, central differences of the gradient graph) and
 * "unrolled first-order" (the same reverse pass through AdamW without the Hessian term). Their
 * mislabel AUC: the unrolled one's from one reverse pass per training row; the exact one's costs
 * a reverse pass with 39 HVPs per row and is computed only with --magic-auc (else null).
 *
 *   node --import tsx bench/lora-influence.ts [--json] [--quick | --medium] [--no-metagradients] [--adam-eps E]
 *     [--warmup F] [--rows N] [--answers N] [--lds-drop F] [--lds-count N] [--magic-auc] [--drop-only]
 *     [--seed N] [--proj-k K] [--drop-weight F]
 * Full size: 300 rows, 50 answers, 24 subsets per LDS, 16 leave-one-out rows, 100 drop retrains
 * (`--rows 160 --answers 24` is the setting of the 2026-12-02..04 figures). --medium: 96 rows, 12
 * answers, 12 subsets, 8 leave-one-out rows, 50 drop retrains. --adam-eps: Adam's eps (default 1e-8)
 * — an experiment on how smooth the retraining response is (a tiny eps makes Adam's first step sign
 * descent, bench/RESULTS.md); it changes the training and so the ground truth. --warmup: the fraction
 * of the 40 steps that warm the learning rate up linearly (Bergson trains with 0.25; default 0).
 * --lds-drop / --lds-count: the drop protocol's fraction (0.01) and retrains (100). --magic-auc: the
 * exact metagradient's mislabel AUC too (one reverse pass with 39 HVPs per training row). --drop-only:
 * only the drop protocol's retrains (no half-subset / 90% / leave-one-out ones, no refinement).
 * --seed: the trainer's seed (the adapter's initialization; default 7): another training run, same
 * data, draws and answers. --proj-k K: the projected exact metagradient (attribution-core
 * `projectMetagradient`: K reverse passes once per run on the leading principal directions of the
 * training rows' final gradients, plain ("pca") and in Adam's final metric ("adam"); then per answer a
 * rows × k product), measured at k = 4, 8, 16, … ≤ K. --drop-weight F: the drop protocol's drawn rows
 * are down-weighted to F instead of removed (a smaller perturbation: how linear the response is).
 * With metagradients, `additivity`: the exact metagradient's first-order prediction of each drop
 * retrain's answer-loss change against the retrained change.
 * Also imported by bench/attribution.ts (its `loraInfluence` field).
 */
import { fileURLToPath } from "node:url";
import {
  adamwMetagradientInfluence,
  type LoraGradients,
  loraInfluenceScores,
  loraSelfInfluence,
  prepareLoraInfluence,
  principalDirections,
  projectedMetagradientInfluence,
  projectMetagradient,
  type RecordedStep,
  refinedLoraInfluenceScores,
  rowUpdateDirections,
  type TrainingTape,
} from "../packages/attribution-core/src/index.ts";
import { rocAuc } from "../packages/attribution-core/src/testing/ground-truth.ts";
import { loadSpamAssassin, mulberry32 } from "../packages/attribution-core/src/testing/spam-assassin.ts";
import {
  emptyBatch,
  generateBaseModel,
  resolveOptimizer,
  type StepRecord,
  TINY_BOS,
  TINY_CONFIG,
  TINY_EOS,
  type TrainBatch,
  Trainer,
  type TrainerOptions,
} from "../packages/model-runtime/src/index.ts";

const SEQ = 32;
const SUBJECT_BYTES = 28;
const SEP = 0x3e; // ">"
const LABEL_BYTES = [0x68, 0x73]; // "h" (ham), "s" (spam)

interface Row {
  tokens: number[];
  /** Index in `tokens` of the answer (label) byte. */
  answerAt: number;
  label: number;
}

function toRow(subject: string, label: number): Row {
  const clean = subject.toLowerCase().replace(/\s+/g, " ").trim();
  const bytes = [...new TextEncoder().encode(clean)].filter((b) => b < 128).slice(0, SUBJECT_BYTES);
  const tokens = [TINY_BOS, ...bytes, SEP, LABEL_BYTES[label]!, TINY_EOS];
  return { tokens, answerAt: tokens.length - 2, label };
}

function loadRows(count: number): Row[] {
  return loadSpamAssassin(6046, 11)
    .map((e) => ({ subject: e.text.split("\n", 1)[0] ?? "", label: e.label }))
    .filter((e) => e.subject.trim().length >= 6)
    .slice(0, count)
    .map((e) => toRow(e.subject, e.label));
}

/**
 * Rows as one batch of `size` (padded with empty rows), the loss on each row's answer byte.
 * "mean": weights 1/rows (the training objective); "each": weight 1 per row, so per-example
 * gradients are each answer's own NLL's.
 */
function answerBatch(
  rows: readonly Row[],
  weighting: "mean" | "each",
  size: number,
  rowWeights?: readonly number[],
): TrainBatch {
  const b = emptyBatch(size, SEQ);
  const total = rowWeights ? rowWeights.reduce((a, c) => a + c, 0) : rows.length;
  rows.forEach((row, r) => {
    for (let t = 0; t < Math.min(row.tokens.length, SEQ); t++)
      b.inputIds[r * SEQ + t] = BigInt(row.tokens[t]!);
    for (let t = 0; t + 1 < Math.min(row.tokens.length, SEQ + 1); t++)
      b.labels[r * SEQ + t] = BigInt(row.tokens[t + 1]!);
    b.labelWeights[r * SEQ + row.answerAt - 1] =
      weighting === "each" ? 1 : rowWeights ? rowWeights[r]! / total : 1 / rows.length;
  });
  b.tokens = rows.length;
  return b;
}

/**
 * Full-batch AdamW (every kept row in every step; the graph's batch is the whole training set,
 * rows left out are empty): deterministic, and the retrained adapter is a smooth function of
 * which rows are kept — mini-batch SGD made the retrained answer losses mostly optimizer noise
 * (a held-out answer's loss ranged 0.8..12 across half-size subsets with the same label mix).
 */
const STEPS = 40;
const base = generateBaseModel(TINY_CONFIG, 3);

/** Adam's eps of every training run of a measurement (set by `measureLoraInfluence`). */
let adamEps = 1e-8;
/** Linear warm-up steps of every training run of a measurement (set by `measureLoraInfluence`). */
let warmupSteps = 0;
/** The trainer's seed (the adapter's initialization) of every training run of a measurement. */
let trainSeed = 7;

function trainOptions(batch: number, perExampleGrads = false): TrainerOptions {
  return {
    mode: "lora",
    lora: { rank: 4, alpha: 8, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"] },
    batch,
    seq: SEQ,
    optimizer: {
      lr: 5e-3,
      clipNorm: 1,
      weightDecay: 0.1,
      schedule: "cosine",
      totalSteps: STEPS,
      ...(adamEps !== 1e-8 ? { eps: adamEps } : {}),
      ...(warmupSteps > 0 ? { warmupSteps } : {}),
    },
    seed: trainSeed,
    intraOpThreads: 1,
    perExampleGrads,
  };
}

/**
 * `weight(i)`: row i's relative weight in the objective's mean (0 = left out, 1 = as in the full run;
 * a boolean is 0/1). Rows of weight 0 are not in the batch at all, so a drop-only run is the same
 * batch, bit for bit, as before weights existed.
 */
async function train(
  rows: readonly Row[],
  weight: (i: number) => number | boolean,
  record?: (r: StepRecord) => void,
): Promise<Trainer> {
  const t = await Trainer.create(base, trainOptions(rows.length));
  const ws = rows.map((_r, i) => Number(weight(i)));
  const kept = rows.filter((_r, i) => ws[i]! > 0);
  const keptWeights = ws.filter((w) => w > 0);
  const batch = answerBatch(
    kept,
    "mean",
    rows.length,
    keptWeights.every((w) => w === 1) ? undefined : keptWeights,
  );
  for (let s = 0; s < STEPS; s++) await t.trainStep(batch, record);
  return t;
}

/**
 * The full-data run as a metagradient tape: the trainer's recorded steps plus, per step, each row's
 * term of the batch gradient (the per-example graph at that step's parameters, same batch), and the
 * Hessian-vector products of the training objective at each step (a gradient graph of the run's own
 * shape: two runs per product).
 */
async function metagradientTape(
  rows: readonly Row[],
  records: readonly StepRecord[],
): Promise<{
  tape: TrainingTape;
  hvp: (t: number, v: Float64Array) => Promise<Float64Array>;
  dispose(): Promise<void>;
}> {
  const batch = answerBatch(rows, "mean", rows.length);
  const perExample = await Trainer.create(base, trainOptions(rows.length, true));
  const steps: RecordedStep[] = [];
  try {
    for (const r of records) {
      perExample.setFlatValues(r.params);
      const { rowGrads } = await perExample.flatGradients(batch);
      steps.push({ ...r, rowGrads: rowGrads! });
    }
  } finally {
    await perExample.dispose();
  }
  const hvpTrainer = await Trainer.create(base, trainOptions(rows.length));
  return {
    tape: {
      hyper: resolveOptimizer(hvpTrainer.options.optimizer),
      rows: rows.length,
      dim: hvpTrainer.dim,
      steps,
    },
    hvp: async (t, v) => {
      hvpTrainer.setFlatValues(steps[t]!.params);
      return hvpTrainer.hessianVectorProduct(batch, v);
    },
    dispose: () => hvpTrainer.dispose(),
  };
}

async function answerLosses(t: Trainer, rows: readonly Row[]): Promise<Float64Array> {
  const out = new Float64Array(rows.length);
  const size = t.options.batch;
  for (let s = 0; s < rows.length; s += size) {
    const chunk = rows.slice(s, s + size);
    const { nll } = await t.evaluate(answerBatch(chunk, "each", size));
    chunk.forEach((row, r) => {
      out[s + r] = nll[r * SEQ + row.answerAt - 1]!;
    });
  }
  return out;
}

/** Per-example gradients of each row's answer NLL at the trainer's adapter, blocked by module. */
async function exampleGradients(trained: Trainer, rows: readonly Row[]): Promise<LoraGradients> {
  const size = trained.options.batch;
  const g = await Trainer.create(base, trainOptions(size, true));
  try {
    for (const p of g.params) g.values.get(p.name)!.set(trained.values.get(p.name)!);
    // One block per adapted module (its lora_A and lora_B), in parameter order.
    const modules = new Map<string, { name: string; size: number }[]>();
    for (const p of g.params) {
      const key = p.name.replace(/\.lora_[AB]\.weight$/, "");
      const size = p.shape.reduce((a, b) => a * b, 1);
      modules.set(key, [...(modules.get(key) ?? []), { name: p.name, size }]);
    }
    const blocks = [...modules.values()].map((ps) => ps.reduce((s, p) => s + p.size, 0));
    const dim = blocks.reduce((s, b) => s + b, 0);
    const values = new Float32Array(rows.length * dim);
    for (let s = 0; s < rows.length; s += size) {
      const chunk = rows.slice(s, s + size);
      const { exampleGrads } = await g.gradients(answerBatch(chunk, "each", size));
      chunk.forEach((_row, r) => {
        let at = (s + r) * dim;
        for (const ps of modules.values()) {
          for (const p of ps) {
            values.set(exampleGrads.get(p.name)!.subarray(r * p.size, (r + 1) * p.size), at);
            at += p.size;
          }
        }
      });
    }
    return { rows: rows.length, blocks, values };
  } finally {
    await g.dispose();
  }
}

function ranks(v: ArrayLike<number>): Float64Array {
  const idx = Array.from({ length: v.length }, (_, i) => i).sort((a, b) => v[a]! - v[b]!);
  const r = new Float64Array(v.length);
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && v[idx[j + 1]!] === v[idx[i]!]) j++;
    for (let k = i; k <= j; k++) r[idx[k]!] = (i + j) / 2;
    i = j + 1;
  }
  return r;
}

function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i]! / n;
    mb += b[i]! / n;
  }
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < n; i++) {
    ab += (a[i]! - ma) * (b[i]! - mb);
    aa += (a[i]! - ma) ** 2;
    bb += (b[i]! - mb) ** 2;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

export function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const ra = ranks(a);
  const rb = ranks(b);
  const n = ra.length;
  const mean = (n - 1) / 2;
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < n; i++) {
    ab += (ra[i]! - mean) * (rb[i]! - mean);
    aa += (ra[i]! - mean) ** 2;
    bb += (rb[i]! - mean) ** 2;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

type Estimator = "fisher" | "datainf" | "gradDot" | "magic" | "unrolled" | "refined";
const ESTIMATORS: Estimator[] = ["fisher", "datainf", "gradDot", "magic", "unrolled", "refined"];
/** Hessian refinement of the Fisher estimator: iterations measured (LDS of each), the last one reported. */
const REFINE_ITERATIONS = [1, 2, 4, 8];
/** The second LDS ground truth keeps this fraction of the rows (the first keeps half). */
const SMALL_DROP_KEEP = 0.9;

/** DataInf's closed form (Kwon et al. 2024, eq. 5) per block, same λ_l as the Fisher estimator. */
function dataInfScores(g: LoraGradients, lambdas: number[], t: ArrayLike<number>): Float64Array {
  const { rows: n, blocks, values } = g;
  const dim = blocks.reduce((s, b) => s + b, 0);
  const out = new Float64Array(n);
  let off = 0;
  blocks.forEach((d, l) => {
    const lambda = lambdas[l]!;
    // u = (1/n) Σ_j (g_tᵀg_j)/(λ + ‖g_j‖²) g_j, then τ_i = (1/λ)(g_tᵀg_i − uᵀg_i).
    const tg = new Float64Array(n);
    const u = new Float64Array(d);
    for (let j = 0; j < n; j++) {
      let dot = 0;
      let sq = 0;
      for (let k = 0; k < d; k++) {
        const v = values[j * dim + off + k]!;
        dot += v * t[off + k]!;
        sq += v * v;
      }
      tg[j] = dot;
      const c = dot / (lambda + sq) / n;
      for (let k = 0; k < d; k++) u[k]! += c * values[j * dim + off + k]!;
    }
    for (let i = 0; i < n; i++) {
      let ug = 0;
      for (let k = 0; k < d; k++) ug += u[k]! * values[i * dim + off + k]!;
      out[i]! += (tg[i]! - ug) / lambda;
    }
    off += d;
  });
  return out;
}

function gradDotScores(g: LoraGradients, t: ArrayLike<number>): Float64Array {
  const dim = t.length;
  return Float64Array.from({ length: g.rows }, (_, i) => {
    let s = 0;
    for (let k = 0; k < dim; k++) s += g.values[i * dim + k]! * t[k]!;
    return s;
  });
}

function rowOf(g: LoraGradients, i: number): Float32Array {
  const dim = g.values.length / g.rows;
  return g.values.subarray(i * dim, (i + 1) * dim);
}

export interface LoraInfluenceFigures {
  /** Half-subset LDS and leave-one-out Spearman; null only in a `dropOnly` run. */
  lds: number | null;
  looSpearman: number | null;
  mislabelAuc: number;
  msPerAnswer: number;
  rows: number;
}

/**
 * LDS by Bergson's protocol (EleutherAI/bergson, docs/evaluation.rst): M random retrains each
 * DROPPING a small random fraction of the rows; per answer, Spearman over the M subsets between the
 * summed scores of the kept rows and minus the retrained answer loss (equivalently: the dropped rows'
 * summed scores against the loss change); mean over answers; 95% CI by resampling the subsets.
 */
export interface DropLds {
  lds: number;
  /** 2.5% and 97.5% percentiles of the mean over 10,000 bootstrap resamples of the subsets. */
  ci95: [number, number];
}

type PeerFigures = Omit<LoraInfluenceFigures, "msPerAnswer" | "rows" | "mislabelAuc"> & {
  mislabelAuc: number | null;
  /** LDS against subsets keeping 90% of the rows (runs with metagradients only). */
  ldsKeep90?: number;
  /** LDS against `ldsDrop.count` retrains each dropping `ldsDrop.rows` random rows (Bergson's protocol). */
  ldsDrop: DropLds;
};

export interface LoraInfluenceResult extends LoraInfluenceFigures {
  /** The signed estimator's LDS against subsets keeping 90% of the rows (with metagradients only). */
  ldsKeep90?: number;
  /**
   * The signed estimator's LDS by Bergson's protocol (the comparable one for its leaderboard): retrains
   * each dropping `setting.ldsDrop.rows` random rows (1% by default), per-answer Spearman, mean, 95% CI.
   */
  ldsDrop: DropLds;
  estimator: "damped Fisher inverse (exact, Gram/Woodbury)";
  peers: Record<"datainf" | "gradDot", PeerFigures> &
    Partial<Record<"magic" | "unrolled" | "refined", PeerFigures & { msPerAnswer: number }>>;
  refineSweep?: { iterations: number; lds: number }[];
  dampingSweep: { dampingRatio: number; lds: number | null; ldsDrop: number }[];
  setting: Record<string, unknown>;
  heldOutAnswerLoss: { base: number; trained: number };
  /** The projected exact metagradient per basis and k (with `projK` only), and its costs. */
  projected?: ProjectedFigures[];
  projection?: { basis: ProjectionBasis; k: number; precomputeSeconds: number }[];
  /** The answer's gradient + the rows × k product at the largest k (median of up to 10 answers). */
  projectedMsPerAnswer?: number;
  /** The exact metagradient's first-order prediction of the drop retrains (with metagradients only). */
  additivity?: Additivity;
  /** The drop protocol's ground truth: mean and median |Δ answer loss| of a retrain without the dropped rows. */
  ldsDropResponse: { meanAbsDelta: number; medianAbsDelta: number };
  seconds: number;
}

/** Training rows and held-out answers of a full-size run (`rows` / `answers` override them). */
const DEFAULT_ROWS = 300;
const DEFAULT_ANSWERS = 50;
/** Bootstrap resamples of the drop-protocol subsets for its 95% CI (Bergson's 10k). */
const BOOTSTRAP_DRAWS = 10_000;

const r4 = (x: number) => Number(x.toFixed(4));

/**
 * LDS over retrained subsets (`members`: 1 = row kept): per answer, Spearman between the summed scores of
 * the kept rows and minus the retrained answer loss, mean over answers; and the 2.5/97.5% percentiles of
 * that mean over `draws` resamples (with replacement) of the subsets — the same resamples for every
 * estimator (fixed seed), so their intervals are paired.
 */
export function ldsWithBootstrap(
  scores: readonly Float64Array[],
  members: readonly Uint8Array[],
  subsetLoss: readonly Float64Array[],
  draws: number,
): { lds: number; ci95: [number, number] } {
  const m = members.length;
  const predicted = scores.map((tau) =>
    Float64Array.from(members, (inS) => inS.reduce((s, on, i) => (on ? s + tau[i]! : s), 0)),
  );
  const target = scores.map((_t, k) => Float64Array.from(subsetLoss, (l) => -l[k]!));
  const meanOver = (idx: readonly number[]) => {
    let sum = 0;
    for (let k = 0; k < scores.length; k++) {
      const p = predicted[k]!;
      const t = target[k]!;
      sum += spearman(
        idx.map((j) => p[j]!),
        idx.map((j) => t[j]!),
      );
    }
    return sum / scores.length;
  };
  const lds = meanOver(Array.from({ length: m }, (_, j) => j));
  const rnd = mulberry32(80);
  const means = new Float64Array(draws);
  for (let b = 0; b < draws; b++) means[b] = meanOver(Array.from({ length: m }, () => Math.floor(rnd() * m)));
  means.sort();
  return { lds, ci95: [means[Math.floor(0.025 * draws)]!, means[Math.ceil(0.975 * draws) - 1]!] };
}

export interface MeasureOptions {
  /** Also the metagradient rows (exact and unrolled) and the Hessian refinement (default true). */
  metagradients?: boolean;
  /** 96 rows, 12 answers, 12 subsets per LDS, 8 leave-one-out rows. */
  medium?: boolean;
  /** Adam's eps (default 1e-8). */
  adamEps?: number;
  /** Fraction of the steps that warm the learning rate up linearly (default 0: none). */
  warmupFraction?: number;
  /** Training rows and held-out answers (defaults: 300 and 50 at full size). */
  rows?: number;
  answers?: number;
  /** Bergson's protocol: the fraction of rows each retrain drops (default 0.01) and the retrains (100). */
  ldsDrop?: number;
  ldsCount?: number;
  /** The exact metagradient's mislabel AUC (a reverse pass with T − 1 HVPs per training row). */
  magicAuc?: boolean;
  /**
   * Only Bergson's protocol: no half-subset, 90% or leave-one-out retrains (lds, looSpearman and
   * ldsKeep90 null), no Hessian refinement, no unrolled self-influence — a cheaper run for comparisons.
   */
  dropOnly?: boolean;
  /** The trainer's seed: the adapter's initialization (default 7). Data, draws and answers are unchanged. */
  seed?: number;
  /**
   * The projected exact metagradient (`projectMetagradient`): this many reverse passes per basis, once per
   * run, then per answer a rows × k product; measured at k = 4, 8, 16, … up to this (0 = not measured).
   */
  projK?: number;
  /** Which bases the projection is measured on (default traj and pca). */
  projBases?: ProjectionBasis[];
  /** Bergson's protocol with the drawn rows down-weighted to this fraction instead of removed (default 0). */
  dropWeight?: number;
}

/**
 * Bases of the projected metagradient: principal directions of the training rows' final gradients ("pca"),
 * the same in Adam's final preconditioned metric ("adam"), and of where each row moved the parameters
 * over the run ("traj": `rowUpdateDirections`, an approximation of the range of dθ_T/dw).
 */
type ProjectionBasis = "pca" | "adam" | "traj";

export interface ProjectedFigures {
  basis: ProjectionBasis;
  k: number;
  ldsDrop: DropLds;
  /** 1 − ‖g − ĝ‖²/‖g‖² over the test answers' gradients: median and minimum. */
  capturedMedian: number;
  capturedMin: number;
  /** Mean over answers of the Pearson correlation of its scores with the exact metagradient's. */
  pearsonWithExact: number | null;
  /**
   * The projection plus the damped Fisher on what it misses: τ = M c + α F(g − ĝ), α fitted (least
   * squares) so that α F(b_j) matches the reverse passes τ(b_j) on the k directions; no extra passes.
   */
  withFisherResidual: { ldsDrop: DropLds; alpha: number; pearsonWithExact: number | null };
}

/**
 * The first-order prediction of each drop retrain's answer-loss change from per-row scores in
 * ∂L/∂log w units (the metagradient's), against the retrained change, pooled over retrains × answers.
 */
export interface Additivity {
  pearson: number;
  /** Least-squares slope of the retrained change on the predicted one (1 = right size). */
  slope: number;
  /** ‖retrained − predicted‖ / ‖retrained‖. */
  relErr: number;
  meanAbsRetrained: number;
  meanAbsPredicted: number;
}

export async function measureLoraInfluence(
  quick: boolean,
  log: (msg: string) => void,
  options: MeasureOptions = {},
): Promise<LoraInfluenceResult> {
  const withMeta = options.metagradients ?? true;
  adamEps = options.adamEps ?? 1e-8;
  warmupSteps = Math.round((options.warmupFraction ?? 0) * STEPS);
  trainSeed = options.seed ?? 7;
  const projK = withMeta ? (options.projK ?? 0) : 0;
  const dropWeight = options.dropWeight ?? 0;
  const projBases = options.projBases ?? ["traj", "pca"];
  if (!(dropWeight >= 0 && dropWeight < 1)) throw new RangeError("dropWeight must be in [0, 1)");
  const medium = !quick && (options.medium ?? false);
  const t0 = performance.now();
  const nTrain = options.rows ?? (quick ? 48 : medium ? 96 : DEFAULT_ROWS);
  const nTest = options.answers ?? (quick ? 8 : medium ? 12 : DEFAULT_ANSWERS);
  const dropOnly = options.dropOnly ?? false;
  const subsets = dropOnly ? 0 : quick ? 6 : medium ? 12 : 24;
  const looRows = dropOnly ? 0 : quick ? 4 : medium ? 8 : 16;
  const estimators = ESTIMATORS.filter((e) =>
    withMeta ? !(dropOnly && e === "refined") : e === "fisher" || e === "datainf" || e === "gradDot",
  );
  const dropFraction = options.ldsDrop ?? 0.01;
  const dropRows = Math.max(1, Math.round(dropFraction * nTrain));
  const dropCount = options.ldsCount ?? (quick ? 20 : medium ? 50 : 100);
  const all = loadRows(nTrain + nTest);
  const rows = all.slice(0, nTrain);
  const tests = all.slice(nTrain);

  log(`LoRA influence: training the adapter on ${nTrain} rows (${STEPS} full-batch steps)...`);
  const records: StepRecord[] = [];
  const full = await train(rows, () => true, withMeta ? (r) => records.push(r) : undefined);
  const fullLoss = await answerLosses(full, tests);
  const untrained = await Trainer.create(base, trainOptions(nTrain));
  const baseLoss = await answerLosses(untrained, tests);
  await untrained.dispose();
  const grads = await exampleGradients(full, rows);
  const testGrads = await exampleGradients(full, tests);
  const model = prepareLoraInfluence(grads);
  // DataInf with its own published damping (λ_l = 0.1 · mean ‖g_il‖²).
  const dataInfLambdas = prepareLoraInfluence(grads, { dampingRatio: 0.1 }).lambdas;
  const scores: Record<Estimator, Float64Array[]> = {
    fisher: [],
    datainf: [],
    gradDot: [],
    magic: [],
    unrolled: [],
    refined: [],
  };
  for (let k = 0; k < nTest; k++) {
    const tg = rowOf(testGrads, k);
    scores.fisher.push(loraInfluenceScores(model, tg));
    scores.datainf.push(dataInfScores(grads, dataInfLambdas, tg));
    scores.gradDot.push(gradDotScores(grads, tg));
  }
  // Metagradients through the recorded run; ms per answer = the reverse pass (incl. its HVPs).
  const metaMs: Record<"magic" | "unrolled" | "refined", number[]> = { magic: [], unrolled: [], refined: [] };
  const refinedAt = new Map<number, Float64Array[]>(REFINE_ITERATIONS.map((k) => [k, []]));
  const projections: {
    basis: ProjectionBasis;
    p: Awaited<ReturnType<typeof projectMetagradient>>;
    precomputeSeconds: number;
  }[] = [];
  if (withMeta) {
    log(`  metagradients: recording per-row gradients at ${records.length} steps...`);
    const meta = await metagradientTape(rows, records);
    try {
      for (let k = 0; k < nTest; k++) {
        const tg = rowOf(testGrads, k);
        let ts = performance.now();
        scores.magic.push(await adamwMetagradientInfluence(meta.tape, tg, { hvp: meta.hvp }));
        metaMs.magic.push(performance.now() - ts);
        ts = performance.now();
        scores.unrolled.push(await adamwMetagradientInfluence(meta.tape, tg, { hvp: null }));
        metaMs.unrolled.push(performance.now() - ts);
        log(`  metagradients ${k + 1}/${nTest} (${metaMs.magic.at(-1)!.toFixed(0)} ms exact)`);
      }
      if (projK > 0) {
        // Adam's metric at the end of the run: 1/(√v̂ + floor), the floor 1% of the median √v̂.
        const last = records.at(-1)!;
        const bc2 = 1 - resolveOptimizer(full.options.optimizer).beta2 ** (last.step + 1);
        const root = Float64Array.from(last.v, (x) => Math.sqrt(x / bc2));
        const floor = 0.01 * [...root].sort((a, b) => a - b)[root.length >> 1]!;
        const adamScale = Float64Array.from(root, (r) => 1 / Math.max(r, floor));
        const dim = testGrads.values.length / nTest;
        for (const basis of projBases) {
          const ts = performance.now();
          const directions =
            basis === "traj"
              ? await principalDirections(rowUpdateDirections(meta.tape), nTrain, dim, projK)
              : await principalDirections(
                  grads.values,
                  nTrain,
                  dim,
                  projK,
                  basis === "adam" ? adamScale : undefined,
                );
          const p = await projectMetagradient(meta.tape, directions, {
            hvp: meta.hvp,
            onDirection: (j, kk) => {
              if (j % 8 === 0 || j === kk) log(`  projected metagradient (${basis}) ${j}/${kk}`);
            },
          });
          projections.push({ basis, p, precomputeSeconds: (performance.now() - ts) / 1000 });
        }
      }
    } finally {
      await meta.dispose();
    }
    // The Fisher estimator refined with the training objective's Hessian at the adapter.
    if (!dropOnly) {
      const h = await Trainer.create(base, trainOptions(nTrain));
      try {
        h.setFlatValues(full.flatValues());
        const batch = answerBatch(rows, "mean", nTrain);
        const last = REFINE_ITERATIONS.at(-1)!;
        for (let k = 0; k < nTest; k++) {
          const ts = performance.now();
          const tau = await refinedLoraInfluenceScores(
            model,
            rowOf(testGrads, k),
            (v) => h.hessianVectorProduct(batch, v),
            { iterations: last, onIteration: (it, sc) => refinedAt.get(it)?.push(sc) },
          );
          metaMs.refined.push(performance.now() - ts);
          scores.refined.push(tau);
        }
      } finally {
        await h.dispose();
      }
    }
  }
  // Cost per answer: its gradient (one run of a batch-1 gradient graph) + scoring against all rows.
  const gTrainer = await Trainer.create(base, trainOptions(1));
  for (const p of gTrainer.params) gTrainer.values.get(p.name)!.set(full.values.get(p.name)!);
  const times: number[] = [];
  const projTimes: number[] = [];
  for (let k = 0; k < Math.min(nTest, 10); k++) {
    const ts = performance.now();
    await gTrainer.gradients(answerBatch([tests[k]!], "each", 1));
    const tg = performance.now();
    loraInfluenceScores(model, rowOf(testGrads, k));
    times.push(performance.now() - ts);
    if (projections[0]) {
      const tp = performance.now();
      projectedMetagradientInfluence(projections[0].p, rowOf(testGrads, k));
      projTimes.push(tg - ts + performance.now() - tp);
    }
  }
  await gTrainer.dispose();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const msPerAnswer = median(times);

  // LDS: half-size subsets, retrained.
  const rnd = mulberry32(77);
  const subsetLoss: Float64Array[] = [];
  const members: Uint8Array[] = [];
  for (let m = 0; m < subsets; m++) {
    const inS = new Uint8Array(nTrain);
    const pick = Array.from({ length: nTrain }, (_, i) => i)
      .map((i) => ({ i, r: rnd() }))
      .sort((a, b) => a.r - b.r)
      .slice(0, nTrain >> 1);
    for (const { i } of pick) inS[i] = 1;
    const t = await train(rows, (i) => inS[i] === 1);
    subsetLoss.push(await answerLosses(t, tests));
    await t.dispose();
    members.push(inS);
    log(`  LDS subsets ${m + 1}/${subsets}`);
  }
  const ldsOf = (sc: Float64Array[], truth = { members, subsetLoss }) => {
    let sum = 0;
    for (let k = 0; k < nTest; k++) {
      const tau = sc[k]!;
      const predicted = truth.members.map((inS) => inS.reduce((s, on, i) => (on ? s + tau[i]! : s), 0));
      sum += spearman(
        predicted,
        truth.subsetLoss.map((l) => -l[k]!),
      );
    }
    return sum / nTest;
  };
  const lds = (est: Estimator) => ldsOf(scores[est]);

  /**
   * `count` retrains, each without `k` rows drawn from `rnd` (the first k of the rows ordered by a fresh
   * draw each): the kept-row masks and the answers' retrained losses.
   */
  const retrainDropping = async (rnd: () => number, count: number, k: number, label: string, weight = 0) => {
    const truth = { members: [] as Uint8Array[], subsetLoss: [] as Float64Array[] };
    for (let m = 0; m < count; m++) {
      const inS = new Uint8Array(nTrain).fill(1);
      const out = Array.from({ length: nTrain }, (_, i) => i)
        .map((i) => ({ i, r: rnd() }))
        .sort((a, b) => a.r - b.r)
        .slice(0, k);
      for (const { i } of out) inS[i] = 0;
      const t = await train(rows, (i) => (inS[i] === 1 ? 1 : weight));
      truth.subsetLoss.push(await answerLosses(t, tests));
      await t.dispose();
      truth.members.push(inS);
      if ((m + 1) % 10 === 0 || m + 1 === count) log(`  ${label} ${m + 1}/${count}`);
    }
    return truth;
  };

  // A second LDS ground truth closer to a linear response: subsets keeping 90% of the rows (own seed,
  // so the half-subset and leave-one-out draws above are unchanged). With the metagradient rows only.
  const small =
    withMeta && !dropOnly
      ? await retrainDropping(
          mulberry32(78),
          subsets,
          Math.round(nTrain * (1 - SMALL_DROP_KEEP)),
          `LDS (${SMALL_DROP_KEEP * 100}% subsets)`,
        )
      : { members: [], subsetLoss: [] };

  // Bergson's protocol: retrains each dropping `dropRows` random rows (own seed: the draws above are unchanged).
  const drop = await retrainDropping(
    mulberry32(79),
    dropCount,
    dropRows,
    dropWeight > 0 ? `LDS (${dropRows} rows at weight ${dropWeight})` : `LDS (drop ${dropRows} rows)`,
    dropWeight,
  );
  const dropDeltas = drop.subsetLoss.flatMap((l) => Array.from(l, (v, k) => Math.abs(v - fullLoss[k]!)));
  const dropLds = (sc: Float64Array[]): DropLds => {
    const { lds: value, ci95 } = ldsWithBootstrap(sc, drop.members, drop.subsetLoss, BOOTSTRAP_DRAWS);
    return { lds: r4(value), ci95: [r4(ci95[0]), r4(ci95[1])] };
  };
  // First-order prediction of each retrain from ∂L/∂log w scores: row i's weight in the mean moves by
  // Δw_i/w_i = c_i·n/Σc − 1 (c_i = 1 kept, dropWeight drawn), so ΔL ≈ −Σ_i τ_i (c_i·n/Σc − 1).
  const additivity = (sc: Float64Array[]): Additivity => {
    const pred: number[] = [];
    const act: number[] = [];
    drop.members.forEach((inS, m) => {
      const c = Array.from(inS, (on) => (on ? 1 : dropWeight));
      const total = c.reduce((a, b) => a + b, 0);
      for (let k = 0; k < nTest; k++) {
        let p = 0;
        for (let i = 0; i < nTrain; i++) p -= sc[k]![i]! * ((c[i]! * nTrain) / total - 1);
        pred.push(p);
        act.push(drop.subsetLoss[m]![k]! - fullLoss[k]!);
      }
    });
    let pa = 0;
    let pp = 0;
    let res = 0;
    let aa = 0;
    for (let j = 0; j < pred.length; j++) {
      pa += pred[j]! * act[j]!;
      pp += pred[j]! ** 2;
      aa += act[j]! ** 2;
      res += (act[j]! - pred[j]!) ** 2;
    }
    const meanAbs = (xs: number[]) => xs.reduce((a, b) => a + Math.abs(b), 0) / xs.length;
    return {
      pearson: r4(pearson(pred, act)),
      slope: r4(pa / pp),
      relErr: r4(Math.sqrt(res / aa)),
      meanAbsRetrained: Number(meanAbs(act).toPrecision(4)),
      meanAbsPredicted: Number(meanAbs(pred).toPrecision(4)),
    };
  };
  const projected: ProjectedFigures[] = projections.flatMap(({ basis, p }) => {
    const ks = [...new Set([4, 8, 16, 32, 64, 128, 256].filter((k) => k < p.k).concat(p.k))];
    // The Fisher estimator on each direction, for the residual variant.
    const fisherOnBasis = Array.from({ length: p.k }, (_, j) =>
      loraInfluenceScores(model, p.basis.subarray(j * p.dim, (j + 1) * p.dim)),
    );
    return ks.map((k) => {
      const out = tests.map((_t, a) => projectedMetagradientInfluence(p, rowOf(testGrads, a), k));
      const captured = out.map((o) => o.captured).sort((x, y) => x - y);
      let num = 0;
      let den = 0;
      for (let j = 0; j < k; j++) {
        for (let i = 0; i < nTrain; i++) {
          num += p.influence[i * p.k + j]! * fisherOnBasis[j]![i]!;
          den += fisherOnBasis[j]![i]! ** 2;
        }
      }
      const alpha = den > 0 ? num / den : 0;
      // F(g − ĝ) = F(g) − Σ_j c_j F(b_j) (F is linear in the answer's gradient)
      const hybrid = out.map((o, a) =>
        Float64Array.from(o.scores, (x, i) => {
          let fr = scores.fisher[a]![i]!;
          for (let j = 0; j < k; j++) fr -= o.coefficients[j]! * fisherOnBasis[j]![i]!;
          return x + alpha * fr;
        }),
      );
      const withExact = (sc: Float64Array[]) =>
        scores.magic.length
          ? r4(sc.reduce((acc, x, a) => acc + pearson(x, scores.magic[a]!), 0) / nTest)
          : null;
      return {
        withFisherResidual: {
          ldsDrop: dropLds(hybrid),
          alpha: Number(alpha.toPrecision(4)),
          pearsonWithExact: withExact(hybrid),
        },
        basis,
        k,
        ldsDrop: dropLds(out.map((o) => o.scores)),
        capturedMedian: r4(captured[captured.length >> 1]!),
        capturedMin: r4(captured[0]!),
        pearsonWithExact: withExact(out.map((o) => o.scores)),
      };
    });
  });

  // Leave-one-out: random rows, retrained without each.
  const looIdx = Array.from({ length: nTrain }, (_, i) => i)
    .map((i) => ({ i, r: rnd() }))
    .sort((a, b) => a.r - b.r)
    .slice(0, looRows)
    .map((x) => x.i);
  const looDelta: Float64Array[] = [];
  for (const [n, row] of looIdx.entries()) {
    const t = await train(rows, (i) => i !== row);
    const l = await answerLosses(t, tests);
    await t.dispose();
    looDelta.push(l.map((v, k) => v - fullLoss[k]!));
    log(`  leave-one-out ${n + 1}/${looRows}`);
  }
  const loo = (est: Estimator) => {
    let sum = 0;
    for (let k = 0; k < nTest; k++) {
      sum += spearman(
        looIdx.map((i) => scores[est][k]![i]!),
        looDelta.map((d) => d[k]!),
      );
    }
    return sum / nTest;
  };

  // Mislabeled rows: 10% flipped, ranked by self-influence.
  log("  mislabel detection: training on 10% flipped labels...");
  const flipRnd = mulberry32(3);
  const flipped = rows.map(() => flipRnd() < 0.1);
  const noisy = rows.map((r, i) => (flipped[i] ? toRowFlipped(r) : r));
  const noisyRecords: StepRecord[] = [];
  const noisyAdapter = await train(noisy, () => true, withMeta ? (r) => noisyRecords.push(r) : undefined);
  const noisyGrads = await exampleGradients(noisyAdapter, noisy);
  await noisyAdapter.dispose();
  // Unrolled first-order self-influence: one reverse pass per row, its own answer loss at θ_T.
  let unrolledSelf: Float64Array | null = null;
  if (withMeta && !dropOnly) {
    const meta = await metagradientTape(noisy, noisyRecords);
    try {
      unrolledSelf = new Float64Array(nTrain);
      for (let i = 0; i < nTrain; i++) {
        const tau = await adamwMetagradientInfluence(meta.tape, rowOf(noisyGrads, i), { hvp: null });
        unrolledSelf[i] = tau[i]!;
      }
    } finally {
      await meta.dispose();
    }
  }
  // The exact metagradient's self-influence (opt-in: a reverse pass with T − 1 HVPs per training row).
  let magicSelf: Float64Array | null = null;
  if (withMeta && options.magicAuc) {
    const meta = await metagradientTape(noisy, noisyRecords);
    try {
      magicSelf = new Float64Array(nTrain);
      for (let i = 0; i < nTrain; i++) {
        const tau = await adamwMetagradientInfluence(meta.tape, rowOf(noisyGrads, i), { hvp: meta.hvp });
        magicSelf[i] = tau[i]!;
        if ((i + 1) % 10 === 0) log(`  metagradient self-influence ${i + 1}/${nTrain}`);
      }
    } finally {
      await meta.dispose();
    }
  }
  const noisyModel = prepareLoraInfluence(noisyGrads);
  const noisyDataInfLambdas = prepareLoraInfluence(noisyGrads, { dampingRatio: 0.1 }).lambdas;
  const self: Record<"fisher" | "datainf" | "gradDot", Float64Array> &
    Partial<Record<Estimator, Float64Array>> = {
    fisher: loraSelfInfluence(noisyModel),
    datainf: Float64Array.from(
      { length: nTrain },
      (_, i) => dataInfScores(noisyGrads, noisyDataInfLambdas, rowOf(noisyGrads, i)).at(i)!,
    ),
    gradDot: Float64Array.from({ length: nTrain }, (_, i) => {
      const g = rowOf(noisyGrads, i);
      return g.reduce((s, v) => s + v * v, 0);
    }),
    ...(unrolledSelf ? { unrolled: unrolledSelf } : {}),
  };
  if (magicSelf) self.magic = magicSelf;
  await full.dispose();

  const figures = (est: Estimator) => {
    const s = self[est];
    return {
      lds: dropOnly ? null : r4(lds(est)),
      looSpearman: dropOnly ? null : r4(loo(est)),
      mislabelAuc: s ? r4(rocAuc(s, flipped)) : null,
      ...(withMeta && !dropOnly ? { ldsKeep90: r4(ldsOf(scores[est], small)) } : {}),
      ldsDrop: dropLds(scores[est]),
    };
  };
  const { ldsKeep90: fisherKeep90, ...fisherFigures } = figures("fisher");
  const ours = { ...fisherFigures, mislabelAuc: r4(rocAuc(self.fisher, flipped)) };
  const metaPeers = withMeta
    ? {
        magic: { ...figures("magic"), msPerAnswer: Number(median(metaMs.magic).toFixed(1)) },
        unrolled: { ...figures("unrolled"), msPerAnswer: Number(median(metaMs.unrolled).toFixed(1)) },
        ...(dropOnly
          ? {}
          : { refined: { ...figures("refined"), msPerAnswer: Number(median(metaMs.refined).toFixed(1)) } }),
      }
    : {};
  const refineSweep =
    withMeta && !dropOnly
      ? REFINE_ITERATIONS.map((k) => ({ iterations: k, lds: r4(ldsOf(refinedAt.get(k)!)) }))
      : undefined;
  // The damping's effect on LDS (no retraining needed: same ground truth, other λ).
  const dampingSweep = [0.001, 0.01, 0.1, 1].map((ratio) => {
    const m = prepareLoraInfluence(grads, { dampingRatio: ratio });
    const sc = tests.map((_t, k) => loraInfluenceScores(m, rowOf(testGrads, k)));
    return { dampingRatio: ratio, lds: dropOnly ? null : r4(ldsOf(sc)), ldsDrop: r4(ldsOf(sc, drop)) };
  });
  return {
    ...ours,
    msPerAnswer: Number(msPerAnswer.toFixed(2)),
    rows: nTrain,
    estimator: "damped Fisher inverse (exact, Gram/Woodbury)",
    peers: { datainf: figures("datainf"), gradDot: figures("gradDot"), ...metaPeers },
    ...(fisherKeep90 !== undefined ? { ldsKeep90: fisherKeep90 } : {}),
    dampingSweep,
    ldsDropResponse: {
      meanAbsDelta: Number((dropDeltas.reduce((a, b) => a + b, 0) / dropDeltas.length).toPrecision(4)),
      medianAbsDelta: Number([...dropDeltas].sort((a, b) => a - b)[dropDeltas.length >> 1]!.toPrecision(4)),
    },
    ...(refineSweep ? { refineSweep } : {}),
    ...(projections.length
      ? {
          projected,
          projection: projections.map((x) => ({
            basis: x.basis,
            k: x.p.k,
            precomputeSeconds: Number(x.precomputeSeconds.toFixed(1)),
          })),
          projectedMsPerAnswer: Number(median(projTimes).toFixed(2)),
        }
      : {}),
    ...(scores.magic.length ? { additivity: additivity(scores.magic) } : {}),
    setting: {
      base: "tiny Llama (random weights): hidden 64, 2 layers, 4/2 heads, byte tokens",
      lora: "rank 4, alpha 8, q/k/v/o",
      params: grads.blocks.reduce((s, b) => s + b, 0),
      data: "SpamAssassin subjects as `subject>label`, loss on the answer byte",
      trainRows: nTrain,
      testAnswers: nTest,
      training: `${STEPS} full-batch AdamW steps, lr 5e-3 cosine${warmupSteps > 0 ? ` after ${warmupSteps} linear warm-up steps` : ""}, weight decay 0.1, eps ${adamEps}, seed ${trainSeed}`,
      seed: trainSeed,
      warmupSteps,
      ldsSubsets: subsets,
      ldsSubsetFraction: 0.5,
      ldsDrop: {
        rows: dropRows,
        fraction: Number((dropRows / nTrain).toFixed(4)),
        count: dropCount,
        bootstrapDraws: BOOTSTRAP_DRAWS,
        ...(dropWeight > 0 ? { weight: dropWeight } : {}),
      },
      ...(withMeta && !dropOnly ? { ldsKeep90SubsetFraction: SMALL_DROP_KEEP } : {}),
      looRows,
      flippedRows: flipped.filter(Boolean).length,
      estimators,
      dropOnly,
    },
    heldOutAnswerLoss: {
      base: r4(baseLoss.reduce((s, v) => s + v, 0) / nTest),
      trained: r4(fullLoss.reduce((s, v) => s + v, 0) / nTest),
    },
    seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
  };
}

function toRowFlipped(r: Row): Row {
  const tokens = [...r.tokens];
  tokens[r.answerAt] = LABEL_BYTES[1 - r.label]!;
  return { tokens, answerAt: r.answerAt, label: 1 - r.label };
}

/** The estimators' figures as console.table rows (the drop-protocol LDS as "lds [95% CI]"). */
export function loraInfluenceTable(r: LoraInfluenceResult): Record<string, Record<string, unknown>> {
  const row = ({ ldsDrop, ...rest }: PeerFigures | (LoraInfluenceFigures & { ldsDrop: DropLds })) => ({
    ...rest,
    ldsDrop: `${ldsDrop.lds} [${ldsDrop.ci95[0]}, ${ldsDrop.ci95[1]}]`,
  });
  return {
    "damped Fisher (signed)": row({
      lds: r.lds,
      looSpearman: r.looSpearman,
      mislabelAuc: r.mislabelAuc,
      ...(r.ldsKeep90 !== undefined ? { ldsKeep90: r.ldsKeep90 } : {}),
      msPerAnswer: r.msPerAnswer,
      rows: r.rows,
      ldsDrop: r.ldsDrop,
    }),
    DataInf: row(r.peers.datainf),
    "Grad-Dot": row(r.peers.gradDot),
    ...(r.peers.magic ? { "metagradient (exact, MAGIC-style)": row(r.peers.magic) } : {}),
    ...(r.peers.unrolled ? { "metagradient, unrolled first-order": row(r.peers.unrolled) } : {}),
    ...(r.peers.refined ? { "Fisher + Hessian refinement": row(r.peers.refined) } : {}),
  };
}

/** `--name value` as a number, or undefined when absent (refuses a value that is not a number). */
function numberArg(name: string): number | undefined {
  const at = process.argv.indexOf(name);
  if (at < 0) return undefined;
  const v = Number(process.argv[at + 1]);
  if (!Number.isFinite(v)) throw new Error(`${name} needs a number`);
  return v;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = new Set(process.argv.slice(2));
  const numeric: Record<string, keyof MeasureOptions> = {
    "--adam-eps": "adamEps",
    "--warmup": "warmupFraction",
    "--rows": "rows",
    "--answers": "answers",
    "--lds-drop": "ldsDrop",
    "--lds-count": "ldsCount",
    "--seed": "seed",
    "--proj-k": "projK",
    "--drop-weight": "dropWeight",
  };
  const given = Object.entries(numeric).flatMap(([flag, key]) => {
    const v = numberArg(flag);
    return v === undefined ? [] : [[key, v] as const];
  });
  const r = await measureLoraInfluence(
    args.has("--quick"),
    (m) => process.stderr.write(`[bench:lora-influence] ${m}\n`),
    {
      metagradients: !args.has("--no-metagradients"),
      medium: args.has("--medium"),
      magicAuc: args.has("--magic-auc"),
      dropOnly: args.has("--drop-only"),
      ...(process.argv.includes("--proj-bases")
        ? {
            projBases: process.argv[process.argv.indexOf("--proj-bases") + 1]!.split(
              ",",
            ) as ProjectionBasis[],
          }
        : {}),
      ...Object.fromEntries(given),
    },
  );
  if (args.has("--json")) process.stdout.write(`${JSON.stringify({ loraInfluence: r })}\n`);
  else {
    console.table(loraInfluenceTable(r));
    if (r.projected)
      console.table(
        r.projected.map(({ ldsDrop, withFisherResidual: h, ...rest }) => ({
          ...rest,
          ldsDrop: `${ldsDrop.lds} [${ldsDrop.ci95[0]}, ${ldsDrop.ci95[1]}]`,
          "ldsDrop + Fisher residual": `${h.ldsDrop.lds} [${h.ldsDrop.ci95[0]}, ${h.ldsDrop.ci95[1]}]`,
        })),
      );
    console.log(r);
  }
}
