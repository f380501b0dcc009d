/**
 * Influence of training rows on an answer's loss for a LoRA adapter, from per-example
 * gradients of the adapter's parameters (the LoRA A/B factors) at the trained adapter.
 *
 * Storage: the per-example gradient of a LoRA adapter is already a low-rank object — for a
 * module with A [r, in] and B [out, r] it is r·(in + out) numbers, not in·out — so rows keep
 * their full LoRA gradient (float32 in, float64 math) grouped in blocks (one per adapted
 * module). This is exact and small for the adapters this path serves (tiny / small models, a
 * few thousand parameters); a SmolLM-sized adapter would need LoGra's factored random
 * projection first (bench/RESULTS.md, LoRA influence).
 *
 * Estimator: the inverse of the damped empirical Fisher, per block l,
 *   τ_i = Σ_l g_tlᵀ (λ_l I + G_lᵀG_l / n)⁻¹ g_il,
 * the same Gauss-Newton influence DataInf approximates (DataInf swaps the inverse of the sum
 * for a sum of rank-one inverses). Here it is exact at no extra asymptotic cost: with the n×n
 * Gram matrix K_l = G_l G_lᵀ factored once (Cholesky of nλ_l I + K_l), Woodbury gives
 *   (λI + GᵀG/n)⁻¹ G_lᵀ = n G_lᵀ (nλI + K)⁻¹,  so  τ_l = n (nλ_l I + K_l)⁻¹ (G_l g_tl),
 * one O(n·d) product and one O(n²) solve per block and answer. λ_l = dampingRatio · mean_i
 * ‖g_il‖² (default 0.01, measured: bench/RESULTS.md; DataInf uses 0.1). Positive τ_i:
 * up-weighting row i lowers the answer's loss (it helped), as for the classifier path.
 *
 * Determinism: only +, −, ×, ÷ and sqrt (Cholesky) in a fixed order, on the stored float32
 * gradients widened to float64; scores are quantized (`quantize`) before money. The answer's
 * gradient comes from the ONNX training graph (float32); see ARCHITECTURE.md for what that
 * means across machines.
 */
import {
  asJson,
  asUint32,
  bytesOf,
  decodeFlat,
  encodeFlat,
  FlatFormatError,
  jsonBytes,
  SectionKind,
} from "./flat-binary.ts";
import {
  attributeQuantized,
  type QuantizedAttribution,
  type TrainingRowRef,
} from "./influence-attribution.ts";
import { choleskyInPlace, choleskySolve, quantize } from "./logistic.ts";

export interface LoraGradients {
  /** Training rows (examples). */
  rows: number;
  /** Length of each block (one per adapted module, in a fixed order); sum = dim. */
  blocks: number[];
  /** rows × dim, row-major; row i = example i's gradient of its own mean token loss. */
  values: Float32Array;
}

export interface LoraInfluenceOptions {
  /** λ_l = dampingRatio · mean ‖g_il‖² per block. Default 0.01 (measured; DataInf uses 0.1). */
  dampingRatio?: number;
}

export interface LoraInfluenceModel {
  grads: LoraGradients;
  /** Start offset of each block in a row. */
  offsets: number[];
  lambdas: number[];
  /** Per block: Cholesky factor of nλ_l I + K_l (n×n, row-major). */
  factors: Float64Array[];
  /** Per block: the Gram matrix K_l (n×n), kept for self-influence. */
  grams: Float64Array[];
}

function blockOffsets(blocks: readonly number[]): number[] {
  const out: number[] = [];
  let at = 0;
  for (const b of blocks) {
    out.push(at);
    at += b;
  }
  return out;
}

/** Gram matrices and their damped Cholesky factors, once per adapter (O(n²·d + n³) per block). */
export function prepareLoraInfluence(
  grads: LoraGradients,
  options: LoraInfluenceOptions = {},
): LoraInfluenceModel {
  const { rows: n, blocks, values } = grads;
  const dim = blocks.reduce((s, b) => s + b, 0);
  if (values.length !== n * dim) throw new RangeError("gradient values do not match rows × sum(blocks)");
  if (n < 1) throw new RangeError("need at least one training row");
  const ratio = options.dampingRatio ?? LORA_DAMPING_RATIO;
  if (!(ratio > 0)) throw new RangeError("dampingRatio must be > 0");
  const offsets = blockOffsets(blocks);
  const lambdas: number[] = [];
  const factors: Float64Array[] = [];
  const grams: Float64Array[] = [];
  blocks.forEach((d, l) => {
    const off = offsets[l]!;
    const k = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      const bi = i * dim + off;
      for (let j = 0; j <= i; j++) {
        const bj = j * dim + off;
        let s = 0;
        for (let u = 0; u < d; u++) s += values[bi + u]! * values[bj + u]!;
        k[i * n + j] = s;
        k[j * n + i] = s;
      }
    }
    let trace = 0;
    for (let i = 0; i < n; i++) trace += k[i * n + i]!;
    // A block whose gradients all vanish (e.g. LoRA B before training) still gets λ > 0.
    const lambda = ratio * (trace > 0 ? trace / n : 1);
    const f = Float64Array.from(k);
    for (let i = 0; i < n; i++) f[i * n + i]! += n * lambda;
    choleskyInPlace(f, n);
    lambdas.push(lambda);
    factors.push(f);
    grams.push(k);
  });
  return { grads, offsets, lambdas, factors, grams };
}

/**
 * τ_i for every training row on an answer whose loss gradient (same layout as one row) is
 * `answerGrad`: the decrease of the answer's loss per unit up-weighting of row i (its mean
 * token loss) in the training objective's mean. One product and one n×n solve per block.
 */
export function loraInfluenceScores(m: LoraInfluenceModel, answerGrad: ArrayLike<number>): Float64Array {
  const { rows: n, blocks } = m.grads;
  const dim = blocks.reduce((s, b) => s + b, 0);
  if (answerGrad.length !== dim) throw new RangeError("answer gradient does not match the blocks");
  const out = new Float64Array(n);
  const a = new Float64Array(n);
  blocks.forEach((_, l) => {
    const b = blockSolve(m, l, answerGrad, a);
    for (let i = 0; i < n; i++) out[i] = out[i]! + n * b[i]!;
  });
  return out;
}

/**
 * (nλ_l I + K_l)⁻¹ G_l v for block l: each row's product with v over the block's coordinates
 * (`a` is scratch of length n), then the block's Cholesky solve. Shared by the influence scores
 * and the damped Fisher operator.
 */
function blockSolve(m: LoraInfluenceModel, l: number, v: ArrayLike<number>, a: Float64Array): Float64Array {
  const { rows: n, blocks, values } = m.grads;
  const dim = blocks.reduce((s, b) => s + b, 0);
  const off = m.offsets[l]!;
  const d = blocks[l]!;
  for (let i = 0; i < n; i++) {
    const bi = i * dim + off;
    let s = 0;
    for (let u = 0; u < d; u++) s += values[bi + u]! * v[off + u]!;
    a[i] = s;
  }
  return choleskySolve(m.factors[l]!, n, a);
}

/**
 * Self-influence g_iᵀ(λI + GᵀG/n)⁻¹g_i per row, summed over blocks (always >= 0): rows the
 * adapter fits only by bending towards them — mislabeled or adversarial rows rank high.
 * Via Woodbury, (1/λ)(K_ii − k_iᵀ(nλI + K)⁻¹k_i) = n·[(nλI + K)⁻¹K]_ii.
 */
export function loraSelfInfluence(m: LoraInfluenceModel): Float64Array {
  const n = m.grads.rows;
  const out = new Float64Array(n);
  m.grams.forEach((k, l) => {
    const col = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) col[j] = k[j * n + i]!;
      const x = choleskySolve(m.factors[l]!, n, col);
      out[i] = out[i]! + n * x[i]!;
    }
  });
  return out;
}

/**
 * (λ_l I + G_lᵀG_l/n)⁻¹ v per block for any parameter-space vector v (Woodbury:
 * (1/λ)(v − G_lᵀ(nλ_l I + K_l)⁻¹G_l v)): the damped Fisher inverse as an operator, e.g. the
 * preconditioner of `refinedLoraInfluenceScores`.
 */
export function dampedFisherSolve(m: LoraInfluenceModel, v: ArrayLike<number>): Float64Array {
  const { rows: n, blocks, values } = m.grads;
  const dim = blocks.reduce((s, b) => s + b, 0);
  if (v.length !== dim) throw new RangeError("vector does not match the blocks");
  const out = new Float64Array(dim);
  const a = new Float64Array(n);
  blocks.forEach((d, l) => {
    const off = m.offsets[l]!;
    const b = blockSolve(m, l, v, a);
    const lambda = m.lambdas[l]!;
    for (let u = 0; u < d; u++) out[off + u] = v[off + u]!;
    for (let i = 0; i < n; i++) {
      const bi = i * dim + off;
      const c = b[i]!;
      for (let u = 0; u < d; u++) out[off + u] = out[off + u]! - c * values[bi + u]!;
    }
    for (let u = 0; u < d; u++) out[off + u] = out[off + u]! / lambda;
  });
  return out;
}

/**
 * Influence with the training objective's own Hessian H at the trained adapter in place of the
 * empirical Fisher (ASTRA-style refinement: Bergson's "EK-FAC + ASTRA" iterates the inverse-Hessian
 * product with an EK-FAC preconditioner; here the preconditioner is the exact damped Fisher inverse P⁻¹
 * above). x ≈ (H + Λ)⁻¹ g_t by preconditioned Richardson iterations from the Fisher solution,
 *   x_0 = P⁻¹ g_t,  x_{k+1} = x_k + P⁻¹(g_t − (H + Λ) x_k)          (Λ = λ_l per block, as in P)
 * then τ_i = g_iᵀ x. One `hvp` (H·v of the training objective at the adapter, float64) per iteration;
 * `onIteration(k, τ)` sees the scores after each (k = 0: the Fisher scores up to round-off). It converges
 * while the spectrum of P⁻¹(H + Λ) stays in (0, 2); H is not positive definite in general, so the
 * iteration count is a setting to measure, not to push.
 */
export async function refinedLoraInfluenceScores(
  m: LoraInfluenceModel,
  answerGrad: ArrayLike<number>,
  hvp: (v: Float64Array) => Promise<Float64Array>,
  options: { iterations: number; onIteration?: (k: number, scores: Float64Array) => void },
): Promise<Float64Array> {
  const { rows: n, blocks, values } = m.grads;
  const dim = blocks.reduce((s, b) => s + b, 0);
  if (answerGrad.length !== dim) throw new RangeError("answer gradient does not match the blocks");
  const damp = new Float64Array(dim);
  blocks.forEach((d, l) => {
    damp.fill(m.lambdas[l]!, m.offsets[l]!, m.offsets[l]! + d);
  });
  const scores = (x: Float64Array) =>
    Float64Array.from({ length: n }, (_, i) => {
      let s = 0;
      for (let u = 0; u < dim; u++) s += values[i * dim + u]! * x[u]!;
      return s;
    });
  const x = dampedFisherSolve(m, answerGrad);
  options.onIteration?.(0, scores(x));
  for (let k = 1; k <= options.iterations; k++) {
    const hx = await hvp(x);
    const r = new Float64Array(dim);
    for (let u = 0; u < dim; u++) r[u] = answerGrad[u]! - hx[u]! - damp[u]! * x[u]!;
    const dx = dampedFisherSolve(m, r);
    for (let u = 0; u < dim; u++) x[u] = x[u]! + dx[u]!;
    options.onIteration?.(k, scores(x));
  }
  return scores(x);
}

/** Default damping of the paid estimator (bench/RESULTS.md, LoRA influence). */
export const LORA_DAMPING_RATIO = 0.01;

/**
 * The stored per-example gradients of one adapter's training rows: what a validator rebuilds
 * from public inputs (the rows in Postgres, the base model and adapter named by the lineage) and
 * checks against the recorded hash. Rows keep their identity (row, contribution, contributor) in
 * gradient order.
 */
export interface LoraGradientArtifact {
  grads: LoraGradients;
  rows: TrainingRowRef[];
  /** Lineage and build settings (JSON: model, adapter/base hashes, versions, seq, tokenizer). */
  meta: Record<string, unknown>;
}

const LORA_MAGIC = "OLLORAGR";
const LORA_FORMAT = 1;
const S_META = 1;
const S_ROWS = 2;
const S_VALUES = 3;

/**
 * Flat binary (one read, CRC-32): meta + blocks (JSON), rows (JSON), gradients as float32 bits
 * (a Uint32 section: the stored values are float32, widened to float64 only in the math).
 */
export function encodeLoraGradients(a: LoraGradientArtifact): Uint8Array[] {
  const { grads } = a;
  const dim = grads.blocks.reduce((s, b) => s + b, 0);
  if (grads.values.length !== grads.rows * dim || a.rows.length !== grads.rows) {
    throw new RangeError("gradient artifact: rows, blocks and values disagree");
  }
  const bits = new Uint32Array(grads.values.buffer, grads.values.byteOffset, grads.values.length);
  return encodeFlat(
    LORA_MAGIC,
    LORA_FORMAT,
    [grads.rows, grads.blocks.length],
    [
      { id: S_META, kind: SectionKind.Json, bytes: jsonBytes({ blocks: grads.blocks, meta: a.meta }) },
      {
        id: S_ROWS,
        kind: SectionKind.Json,
        bytes: jsonBytes(a.rows.map((r) => [r.rowId, r.contributionId, r.contributorId])),
      },
      { id: S_VALUES, kind: SectionKind.Uint32, bytes: bytesOf(bits) },
    ],
  );
}

export function decodeLoraGradients(data: Uint8Array): LoraGradientArtifact {
  const f = decodeFlat(data, LORA_MAGIC, [LORA_FORMAT]);
  const { blocks, meta } = asJson<{ blocks: number[]; meta: Record<string, unknown> }>(f.need(S_META));
  const rows = asJson<[string, string, string][]>(f.need(S_ROWS)).map(
    ([rowId, contributionId, contributorId]) => ({ rowId, contributionId, contributorId }),
  );
  const bits = asUint32(f.need(S_VALUES));
  const values = new Float32Array(bits.buffer, bits.byteOffset, bits.length);
  const n = f.words[0]!;
  const dim = blocks.reduce((s, b) => s + b, 0);
  if (rows.length !== n || values.length !== n * dim)
    throw new FlatFormatError("gradient artifact sizes disagree");
  return { grads: { rows: n, blocks, values }, rows, meta };
}

export interface LoraInfluenceAttribution extends QuantizedAttribution {
  estimator: "damped-fisher";
  dampingRatio: number;
}

/**
 * Attribute one answer: τ_i of every training row on the answer's loss (over the tokens the
 * caller weighted: the ones no kept span covers), quantized (1e-12 units) before anything is
 * summed; rows with positive influence earn, aggregated per contributor to ppm.
 */
export function attributeLoraInfluence(
  m: LoraInfluenceModel,
  rows: readonly TrainingRowRef[],
  answerGrad: ArrayLike<number>,
  options: { topK?: number; dampingRatio: number },
): LoraInfluenceAttribution {
  if (rows.length !== m.grads.rows) throw new RangeError("rows must match the gradients");
  const q = quantize(loraInfluenceScores(m, answerGrad));
  return {
    estimator: "damped-fisher",
    dampingRatio: options.dampingRatio,
    ...attributeQuantized(q, rows, options.topK ?? 10),
  };
}
