import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { type CsrMatrix, hashFeatures, type SparseVector, toCsr, toDenseFloat32 } from "./features.ts";
import { attributeInfluence, rankSelfInfluence, type TrainingRowRef } from "./influence-attribution.ts";
import {
  choleskyInPlace,
  choleskySolve,
  hessian,
  influenceScores,
  type LogisticModel,
  lossGradient,
  objective,
  predictProba,
  prepareInfluence,
  retrainWithout,
  rowLoss,
  selfInfluence,
  trainLogistic,
} from "./logistic.ts";
import { createOnnxPredictor, exportLogisticOnnx } from "./onnx-export.ts";
import { PPM_TOTAL } from "./ppm.ts";
import { pearson } from "./testing/ground-truth.ts";
import { mulberry32 } from "./testing/spam-assassin.ts";
import { syntheticProblem } from "./testing/synthetic.ts";

const synthetic = (rows: number, dim: number, classes: number, seed: number) =>
  syntheticProblem(rows, dim, classes, seed);

test("Cholesky solve matches the system on random SPD matrices", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 12 }), fc.integer(), (n, seed) => {
      const rnd = mulberry32(seed);
      const b = Array.from({ length: n * n }, () => rnd() - 0.5);
      const a = new Float64Array(n * n);
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) {
          let s = i === j ? 0.5 : 0;
          for (let k = 0; k < n; k++) s += b[i * n + k]! * b[j * n + k]!;
          a[i * n + j] = s;
        }
      const rhs = Array.from({ length: n }, () => rnd());
      const l = Float64Array.from(a);
      choleskyInPlace(l, n);
      const x = choleskySolve(l, n, rhs);
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < n; j++) s += a[i * n + j]! * x[j]!;
        assert.ok(Math.abs(s - rhs[i]!) < 1e-9);
      }
    }),
  );
});

test("gradient and Hessian agree with finite differences (3 classes)", () => {
  const { x, y } = synthetic(30, 5, 3, 11);
  const rnd = mulberry32(5);
  const model: LogisticModel = {
    dim: 5,
    classes: 3,
    lambda: 0.7,
    weights: Float64Array.from({ length: 12 }, () => rnd() - 0.5),
  };
  const P = 12;
  const { gradient } = objective(model, x, y);
  const h = hessian(model, x);
  const eps = 1e-6;
  for (let j = 0; j < P; j++) {
    const plus = { ...model, weights: Float64Array.from(model.weights) };
    const minus = { ...model, weights: Float64Array.from(model.weights) };
    plus.weights[j] = plus.weights[j]! + eps;
    minus.weights[j] = minus.weights[j]! - eps;
    const op = objective(plus, x, y);
    const om = objective(minus, x, y);
    assert.ok(Math.abs((op.value - om.value) / (2 * eps) - gradient[j]!) < 1e-6, `grad ${j}`);
    for (let i = j; i < P; i++) {
      const fd = (op.gradient[i]! - om.gradient[i]!) / (2 * eps);
      assert.ok(Math.abs(fd - h[i * P + j]!) < 1e-5, `hess ${i},${j}: ${fd} vs ${h[i * P + j]}`);
    }
  }
});

test("training converges and is bit-identical across runs", () => {
  const { x, y } = synthetic(200, 16, 3, 3);
  const a = trainLogistic(x, y, { classes: 3, lambda: 0.5, tolerance: 1e-10 });
  const b = trainLogistic(x, y, { classes: 3, lambda: 0.5, tolerance: 1e-10 });
  assert.ok(a.gradMax <= 1e-10, `gradMax ${a.gradMax}`);
  assert.deepEqual(a.model.weights, b.model.weights);
  assert.throws(
    () =>
      trainLogistic(
        x,
        Int32Array.from(y, () => 3),
        { classes: 3 },
      ),
    RangeError,
  );
});

test("influence equals the explicit -dL/dε form and predicts exact leave-one-out changes", () => {
  const { x, y } = synthetic(150, 10, 3, 8);
  const { model } = trainLogistic(x, y, { classes: 3, lambda: 1, tolerance: 1e-12 });
  const inf = prepareInfluence(model, x, y);
  const P = model.weights.length;
  const t = { indices: Int32Array.from([1, 4, 7]), values: Float64Array.from([0.6, -0.2, 1.1]) };
  const scores = influenceScores(inf, t, 2);
  // Dense reference: g_tᵀ H⁻¹ g_i with g_i from lossGradient.
  const v = choleskySolve(inf.cholesky, P, lossGradient(model, t, 2));
  for (let i = 0; i < x.rows; i += 7) {
    const row = {
      indices: x.indices.subarray(x.rowPtr[i]!, x.rowPtr[i + 1]!),
      values: x.values.subarray(x.rowPtr[i]!, x.rowPtr[i + 1]!),
    };
    const gi = lossGradient(model, row, y[i]!);
    let s = 0;
    for (let j = 0; j < P; j++) s += v[j]! * gi[j]!;
    assert.ok(Math.abs(s - scores[i]!) < 1e-12);
  }
  // Ground truth: retrain without each of 25 rows.
  const base = rowLoss(model, t, 2);
  const pred: number[] = [];
  const act: number[] = [];
  for (let i = 0; i < 25; i++) {
    const loo = retrainWithout(inf, y, i * 6);
    const check = objective(loo, x, y, i * 6);
    assert.ok(check.gradient.every((g) => Math.abs(g) <= 1e-10));
    pred.push(scores[i * 6]!);
    act.push(rowLoss(loo, t, 2) - base);
  }
  assert.ok(pearson(pred, act) > 0.95, `pearson ${pearson(pred, act)}`);
  // Self-influence is a non-negative quadratic form: compare one row with a dense solve.
  const self = selfInfluence(inf);
  const row0 = { indices: x.indices.subarray(0, x.rowPtr[1]!), values: x.values.subarray(0, x.rowPtr[1]!) };
  const g0 = lossGradient(model, row0, y[0]!);
  const w0 = choleskySolve(inf.cholesky, P, g0);
  assert.ok(Math.abs(g0.reduce((s, g, j) => s + g * w0[j]!, 0) - self[0]!) < 1e-12);
  assert.ok(self.every((s) => s >= 0));
});

test("influence attribution: ppm sums to 1e6, positive rows earn, unattributed when nothing helps", () => {
  const { x, y } = synthetic(120, 12, 2, 21);
  const { model } = trainLogistic(x, y, { classes: 2, lambda: 1 });
  const inf = prepareInfluence(model, x, y);
  const rows: TrainingRowRef[] = Array.from({ length: x.rows }, (_, i) => ({
    rowId: `r${i}`,
    contributionId: `k${i % 9}`,
    contributorId: `0x${i % 5}`,
  }));
  const t = { indices: Int32Array.from([2, 3]), values: Float64Array.from([1, 0.5]) };
  const res = attributeInfluence(inf, rows, t, { topK: 5 });
  assert.equal(
    res.weights.reduce((s, w) => s + w.ppm, 0),
    PPM_TOTAL,
  );
  assert.equal(res.unattributed, undefined);
  assert.ok(res.topHelpful.length > 0 && BigInt(res.topHelpful[0]!.influence) > 0n);
  for (let i = 1; i < res.topHelpful.length; i++)
    assert.ok(BigInt(res.topHelpful[i]!.influence) <= BigInt(res.topHelpful[i - 1]!.influence));
  assert.deepEqual(attributeInfluence(inf, rows, t, { topK: 5 }), res);
  // One row labelled 1: explaining class 0 at that row, the row only hurts -> unattributed.
  const single = toCsr([{ indices: Int32Array.from([0]), values: Float64Array.from([1]) }], 1);
  const one = trainLogistic(single, Int32Array.from([1]), { classes: 2, lambda: 1 });
  const infOne = prepareInfluence(one.model, single, Int32Array.from([1]));
  const r1 = attributeInfluence(
    infOne,
    [{ rowId: "a", contributionId: "k", contributorId: "0x1" }],
    csrRowOf(single),
    { label: 0 },
  );
  assert.deepEqual(r1.weights, []);
  assert.equal(r1.unattributed, "no-positive-influence");
  const ranked = rankSelfInfluence(inf, rows, 10);
  assert.equal(ranked.length, 10);
  for (let i = 1; i < ranked.length; i++)
    assert.ok(BigInt(ranked[i]!.selfInfluence) <= BigInt(ranked[i - 1]!.selfInfluence));
});

function csrRowOf(m: CsrMatrix): SparseVector {
  return { indices: m.indices.subarray(0, m.rowPtr[1]!), values: m.values.subarray(0, m.rowPtr[1]!) };
}

test("ONNX export served by onnxruntime-node matches the TS model within 1e-5", async () => {
  for (const classes of [2, 3]) {
    const texts = Array.from(
      { length: 40 },
      (_, i) => `message ${i} about ${i % 3 === 0 ? "cheap pills" : "the meeting"} number ${i * 7}`,
    );
    const features = { dim: 64 };
    const vecs = texts.map((t) => hashFeatures(t, features));
    const x = toCsr(vecs, 64);
    const y = Int32Array.from(texts, (_, i) => i % classes);
    const { model } = trainLogistic(x, y, { classes, lambda: 0.3 });
    const bytes = exportLogisticOnnx(model);
    assert.deepEqual(exportLogisticOnnx(model), bytes);
    const predictor = await createOnnxPredictor(bytes, 64);
    try {
      const probs = await predictor.predict(toDenseFloat32(vecs, 64), vecs.length);
      let maxErr = 0;
      vecs.forEach((v, r) => {
        const p = predictProba(model, v);
        for (let k = 0; k < classes; k++)
          maxErr = Math.max(maxErr, Math.abs(p[k]! - probs[r * classes + k]!));
      });
      assert.ok(maxErr < 1e-5, `max abs error ${maxErr}`);
    } finally {
      await predictor.close();
    }
  }
});
