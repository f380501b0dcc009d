import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  adamwMetagradientInfluence,
  type RecordedStep,
  type TrainingTape,
} from "@openledger/attribution-core";
import { TINY_CONFIG } from "./config.ts";
import { generateBaseModel } from "./model.ts";
import { resolveOptimizer, type StepRecord, Trainer, type TrainerOptions } from "./train.ts";
import { batchFromRows, type TrainBatch } from "./train-data.ts";

/**
 * Metagradients through a real LoRA training run (the ONNX training graph, AdamW with clipping,
 * cosine LR, weight decay): the trainer records each step, the gradient graph supplies per-row
 * gradients and finite-difference Hessian-vector products, attribution-core runs the reverse pass.
 * The check is retraining: scale one row's loss weight by (1 ± δ), train again from the same
 * initialisation, and compare the answer's loss change with the metagradient's prediction.
 */
const model = generateBaseModel(TINY_CONFIG, 3);
const enc = (s: string) => [...new TextEncoder().encode(s)];
const ROWS = [
  "cheap meds now>s",
  "meeting at noon>h",
  "win a free cruise>s",
  "lunch on friday?>h",
  "lowest rates ever>s",
  "draft attached>h",
].map(enc);
const ANSWER = enc("free rates now>s");
const N = ROWS.length;
const SEQ = 18;
const STEPS = 12;
const OPTIONS: TrainerOptions = {
  mode: "lora",
  lora: { rank: 2, alpha: 4, targetModules: ["q_proj", "v_proj"] },
  batch: N,
  seq: SEQ,
  // eps 1e-2, not 1e-8: with a tiny eps Adam's first step is sign descent (θ_1 = θ_0 − η·sign(g_0)), so
  // the retrained answer loss jumps wherever a re-weighting flips a coordinate's first gradient — a
  // finite difference across a jump measures nothing (seen here: jumps at 0.4% weight changes). A larger
  // eps keeps the response smooth enough to difference at δ = 1%; the adjoint is the same code either way.
  optimizer: {
    lr: 2e-2,
    eps: 1e-2,
    schedule: "cosine",
    totalSteps: STEPS,
    weightDecay: 0.1,
    clipNorm: 1,
  },
  seed: 9,
  intraOpThreads: 1,
};

/** The training batch with row `row`'s loss weights scaled by `factor`. */
function trainBatch(row = -1, factor = 1): TrainBatch {
  const b = batchFromRows(ROWS, N, SEQ);
  if (row >= 0) for (let t = 0; t < SEQ; t++) b.labelWeights[row * SEQ + t]! *= factor;
  return b;
}

/** The same run with a linear warm-up over the first third of the steps (then the cosine decay). */
const WARMUP_OPTIONS: TrainerOptions = { ...OPTIONS, optimizer: { ...OPTIONS.optimizer, warmupSteps: 4 } };

let trainer: Trainer;
let warmTrainer: Trainer;
let oracle: Trainer;
let initial: ReturnType<Trainer["checkpoint"]>;
let warmInitial: ReturnType<Trainer["checkpoint"]>;
before(async () => {
  trainer = await Trainer.create(model, OPTIONS);
  warmTrainer = await Trainer.create(model, WARMUP_OPTIONS);
  oracle = await Trainer.create(model, { ...OPTIONS, perExampleGrads: true });
  initial = trainer.checkpoint();
  warmInitial = warmTrainer.checkpoint();
});
after(async () => {
  await trainer.dispose();
  await warmTrainer.dispose();
  await oracle.dispose();
});

async function trainFromStart(
  batch: TrainBatch,
  record?: (r: StepRecord) => void,
  warm = false,
): Promise<Float32Array> {
  const t = warm ? warmTrainer : trainer;
  t.restore(warm ? warmInitial : initial);
  for (let s = 0; s < STEPS; s++) await t.trainStep(batch, record);
  return t.flatValues();
}

async function answerLoss(params: Float32Array): Promise<number> {
  oracle.setFlatValues(params);
  return (await oracle.flatGradients(batchFromRows([ANSWER], N, SEQ))).loss;
}

/**
 * Relative L2 error over the rows, against retraining with row i's weight × (1 ± 1%), of the exact
 * metagradient and of its ablations: no H_t, no v̄, and (`noWarmupLr`) a tape whose per-step learning
 * rates are those of the same cosine schedule without the warm-up — what an adjoint that recomputed
 * the schedule instead of using each recorded step's lr would see.
 */
async function errorsAgainstRetraining(warm: boolean) {
  const batch = trainBatch();
  const records: StepRecord[] = [];
  const trained = await trainFromStart(batch, (r) => records.push(r), warm);
  const steps: RecordedStep[] = [];
  for (const r of records) {
    oracle.setFlatValues(r.params);
    const { rowGrads } = await oracle.flatGradients(batch);
    steps.push({ ...r, rowGrads: rowGrads! });
  }
  const tape: TrainingTape = {
    hyper: resolveOptimizer(OPTIONS.optimizer),
    rows: N,
    dim: oracle.dim,
    steps,
  };
  oracle.setFlatValues(trained);
  const answerGrad = (await oracle.flatGradients(batchFromRows([ANSWER], N, SEQ))).grad;
  const hvp = async (t: number, v: Float64Array) => {
    oracle.setFlatValues(steps[t]!.params);
    return oracle.hessianVectorProduct(batch, v);
  };
  const exact = await adamwMetagradientInfluence(tape, answerGrad, { hvp });
  const firstOrder = await adamwMetagradientInfluence(tape, answerGrad, { hvp: null });
  const noV = await adamwMetagradientInfluence(tape, answerGrad, { hvp, secondMomentAdjoint: false });
  const noWarmupLr = await adamwMetagradientInfluence(
    { ...tape, steps: steps.map((s) => ({ ...s, lr: trainer.lrAt(s.step) })) },
    answerGrad,
    { hvp },
  );
  // Deterministic: the same tape and HVPs give the same bits.
  assert.deepEqual(await adamwMetagradientInfluence(tape, answerGrad, { hvp }), exact);

  const delta = 0.01;
  const retrained: number[] = [];
  for (let i = 0; i < N; i++) {
    const up = await answerLoss(await trainFromStart(trainBatch(i, 1 + delta), undefined, warm));
    const down = await answerLoss(await trainFromStart(trainBatch(i, 1 - delta), undefined, warm));
    retrained.push(-(up - down) / (2 * delta));
  }
  const relErr = (est: Float64Array) => {
    let num = 0;
    let den = 0;
    for (let i = 0; i < N; i++) {
      num += (est[i]! - retrained[i]!) ** 2;
      den += retrained[i]! ** 2;
    }
    return Math.sqrt(num / den);
  };
  return {
    exact: relErr(exact),
    firstOrder: relErr(firstOrder),
    noV: relErr(noV),
    noWarmupLr: relErr(noWarmupLr),
  };
}

test("metagradients through LoRA training predict retraining with a re-weighted row (and need H_t and v̄)", async () => {
  const errs = await errorsAgainstRetraining(false);
  // Measured: exact 0.0015, without H_t 0.43, without v̄ 1.7 (relative L2 over the rows).
  assert.ok(errs.exact < 0.03, `exact metagradient vs retraining: ${JSON.stringify(errs)}`);
  assert.ok(errs.firstOrder > 0.2, `without H_t it must miss: ${JSON.stringify(errs)}`);
  assert.ok(errs.noV > 0.2, `without v̄ it must miss: ${JSON.stringify(errs)}`);
});

test("metagradients through a run with linear warm-up: the adjoint uses each step's recorded lr", async () => {
  const errs = await errorsAgainstRetraining(true);
  // Measured: exact 0.0017; with the warm-up's learning rates replaced by the schedule without it 0.64,
  // without H_t 0.43 (at step 0 the warm-up lr is a quarter of the peak, so the early steps' adjoint
  // scales are off by up to 4x). Without a warm-up the two tapes are the same (0.0015 both).
  assert.ok(errs.exact < 0.03, `exact metagradient vs retraining: ${JSON.stringify(errs)}`);
  assert.ok(
    errs.noWarmupLr > 0.2,
    `with the warm-up's learning rates replaced it must miss: ${JSON.stringify(errs)}`,
  );
  assert.ok(errs.firstOrder > 0.2, `without H_t it must miss: ${JSON.stringify(errs)}`);
});

test("hessianVectorProduct: symmetric (uᵀHv = vᵀHu), insensitive to its step, parameters restored", async () => {
  const batch = trainBatch();
  oracle.restore(initial);
  // B = 0 at init makes the loss flat in A to first order; move off it so every block has curvature.
  const theta = oracle.flatValues().map((x, j) => x + 0.02 * Math.sin(j));
  oracle.setFlatValues(theta);
  const dim = oracle.dim;
  const u = Float64Array.from({ length: dim }, (_, j) => Math.cos(3 * j));
  const v = Float64Array.from({ length: dim }, (_, j) => Math.sin(7 * j + 1));
  const hv = await oracle.hessianVectorProduct(batch, v);
  assert.deepEqual(oracle.flatValues(), Float32Array.from(theta));
  const hu = await oracle.hessianVectorProduct(batch, u);
  const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, x, j) => s + x * b[j]!, 0);
  const norm = (a: Float64Array) => Math.sqrt(dot(a, a));
  const asym = Math.abs(dot(u, hv) - dot(v, hu)) / (norm(u) * norm(hv));
  assert.ok(asym < 1e-3, `uᵀHv − vᵀHu relative ${asym}`);
  const coarse = await oracle.hessianVectorProduct(batch, v, { relStep: 4e-3 });
  const diff = norm(coarse.map((x, j) => x - hv[j]!)) / norm(hv);
  assert.ok(diff < 1e-2, `relStep 1e-3 vs 4e-3: ${diff}`);
});
