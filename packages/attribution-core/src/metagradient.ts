/**
 * Exact metagradients of an answer's loss through a deterministic AdamW training run (MAGIC,
 * Ilyas & Engstrom 2025: "exact metagradients through training"), for data attribution: how the
 * answer's loss after training changes when one training row's weight in the objective changes.
 *
 * The run: L_train(θ; w) = Σ_i w_i ℓ_i(θ), and for t = 0..T-1, with g_t = ∇L_train(θ_t),
 *   s_t = c / (‖g_t‖ + 1e-6) if ‖g_t‖ > c else 1          (global-norm clipping, c = clipNorm)
 *   ĝ = s_t g_t,  m' = β1 m + (1−β1) ĝ,  v' = β2 v + (1−β2) ĝ²
 *   θ_{t+1} = (1 − η_t λ) θ_t − η_t (m'/bc1) / (√(v'/bc2) + ε)   (bc_k = 1 − β_k^{t+1})
 * — model-runtime's `Trainer.trainStep`, PyTorch's update order. The answer's loss L(θ_T) depends
 * on w only through the g_t (∂g_t/∂w_i = ∇ℓ_i(θ_t)), so one reverse pass gives every row at once:
 * starting from θ̄_T = ∇L(θ_T), m̄_T = v̄_T = 0, for t = T−1..0
 *   M̄ = m̄ + θ̄ ∂θ'/∂m',  V̄ = v̄ + θ̄ ∂θ'/∂v'            (elementwise)
 *   ĝ̄ = (1−β1) M̄ + 2(1−β2) ĝ V̄,  m̄ ← β1 M̄,  v̄ ← β2 V̄
 *   ḡ = s ĝ̄ − c (ĝ̄·g) g / ((‖g‖ + 1e-6)² ‖g‖)   (only while clipping is active)
 *   ∂L/∂w_i += ḡ · ∇ℓ_i(θ_t)
 *   θ̄ ← (1 − η_t λ) θ̄ + H_t ḡ                     (H_t = ∇²L_train(θ_t): one Hessian-vector product)
 * The Hessian-vector products are the caller's (model-runtime: central differences of the training
 * graph's gradient); everything else here is elementwise float64 on the recorded float32 state, in a
 * fixed order (deterministic given the same HVP bits). Passing no HVP gives the "unrolled
 * first-order" variant (TracIn through Adam's preconditioner and momentum, no curvature), whose gap to
 * the exact one measures what the curvature term is worth.
 *
 * Rows are weighted multiplicatively: `rowGrads` holds each row's term w_i ∇ℓ_i of the batch gradient
 * (what the training graph's per-example outputs are), so the result is ∂L/∂ log w_i — the change of
 * the answer's loss per relative change of row i's weight — and a row with weight 0 has no
 * metagradient (it is not in the run). For uniform weights this is ∂L/∂w_i times a constant.
 */

/** AdamW settings of the run, defaults resolved (model-runtime's `resolveOptimizer`). */
export interface AdamWHyperparameters {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global-norm clipping threshold; 0 = off. */
  clipNorm: number;
}

/** One recorded optimizer step (flat vectors in the trainer's parameter order). */
export interface RecordedStep {
  /** The optimizer's 0-based step count (sets Adam's bias corrections). */
  step: number;
  /** Learning rate of this step. */
  lr: number;
  /** Parameters and Adam moments before the step, as the trainer stored them. */
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  /** The training objective's gradient at `params`, before clipping. */
  grad: Float32Array;
  /** rows × dim, row-major: row i's term w_i ∇ℓ_i(params) of `grad`. */
  rowGrads: Float32Array;
}

export interface TrainingTape {
  hyper: AdamWHyperparameters;
  /** Training rows (the rows of every `rowGrads`). */
  rows: number;
  dim: number;
  /** Consecutive steps in order; the first one's parameters are the run's start (data-independent). */
  steps: RecordedStep[];
}

/** H_t v: the training objective's Hessian at the parameters of `tape.steps[index]` times v (length dim). */
export type HessianVectorProduct = (index: number, v: Float64Array) => Promise<Float64Array>;

export interface MetagradientOptions {
  /** The curvature term; null = unrolled first-order (no Hessian-vector products). */
  hvp: HessianVectorProduct | null;
  /**
   * Keep the adjoint through Adam's second moment (default true). false exists only for ablation
   * checks: it is wrong, and the test against retraining must notice.
   */
  secondMomentAdjoint?: boolean;
  /** Called after each reverse step with (steps done, steps). */
  onStep?: (done: number, total: number) => void;
}

/**
 * A recorded step's scalars, recomputed exactly as the trainer computed them: the gradient's norm, the
 * clipping scale and Adam's bias corrections.
 */
export function stepScalars(
  hyper: AdamWHyperparameters,
  s: RecordedStep,
): { norm: number; clipped: boolean; gScale: number; bc1: number; bc2: number } {
  const g = s.grad;
  let sq = 0;
  for (let j = 0; j < g.length; j++) sq += g[j]! * g[j]!;
  const norm = Math.sqrt(sq);
  const clipped = hyper.clipNorm > 0 && norm > hyper.clipNorm;
  const k = s.step + 1;
  return {
    norm,
    clipped,
    gScale: clipped ? hyper.clipNorm / (norm + 1e-6) : 1,
    bc1: 1 - hyper.beta1 ** k,
    bc2: 1 - hyper.beta2 ** k,
  };
}

/**
 * τ_i = −∂L(θ_T)/∂ log w_i for every training row of the tape: positive when up-weighting row i
 * lowers the answer's loss (the sign convention of `loraInfluenceScores`). `answerGrad` = ∇L(θ_T),
 * the answer's loss gradient at the trained parameters (length dim). T − 1 calls of `options.hvp`
 * (none for step 0: θ_0 does not depend on the data).
 */
export async function adamwMetagradientInfluence(
  tape: TrainingTape,
  answerGrad: ArrayLike<number>,
  options: MetagradientOptions,
): Promise<Float64Array> {
  const { rows: n, dim, steps, hyper } = tape;
  if (answerGrad.length !== dim) throw new RangeError("answer gradient length differs from the tape's dim");
  for (const s of steps) {
    if (
      s.params.length !== dim ||
      s.m.length !== dim ||
      s.v.length !== dim ||
      s.grad.length !== dim ||
      s.rowGrads.length !== n * dim
    ) {
      throw new RangeError("a recorded step's sizes differ from the tape's rows × dim");
    }
  }
  const { beta1: b1, beta2: b2, eps, weightDecay: wd, clipNorm: clip } = hyper;
  const keepV = options.secondMomentAdjoint ?? true;
  const thetaBar = Float64Array.from(answerGrad);
  const mBar = new Float64Array(dim);
  const vBar = new Float64Array(dim);
  const gHatBar = new Float64Array(dim);
  const meta = new Float64Array(n);
  for (let t = steps.length - 1; t >= 0; t--) {
    const s = steps[t]!;
    const g = s.grad;
    const { norm, clipped, gScale, bc1, bc2 } = stepScalars(hyper, s);
    const lr = s.lr;
    const decay = 1 - lr * wd;
    let dotGHatBarG = 0;
    for (let j = 0; j < dim; j++) {
      const gh = g[j]! * gScale;
      const mi = b1 * s.m[j]! + (1 - b1) * gh;
      const vi = b2 * s.v[j]! + (1 - b2) * gh * gh;
      const r = Math.sqrt(vi / bc2);
      const den = r + eps;
      const tb = thetaBar[j]!;
      const mTot = mBar[j]! - (tb * lr) / (bc1 * den);
      // ∂θ'/∂v' = η (m'/bc1) / den² · 1/(2 r bc2); at v' = 0 (a coordinate that never had a gradient) m' = 0 too.
      const vTot = vBar[j]! + (r > 0 ? (tb * lr * (mi / bc1)) / (den * den * 2 * r * bc2) : 0);
      const ghb = (1 - b1) * mTot + (keepV ? 2 * (1 - b2) * gh * vTot : 0);
      gHatBar[j] = ghb;
      dotGHatBarG += ghb * g[j]!;
      mBar[j] = b1 * mTot;
      vBar[j] = keepV ? b2 * vTot : 0;
      thetaBar[j] = decay * tb;
    }
    // ḡ: through the clipping scale (it depends on g via ‖g‖).
    const gBar = gHatBar;
    if (clipped) {
      const c = (clip * dotGHatBarG) / ((norm + 1e-6) * (norm + 1e-6) * norm);
      for (let j = 0; j < dim; j++) gBar[j] = gScale * gHatBar[j]! - c * g[j]!;
    }
    const rg = s.rowGrads;
    for (let i = 0; i < n; i++) {
      const at = i * dim;
      let d = 0;
      for (let j = 0; j < dim; j++) d += gBar[j]! * rg[at + j]!;
      meta[i] = meta[i]! + d;
    }
    if (options.hvp && t > 0) {
      const hv = await options.hvp(t, gBar);
      if (hv.length !== dim) throw new RangeError("Hessian-vector product has the wrong length");
      for (let j = 0; j < dim; j++) thetaBar[j] = thetaBar[j]! + hv[j]!;
    }
    options.onStep?.(steps.length - t, steps.length);
  }
  for (let i = 0; i < n; i++) meta[i] = -meta[i]!;
  return meta;
}
