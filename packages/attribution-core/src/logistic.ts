/**
 * Multinomial logistic regression over sparse (hashed) features, trained by full Newton's
 * method, plus exact influence functions (Koh & Liang 2017).
 *
 * Parametrization: class 0 is the reference (logit 0); classes 1..C-1 own a weight row of
 * D features + 1 bias, so the parameter dimension is P = (C-1)(D+1) (P = D+1 for binary
 * problems — plain logistic regression). Objective: F(θ) = Σ_i -log p_i[y_i] + λ/2 ||θ||²
 * (the bias is regularized too, which keeps H positive definite without special cases).
 *
 * Determinism: loops run in a fixed order, exp/log are the deterministic det-math versions,
 * and only IEEE-754 basic operations are used, so training, the Hessian, its Cholesky
 * factor and every influence score are bit-identical across machines. Influence values are
 * then quantized to integers (`quantize`) before anything is summed into money weights.
 */
import { detExp, detExpm1, detLog, detLog1p } from "./det-math.ts";
import { type CsrMatrix, csrRow, type SparseVector } from "./features.ts";

export interface LogisticModel {
  dim: number;
  classes: number;
  lambda: number;
  /** (C-1) rows of D+1 (last entry = bias); row k holds the logits of class k+1. */
  weights: Float64Array;
}

export function paramCount(dim: number, classes: number): number {
  return (classes - 1) * (dim + 1);
}

/** Class probabilities of one sparse row (softmax with the reference logit 0). */
export function predictProba(
  model: LogisticModel,
  x: SparseVector,
  out = new Float64Array(model.classes),
): Float64Array {
  const { dim, classes, weights } = model;
  const d1 = dim + 1;
  let max = 0;
  for (let k = 1; k < classes; k++) {
    const base = (k - 1) * d1;
    let z = weights[base + dim]!;
    for (let i = 0; i < x.indices.length; i++) z += weights[base + x.indices[i]!]! * x.values[i]!;
    out[k] = z;
    if (z > max) max = z;
  }
  let sum = detExp(-max);
  out[0] = sum;
  for (let k = 1; k < classes; k++) {
    const e = detExp(out[k]! - max);
    out[k] = e;
    sum += e;
  }
  for (let k = 0; k < classes; k++) out[k] = out[k]! / sum;
  return out;
}

/** -log p[y] computed from the logits (stable for confident predictions). */
export function rowLoss(model: LogisticModel, x: SparseVector, y: number): number {
  const { dim, classes, weights } = model;
  const d1 = dim + 1;
  const z = new Float64Array(classes);
  let max = 0;
  for (let k = 1; k < classes; k++) {
    const base = (k - 1) * d1;
    let v = weights[base + dim]!;
    for (let i = 0; i < x.indices.length; i++) v += weights[base + x.indices[i]!]! * x.values[i]!;
    z[k] = v;
    if (v > max) max = v;
  }
  let s = 0;
  for (let k = 0; k < classes; k++) s += detExp(z[k]! - max);
  return max + detLog(s) - z[y]!;
}

/** Smallest class with the highest probability. */
export function argmax(p: ArrayLike<number>): number {
  let best = 0;
  for (let k = 1; k < p.length; k++) if (p[k]! > p[best]!) best = k;
  return best;
}

// ---------------------------------------------------------------------------------------
// Dense linear algebra (row-major P×P, lower triangle)
// ---------------------------------------------------------------------------------------

/** In-place Cholesky A = L Lᵀ of the lower triangle of a row-major SPD matrix. */
export function choleskyInPlace(a: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let d = a[rj + j]!;
    for (let k = 0; k < j; k++) d -= a[rj + k]! * a[rj + k]!;
    if (!(d > 0)) throw new Error(`matrix not positive definite at pivot ${j}`);
    const ljj = Math.sqrt(d);
    a[rj + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j]!;
      for (let k = 0; k < j; k++) s -= a[ri + k]! * a[rj + k]!;
      a[ri + j] = s / ljj;
    }
  }
}

/** Solve L Lᵀ x = b with a Cholesky factor; returns a new vector. */
export function choleskySolve(l: Float64Array, n: number, b: ArrayLike<number>): Float64Array {
  const x = Float64Array.from(b as ArrayLike<number>);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    let s = x[i]!;
    for (let k = 0; k < i; k++) s -= l[ri + k]! * x[k]!;
    x[i] = s / l[ri + i]!;
  }
  for (let i = n - 1; i >= 0; i--) {
    const ri = i * n;
    const xi = x[i]! / l[ri + i]!;
    x[i] = xi;
    for (let k = 0; k < i; k++) x[k] = x[k]! - l[ri + k]! * xi;
  }
  return x;
}

// ---------------------------------------------------------------------------------------
// Objective, gradient, Hessian
// ---------------------------------------------------------------------------------------

/** Per-row residuals r_i[k] = p_i[k+1] - [y_i = k+1] and probabilities p_i. */
function forEachRow(
  model: LogisticModel,
  x: CsrMatrix,
  fn: (r: number, row: SparseVector, p: Float64Array) => void,
  skip = -1,
): void {
  const p = new Float64Array(model.classes);
  for (let r = 0; r < x.rows; r++) {
    if (r === skip) continue;
    const row = csrRow(x, r);
    predictProba(model, row, p);
    fn(r, row, p);
  }
}

/**
 * forEachRow with the row's indices and values extended by the bias (index D, value 1, the
 * largest index): x̃_i as `idx[0..s)`, `val[0..s)` in reusable buffers.
 */
function forEachRowWithBias(
  model: LogisticModel,
  x: CsrMatrix,
  fn: (r: number, idx: Int32Array, val: Float64Array, s: number, p: Float64Array) => void,
  skip = -1,
): void {
  let idx = new Int32Array(64);
  let val = new Float64Array(64);
  forEachRow(
    model,
    x,
    (r, row, p) => {
      const s = row.indices.length + 1;
      if (idx.length < s) {
        idx = new Int32Array(2 * s);
        val = new Float64Array(2 * s);
      }
      idx.set(row.indices);
      val.set(row.values);
      idx[s - 1] = model.dim;
      val[s - 1] = 1;
      fn(r, idx, val, s, p);
    },
    skip,
  );
}

export interface ObjectiveParts {
  value: number;
  gradient: Float64Array;
}

/** F(θ) and ∇F(θ); `skip` leaves one row out (leave-one-out retraining). */
export function objective(model: LogisticModel, x: CsrMatrix, y: Int32Array, skip = -1): ObjectiveParts {
  const { dim, classes, weights, lambda } = model;
  const d1 = dim + 1;
  const g = new Float64Array(weights.length);
  let value = 0;
  forEachRow(
    model,
    x,
    (r, row, p) => {
      const yr = y[r]!;
      value -= detLog(p[yr]! > 0 ? p[yr]! : Number.MIN_VALUE);
      for (let k = 1; k < classes; k++) {
        const res = p[k]! - (yr === k ? 1 : 0);
        const base = (k - 1) * d1;
        for (let i = 0; i < row.indices.length; i++) g[base + row.indices[i]!]! += res * row.values[i]!;
        g[base + dim]! += res;
      }
    },
    skip,
  );
  let sq = 0;
  for (let j = 0; j < weights.length; j++) {
    sq += weights[j]! * weights[j]!;
    g[j]! += lambda * weights[j]!;
  }
  return { value: value + 0.5 * lambda * sq, gradient: g };
}

/** Lower triangle of H = Σ_i (diag p_i - p_i p_iᵀ) ⊗ x̃_i x̃_iᵀ + λI (row-major P×P). */
export function hessian(model: LogisticModel, x: CsrMatrix, skip = -1): Float64Array {
  const { dim, classes, lambda } = model;
  const d1 = dim + 1;
  const P = paramCount(dim, classes);
  const h = new Float64Array(P * P);
  const C1 = classes - 1;
  const a = new Float64Array(C1 * C1);
  forEachRowWithBias(
    model,
    x,
    (_r, idx, val, s, p) => {
      for (let k = 0; k < C1; k++) {
        for (let l = 0; l < C1; l++) a[k * C1 + l] = (k === l ? p[k + 1]! : 0) - p[k + 1]! * p[l + 1]!;
      }
      for (let k = 0; k < C1; k++) {
        for (let l = 0; l <= k; l++) {
          const akl = a[k * C1 + l]!;
          const colBase = l * d1;
          for (let u = 0; u < s; u++) {
            const rowOff = (k * d1 + idx[u]!) * P + colBase;
            const c = akl * val[u]!;
            const vEnd = k === l ? u + 1 : s;
            for (let v = 0; v < vEnd; v++) h[rowOff + idx[v]!]! += c * val[v]!;
          }
        }
      }
    },
    skip,
  );
  for (let j = 0; j < P; j++) h[j * P + j]! += lambda;
  return h;
}

// ---------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------

export interface TrainOptions {
  classes: number;
  /** L2 strength λ. Default 1. */
  lambda?: number;
  /** Stop when max |∇F| <= tolerance. Default 1e-9. */
  tolerance?: number;
  maxIterations?: number;
  /** Warm start (e.g. the full model when retraining without a row). */
  init?: Float64Array;
  /** Leave this row out of the objective. */
  skipRow?: number;
  onProgress?: (info: { iteration: number; gradMax: number; objective: number }) => void;
}

export interface TrainResult {
  model: LogisticModel;
  iterations: number;
  gradMax: number;
  objective: number;
}

function maxAbs(v: Float64Array): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) {
    const a = Math.abs(v[i]!);
    if (a > m) m = a;
  }
  return m;
}

/**
 * Newton's method with Armijo backtracking: each iteration builds the exact Hessian and
 * solves by Cholesky. Quadratic convergence makes the result independent of small
 * round-off differences in the path (every validator runs the same code anyway).
 */
export function trainLogistic(x: CsrMatrix, y: Int32Array, options: TrainOptions): TrainResult {
  const { classes } = options;
  if (classes < 2) throw new RangeError("need at least 2 classes");
  if (y.length !== x.rows) throw new RangeError("labels and rows differ in length");
  for (let r = 0; r < y.length; r++) {
    if (!(y[r]! >= 0 && y[r]! < classes))
      throw new RangeError(`label ${y[r]} of row ${r} outside [0, ${classes})`);
  }
  const lambda = options.lambda ?? 1;
  if (!(lambda > 0)) throw new RangeError("lambda must be > 0");
  const tol = options.tolerance ?? 1e-9;
  const maxIt = options.maxIterations ?? 50;
  const skip = options.skipRow ?? -1;
  const P = paramCount(x.dim, classes);
  const model: LogisticModel = {
    dim: x.dim,
    classes,
    lambda,
    weights: options.init ? Float64Array.from(options.init) : new Float64Array(P),
  };
  let cur = objective(model, x, y, skip);
  let it = 0;
  for (; it < maxIt; it++) {
    const gm = maxAbs(cur.gradient);
    options.onProgress?.({ iteration: it, gradMax: gm, objective: cur.value });
    if (gm <= tol) break;
    const h = hessian(model, x, skip);
    choleskyInPlace(h, P);
    const step = choleskySolve(h, P, cur.gradient);
    let slope = 0;
    for (let j = 0; j < P; j++) slope += cur.gradient[j]! * step[j]!;
    const start = model.weights;
    let t = 1;
    let accepted = false;
    for (let ls = 0; ls < 40; ls++) {
      const trial = new Float64Array(P);
      for (let j = 0; j < P; j++) trial[j] = start[j]! - t * step[j]!;
      model.weights = trial;
      const next = objective(model, x, y, skip);
      if (next.value <= cur.value - 1e-4 * t * slope || maxAbs(next.gradient) < gm * 0.5) {
        cur = next;
        accepted = true;
        break;
      }
      t *= 0.5;
    }
    if (!accepted) {
      model.weights = start;
      break; // at the floating-point floor: no representable descent left
    }
  }
  return { model, iterations: it, gradMax: maxAbs(cur.gradient), objective: cur.value };
}

/**
 * Leave-one-out retraining warm-started at the full optimum, iterating
 * θ <- θ - H⁻¹ ∇F₋ᵢ(θ) with the full model's Cholesky factor until max |∇F₋ᵢ| <= tolerance.
 * The fixed point is exactly the LOO optimum (the gradient of the LOO objective vanishes);
 * H only preconditions the iteration, so convergence is linear and fast because H₋ᵢ ≈ H.
 * Falls back to full Newton if it stalls.
 */
export function retrainWithout(
  influence: InfluenceModel,
  y: Int32Array,
  row: number,
  tolerance = 1e-10,
  maxIterations = 200,
): LogisticModel {
  const { model, cholesky, x } = influence;
  const P = model.weights.length;
  const m: LogisticModel = { ...model, weights: Float64Array.from(model.weights) };
  for (let it = 0; it < maxIterations; it++) {
    const { gradient } = objective(m, x, y, row);
    if (maxAbs(gradient) <= tolerance) return m;
    const step = choleskySolve(cholesky, P, gradient);
    for (let j = 0; j < P; j++) m.weights[j] = m.weights[j]! - step[j]!;
  }
  return trainLogistic(x, y, {
    classes: model.classes,
    lambda: model.lambda,
    init: m.weights,
    skipRow: row,
    tolerance,
  }).model;
}

// ---------------------------------------------------------------------------------------
// Influence
// ---------------------------------------------------------------------------------------

export interface InfluenceModel {
  model: LogisticModel;
  x: CsrMatrix;
  /** Lower Cholesky factor of the Hessian at the optimum (row-major P×P). */
  cholesky: Float64Array;
  /** Training residuals r_i[k] = p_i[k+1] - [y_i = k+1], rows × (C-1). g_i = r_i ⊗ x̃_i. */
  residuals: Float64Array;
  /**
   * Per-row kernel blocks M_i = J_i H⁻¹ J_iᵀ (rows × (C-1)², row-major), J_i = I ⊗ x̃_iᵀ: the
   * row's leverage lives here (binary: leverage_i = p_i(1-p_i)·M_i). Derived from the fields
   * above by `looCorrection` (deterministic), never stored in the model file.
   */
  kernel: Float64Array;
  /**
   * Leave-one-out residuals r̃_i = (I - A_i M_i)⁻¹ r_i, rows × (C-1), A_i = diag p_i - p_i p_iᵀ:
   * one Newton step from θ̂ on the objective without row i moves θ by H⁻¹ J_iᵀ r̃_i exactly
   * (Sherman-Morrison-Woodbury on H₋ᵢ = H - J_iᵀ A_i J_i). The first-order step uses r_i.
   */
  looResiduals: Float64Array;
}

/**
 * Dense H⁻¹ (full, row-major P×P) from the Cholesky factor, one solve per unit vector in a
 * fixed order. P³ work: done once per model (at training or load), never per inference.
 */
export function inverseFromCholesky(l: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  const e = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    e.fill(0);
    e[j] = 1;
    inv.set(choleskySolve(l, n, e), j * n);
  }
  return inv;
}

/**
 * Solve the small (C-1)×(C-1) system B z = r in place (Gaussian elimination, partial pivoting
 * by a fixed rule: first largest |pivot|). B = I - A M has eigenvalues in (0, 1] (A M is
 * similar to a PSD matrix whose eigenvalues are leverages < 1), so it is never singular.
 */
function solveSmall(b: Float64Array, r: Float64Array, n: number): void {
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let i = c + 1; i < n; i++) if (Math.abs(b[i * n + c]!) > Math.abs(b[piv * n + c]!)) piv = i;
    if (piv !== c) {
      for (let j = 0; j < n; j++) {
        const t = b[c * n + j]!;
        b[c * n + j] = b[piv * n + j]!;
        b[piv * n + j] = t;
      }
      const t = r[c]!;
      r[c] = r[piv]!;
      r[piv] = t;
    }
    const d = b[c * n + c]!;
    for (let i = c + 1; i < n; i++) {
      const f = b[i * n + c]! / d;
      if (f === 0) continue;
      for (let j = c; j < n; j++) b[i * n + j] = b[i * n + j]! - f * b[c * n + j]!;
      r[i] = r[i]! - f * r[c]!;
    }
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = r[i]!;
    for (let j = i + 1; j < n; j++) s -= b[i * n + j]! * r[j]!;
    r[i] = s / b[i * n + i]!;
  }
}

/**
 * Kernel blocks and leave-one-out residuals of every training row (see `InfluenceModel`):
 * H⁻¹ once (P³), then per row a sparse quadratic form per class pair, ~C(C-1)/2·nnz², and a
 * (C-1)×(C-1) solve — about the work of two Newton iterations of training (each builds H:
 * rows·(C-1)²·nnz²/2 + P³/3). A pure function of the model, its training rows and its Cholesky factor,
 * so a model file decoded by a validator yields the same bits as the model it was encoded from.
 */
export function looCorrection(
  model: LogisticModel,
  x: CsrMatrix,
  cholesky: Float64Array,
  residuals: Float64Array,
): { kernel: Float64Array; looResiduals: Float64Array } {
  const P = paramCount(model.dim, model.classes);
  const d1 = model.dim + 1;
  const C1 = model.classes - 1;
  const hinv = inverseFromCholesky(cholesky, P);
  const kernel = new Float64Array(x.rows * C1 * C1);
  const looResiduals = new Float64Array(x.rows * C1);
  const b = new Float64Array(C1 * C1);
  const a = new Float64Array(C1 * C1);
  const r = new Float64Array(C1);
  forEachRowWithBias(model, x, (row, idx, val, s, p) => {
    const kb = row * C1 * C1;
    for (let k = 0; k < C1; k++) {
      // Diagonal block: x̃ᵀ(H⁻¹)_kk x̃ = Σ_u x_u (h_uu x_u + 2 Σ_{v<u} h_uv x_v), half the work.
      let q = 0;
      for (let u = 0; u < s; u++) {
        const off = (k * d1 + idx[u]!) * P + k * d1;
        let t = 0;
        for (let v = 0; v < u; v++) t += hinv[off + idx[v]!]! * val[v]!;
        q += val[u]! * (hinv[off + idx[u]!]! * val[u]! + 2 * t);
      }
      kernel[kb + k * C1 + k] = q;
      // Off-diagonal blocks: M_i is symmetric ((H⁻¹)_lk = (H⁻¹)_klᵀ), computed once per pair.
      for (let l = 0; l < k; l++) {
        let m = 0;
        for (let u = 0; u < s; u++) {
          const off = (k * d1 + idx[u]!) * P + l * d1;
          let t = 0;
          for (let v = 0; v < s; v++) t += hinv[off + idx[v]!]! * val[v]!;
          m += val[u]! * t;
        }
        kernel[kb + k * C1 + l] = m;
        kernel[kb + l * C1 + k] = m;
      }
    }
    for (let k = 0; k < C1; k++)
      for (let l = 0; l < C1; l++) a[k * C1 + l] = (k === l ? p[k + 1]! : 0) - p[k + 1]! * p[l + 1]!;
    // B = I - A M
    for (let k = 0; k < C1; k++) {
      for (let l = 0; l < C1; l++) {
        let am = 0;
        for (let j = 0; j < C1; j++) am += a[k * C1 + j]! * kernel[kb + j * C1 + l]!;
        b[k * C1 + l] = (k === l ? 1 : 0) - am;
      }
      r[k] = residuals[row * C1 + k]!;
    }
    solveSmall(b, r, C1);
    looResiduals.set(r, row * C1);
  });
  return { kernel, looResiduals };
}

/** Factor the Hessian once, store per-row residuals (the training gradients' factors) and the leave-one-out correction. */
export function prepareInfluence(model: LogisticModel, x: CsrMatrix, y: Int32Array): InfluenceModel {
  const P = paramCount(model.dim, model.classes);
  const h = hessian(model, x);
  choleskyInPlace(h, P);
  const C1 = model.classes - 1;
  const residuals = new Float64Array(x.rows * C1);
  forEachRow(model, x, (r, _row, p) => {
    for (let k = 0; k < C1; k++) residuals[r * C1 + k] = p[k + 1]! - (y[r] === k + 1 ? 1 : 0);
  });
  return { model, x, cholesky: h, residuals, ...looCorrection(model, x, h, residuals) };
}

/** Dense gradient of -log p[label] at a (test) row: (p - e_label) ⊗ x̃. */
export function lossGradient(model: LogisticModel, row: SparseVector, label: number): Float64Array {
  const { dim, classes } = model;
  const d1 = dim + 1;
  const p = predictProba(model, row);
  const g = new Float64Array(paramCount(dim, classes));
  for (let k = 1; k < classes; k++) {
    const res = p[k]! - (label === k ? 1 : 0);
    const base = (k - 1) * d1;
    for (let i = 0; i < row.indices.length; i++) g[base + row.indices[i]!] = res * row.values[i]!;
    g[base + dim] = res;
  }
  return g;
}

/** vᵀ g_i for every training row i, with g_i = r_i ⊗ x̃_i (one pass over the rows). */
function dotTrainGradients(inf: InfluenceModel, v: Float64Array): Float64Array {
  const { model, x, residuals } = inf;
  const { dim } = model;
  const d1 = dim + 1;
  const C1 = model.classes - 1;
  const out = new Float64Array(x.rows);
  const { rowPtr, indices, values } = x;
  for (let r = 0; r < x.rows; r++) {
    const a = rowPtr[r]!;
    const b = rowPtr[r + 1]!;
    let s = 0;
    for (let k = 0; k < C1; k++) {
      const base = k * d1;
      let dot = v[base + dim]!;
      for (let i = a; i < b; i++) dot += v[base + indices[i]!]! * values[i]!;
      s += residuals[r * C1 + k]! * dot;
    }
    out[r] = s;
  }
  return out;
}

/**
 * Influence of every training row on the loss of `label` at test row `row`:
 *   score_i = g_tᵀ H⁻¹ g_i  =  -(dL_t/dε_i),
 * the first-order INCREASE of the test loss if row i were removed (equivalently the
 * decrease from up-weighting it). Koh & Liang's I_up,loss = -g_tᵀH⁻¹g_i is this with the
 * opposite sign; we flip it so that positive = helpful = earns. One Cholesky solve plus one
 * pass over the training rows.
 */
export function influenceScores(inf: InfluenceModel, row: SparseVector, label: number): Float64Array {
  const P = inf.model.weights.length;
  const v = choleskySolve(inf.cholesky, P, lossGradient(inf.model, row, label));
  return dotTrainGradients(inf, v);
}

/**
 * Leave-one-out influence of every training row on the loss of `label` at test row `row`:
 *   score_i = L_t(θ̂ + Δ_i) - L_t(θ̂),  Δ_i = H₋ᵢ⁻¹ g_i = H⁻¹ J_iᵀ r̃_i,
 * the test-loss increase if row i were removed and the model retrained, with the retraining
 * approximated by one Newton step from θ̂ (the approximate leave-one-out of Pregibon 1981 /
 * Rad & Maleki 2020) and the test loss evaluated exactly at the stepped parameters.
 *
 * Why not `influenceScores`: the first-order score g_tᵀH⁻¹g_i uses the Hessian *with* row i,
 * so it under-states a row's effect by its leverage (binary: by 1 - leverage_i, through
 * r̃_i = r_i / (1 - p_i(1-p_i)M_i)), and linearizes the test loss. The under-statement is
 * largest for exactly the rows that are paid most (bench/RESULTS.md: top rows' median ratio
 * to retrained leave-one-out).
 *
 * Cost per inference: C-1 Cholesky solves (binary: one, as first-order) and per training row
 * (C-1)² sparse dot products plus one detExpm1 per class and one detLog1p; r̃ is precomputed.
 * Same sign as the first-order score for binary models; deterministic (det-math only).
 */
export function looInfluenceScores(inf: InfluenceModel, row: SparseVector, label: number): Float64Array {
  const { model, x, cholesky, looResiduals } = inf;
  const { dim, classes } = model;
  const d1 = dim + 1;
  const C1 = classes - 1;
  const P = paramCount(dim, classes);
  const p = predictProba(model, row);
  // V_k = H⁻¹ (e_k ⊗ x̃_t): how the test logit of class k+1 moves per unit parameter step.
  const vs: Float64Array[] = [];
  const rhs = new Float64Array(P);
  for (let k = 0; k < C1; k++) {
    rhs.fill(0);
    const base = k * d1;
    for (let i = 0; i < row.indices.length; i++) rhs[base + row.indices[i]!] = row.values[i]!;
    rhs[base + dim] = 1;
    vs.push(choleskySolve(cholesky, P, rhs));
  }
  const out = new Float64Array(x.rows);
  const dz = new Float64Array(C1);
  const { rowPtr, indices, values } = x;
  for (let r = 0; r < x.rows; r++) {
    const a = rowPtr[r]!;
    const b = rowPtr[r + 1]!;
    let maxAbsDz = 0;
    for (let k = 0; k < C1; k++) {
      const v = vs[k]!;
      let z = 0;
      for (let l = 0; l < C1; l++) {
        const base = l * d1;
        let dot = v[base + dim]!;
        for (let i = a; i < b; i++) dot += v[base + indices[i]!]! * values[i]!;
        z += dot * looResiduals[r * C1 + l]!;
      }
      dz[k] = z;
      if (Math.abs(z) > maxAbsDz) maxAbsDz = Math.abs(z);
    }
    out[r] = testLossChange(p, dz, label, maxAbsDz);
  }
  return out;
}

/**
 * L(z + dz) - L(z) for L = logsumexp(0, z_1..z_{C-1}) - z_label, given p = softmax(z):
 * log Σ_k p_k e^{dz_k} - dz_label (dz_0 = 0). Small steps use log1p(Σ p_k expm1(dz_k)) to
 * avoid cancelling; large ones the max-shifted form.
 */
function testLossChange(p: Float64Array, dz: Float64Array, label: number, maxAbsDz: number): number {
  const C1 = dz.length;
  const dzLabel = label === 0 ? 0 : dz[label - 1]!;
  if (maxAbsDz <= 1) {
    let s = 0;
    for (let k = 0; k < C1; k++) s += p[k + 1]! * detExpm1(dz[k]!);
    return detLog1p(s) - dzLabel;
  }
  let m = 0;
  for (let k = 0; k < C1; k++) if (dz[k]! > m) m = dz[k]!;
  let s = p[0]! * detExp(-m);
  for (let k = 0; k < C1; k++) s += p[k + 1]! * detExp(dz[k]! - m);
  return m + detLog(s) - dzLabel;
}

/**
 * Self-influence g_iᵀ H⁻¹ g_i = r_iᵀ M_i r_i of every training row (always >= 0): how much a
 * row pulls the model towards its own label. Mislabeled and adversarial rows rank high. Reads
 * the kernel blocks M_i computed once with the model (no P³ work here).
 */
export function selfInfluence(inf: InfluenceModel): Float64Array {
  const { model, x, residuals, kernel } = inf;
  const C1 = model.classes - 1;
  const out = new Float64Array(x.rows);
  for (let r = 0; r < x.rows; r++) {
    let s = 0;
    for (let k = 0; k < C1; k++) {
      let t = 0;
      for (let l = 0; l < C1; l++) t += kernel[(r * C1 + k) * C1 + l]! * residuals[r * C1 + l]!;
      s += residuals[r * C1 + k]! * t;
    }
    out[r] = s;
  }
  return out;
}

/** Fixed-point scale of quantized influence (1e-12 loss units). */
export const INFLUENCE_SCALE = 1e12;

/**
 * Quantize influence scores to integers before any aggregation: x * 1e12 is one correctly
 * rounded multiply and Math.round is exact, so the integers are as reproducible as the
 * inputs, and integer sums do not depend on summation order.
 */
export function quantize(scores: Float64Array): bigint[] {
  return Array.from(scores, (s) => BigInt(Math.round(s * INFLUENCE_SCALE)));
}
