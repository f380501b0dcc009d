/**
 * The exact metagradient (`adamwMetagradientInfluence`) at the per-answer cost of a matrix product.
 *
 * The answer's loss depends on the row weights only through the trained parameters θ_T, so its
 * metagradient is τ = −Jᵀ g with g = ∇L_answer(θ_T) and J = dθ_T/d log w (dim × rows), and the reverse
 * pass that computes it is linear in g. Once per training run (tape), k reverse passes on directions
 * b_1..b_k give the rows × k matrix M = [τ(b_1) … τ(b_k)]; an answer whose gradient is (close to) a
 * combination Σ_j c_j b_j then costs c = Dᵀ g (the dual functionals) and τ ≈ M c:
 *   τ(g) ≈ τ(Σ_j (d_j·g) b_j) = Σ_j (d_j·g) τ(b_j)        (exact when g lies in span(b)).
 * What it misses is τ(g − ĝ), ĝ = Σ_j (d_j·g) b_j; `captured` reports 1 − ‖g − ĝ‖²/‖g‖² per answer.
 *
 * Directions: the leading principal directions of the training rows' own final-adapter gradients
 * (the answers a deployed adapter is asked are of the same kind), optionally in a diagonally scaled
 * metric s (then b_j = u_j / s, d_j = u_j · s, u_j orthonormal: an oblique projection that keeps
 * more of g where s is large). Precompute: k reverse passes (T − 1 Hessian-vector products each); per
 * answer: O(k · (dim + rows)). Measured against the full reverse pass in bench/lora-influence.ts.
 *
 * Determinism: the principal directions are float64 linear algebra in a fixed order (ml-matrix's
 * symmetric eigendecomposition of the rows × rows Gram matrix); M depends on the caller's
 * Hessian-vector products (float32 ONNX runs), so it is reproducible where those are.
 */
import {
  adamwMetagradientInfluence,
  type MetagradientOptions,
  stepScalars,
  type TrainingTape,
} from "./metagradient.ts";

export interface ProjectionDirections {
  /** Directions (k × dim, row-major) the reverse passes run on. */
  basis: Float64Array;
  /** Dual functionals (k × dim): ĝ = Σ_j (dual_j · g) basis_j; equal to `basis` when it is orthonormal. */
  dual: Float64Array;
  k: number;
  dim: number;
  /** Squared singular values of the (scaled) gradients along each direction, descending. */
  variance: Float64Array;
}

/**
 * The k leading principal directions (uncentered: right singular vectors) of `rows` gradients of
 * length `dim` (row-major `values`), in the metric scaled elementwise by `scale` (default none):
 * the top eigenvectors a_j of the Gram matrix K = (GS)(GS)ᵀ give u_j = (GS)ᵀ a_j / σ_j. k is capped
 * at the number of non-zero singular values (≤ rows).
 */
export async function principalDirections(
  values: ArrayLike<number>,
  rows: number,
  dim: number,
  k: number,
  scale?: ArrayLike<number>,
): Promise<ProjectionDirections> {
  if (values.length !== rows * dim) throw new RangeError("gradient values do not match rows × dim");
  if (!(Number.isInteger(k) && k >= 1)) throw new RangeError("k must be a positive integer");
  if (scale && scale.length !== dim) throw new RangeError("scale length differs from dim");
  // Loaded here, not at the top: the package's other exports do not need it.
  const { EigenvalueDecomposition, Matrix } = await import("ml-matrix");
  const s = (j: number) => (scale ? scale[j]! : 1);
  const scaled = Float64Array.from({ length: rows * dim }, (_, at) => values[at]! * s(at % dim));
  const gram = new Matrix(rows, rows);
  for (let i = 0; i < rows; i++) {
    for (let l = 0; l <= i; l++) {
      let acc = 0;
      for (let j = 0; j < dim; j++) acc += scaled[i * dim + j]! * scaled[l * dim + j]!;
      gram.set(i, l, acc);
      gram.set(l, i, acc);
    }
  }
  const eig = new EigenvalueDecomposition(gram, { assumeSymmetric: true });
  // ascending eigenvalues; take the largest, dropping numerically zero ones
  const order = eig.realEigenvalues.map((lambda, i) => ({ lambda, i })).sort((a, b) => b.lambda - a.lambda);
  const top = order[0]?.lambda ?? 0;
  const kept = order.filter((e) => e.lambda > top * 1e-12).slice(0, k);
  const vectors = eig.eigenvectorMatrix;
  const kk = kept.length;
  const basis = new Float64Array(kk * dim);
  const dual = new Float64Array(kk * dim);
  kept.forEach(({ lambda, i: col }, j) => {
    const sigma = Math.sqrt(lambda);
    const u = new Float64Array(dim);
    for (let i = 0; i < rows; i++) {
      const a = vectors.get(i, col) / sigma;
      for (let c = 0; c < dim; c++) u[c] = u[c]! + a * scaled[i * dim + c]!;
    }
    for (let c = 0; c < dim; c++) {
      basis[j * dim + c] = u[c]! / s(c);
      dual[j * dim + c] = u[c]! * s(c);
    }
  });
  return { basis, dual, k: kk, dim, variance: Float64Array.from(kept, (e) => e.lambda) };
}

/**
 * Where each row moved the parameters during the run, to first order and without curvature: rows × dim,
 * d_i = Σ_t a_t ⊙ s_t ∇ℓ_i-term(θ_t), where s_t is step t's clipping scale and a_t (elementwise) is how
 * much a unit of step t's clipped gradient moves θ through Adam's momentum over the rest of the run,
 *   a_t = (1 − β1) Σ_{t'≥t} β1^{t'−t} η_{t'} / (bc1_{t'} (√(v_{t'+1}/bc2_{t'}) + ε)).
 * The exact metagradient is τ = −Jᵀg with J = dθ_T/d log w, so directions spanning J's range make the
 * projection exact for every answer; d_i is J's column i with the Hessian, weight-decay, second-moment
 * and clipping-direction terms left out — principal directions of these rows approximate that range
 * (measured against the answers' own gradient directions in bench/lora-influence.ts).
 */
export function rowUpdateDirections(tape: TrainingTape): Float64Array {
  const { rows: n, dim, steps, hyper } = tape;
  const { beta1: b1, beta2: b2, eps } = hyper;
  const out = new Float64Array(n * dim);
  const b = new Float64Array(dim); // Σ_{t'≥t} β1^{t'−t} η_{t'} / (bc1 den) for the current t
  for (let t = steps.length - 1; t >= 0; t--) {
    const s = steps[t]!;
    const g = s.grad;
    const { gScale, bc1, bc2 } = stepScalars(hyper, s);
    for (let j = 0; j < dim; j++) {
      const gh = g[j]! * gScale;
      const vi = b2 * s.v[j]! + (1 - b2) * gh * gh;
      b[j] = s.lr / (bc1 * (Math.sqrt(vi / bc2) + eps)) + b1 * b[j]!;
    }
    const rg = s.rowGrads;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < dim; j++)
        out[i * dim + j] = out[i * dim + j]! + (1 - b1) * b[j]! * gScale * rg[i * dim + j]!;
    }
  }
  return out;
}

export interface MetagradientProjection {
  rows: number;
  dim: number;
  k: number;
  /** The directions' dual functionals (k × dim): the answer's coefficients are dual · g. */
  dual: Float64Array;
  basis: Float64Array;
  /** rows × k, row-major: column j = adamwMetagradientInfluence(tape, basis_j). */
  influence: Float64Array;
}

/** k reverse passes through the tape, one per direction (the once-per-run precompute). */
export async function projectMetagradient(
  tape: TrainingTape,
  directions: ProjectionDirections,
  options: MetagradientOptions & { onDirection?: (done: number, total: number) => void },
): Promise<MetagradientProjection> {
  const { k, dim, basis, dual } = directions;
  if (dim !== tape.dim) throw new RangeError("directions' dim differs from the tape's");
  const n = tape.rows;
  const influence = new Float64Array(n * k);
  for (let j = 0; j < k; j++) {
    const tau = await adamwMetagradientInfluence(tape, basis.subarray(j * dim, (j + 1) * dim), options);
    for (let i = 0; i < n; i++) influence[i * k + j] = tau[i]!;
    options.onDirection?.(j + 1, k);
  }
  return { rows: n, dim, k, dual, basis, influence };
}

/**
 * τ for an answer whose loss gradient is `answerGrad`, from the first `k` directions (default all:
 * the directions are ordered, so one precompute serves every smaller k): τ_i = Σ_j M_ij (dual_j · g).
 * `captured` = 1 − ‖g − ĝ‖²/‖g‖² (1 when g lies in the directions' span).
 */
export function projectedMetagradientInfluence(
  p: MetagradientProjection,
  answerGrad: ArrayLike<number>,
  k = p.k,
): { scores: Float64Array; captured: number; coefficients: Float64Array } {
  const { dim, rows: n } = p;
  if (answerGrad.length !== dim)
    throw new RangeError("answer gradient length differs from the projection's dim");
  if (!(Number.isInteger(k) && k >= 1 && k <= p.k)) throw new RangeError(`k must be in 1..${p.k}`);
  const coef = new Float64Array(k);
  const approx = new Float64Array(dim);
  for (let j = 0; j < k; j++) {
    let c = 0;
    for (let e = 0; e < dim; e++) c += p.dual[j * dim + e]! * answerGrad[e]!;
    coef[j] = c;
    for (let e = 0; e < dim; e++) approx[e] = approx[e]! + c * p.basis[j * dim + e]!;
  }
  let res = 0;
  let norm = 0;
  for (let e = 0; e < dim; e++) {
    res += (answerGrad[e]! - approx[e]!) ** 2;
    norm += answerGrad[e]! ** 2;
  }
  const scores = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += p.influence[i * p.k + j]! * coef[j]!;
    scores[i] = s;
  }
  return { scores, captured: norm > 0 ? 1 - res / norm : 1, coefficients: coef };
}
