import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { type CsrMatrix, csrRow, hashFeatures, type SparseVector, toCsr } from "./features.ts";
import { attributeInfluence, type TrainingRowRef } from "./influence-attribution.ts";
import { decodeInfluenceModel, encodeInfluenceModel, trainInfluenceModel } from "./influence-model.ts";
import {
  choleskyInPlace,
  choleskySolve,
  hessian,
  influenceScores,
  type LogisticModel,
  looInfluenceScores,
  lossGradient,
  prepareInfluence,
  quantize,
  retrainWithout,
  rowLoss,
  selfInfluence,
  trainLogistic,
} from "./logistic.ts";
import { PPM_TOTAL } from "./ppm.ts";
import { topRowsLooExperiment } from "./testing/ground-truth.ts";
import { loadSotuPassages } from "./testing/sotu.ts";
import { loadSpamAssassin, mulberry32 } from "./testing/spam-assassin.ts";
import { syntheticProblem } from "./testing/synthetic.ts";

const synthetic = (rows: number, dim: number, classes: number, seed: number) =>
  syntheticProblem(rows, dim, classes, seed, { maxNnz: 4, noise: 0.2 });

function randomTestRow(dim: number, seed: number): SparseVector {
  const rnd = mulberry32(seed ^ 0x9e3779b9);
  const set = new Set<number>();
  for (let i = 0; i < 3; i++) set.add(Math.floor(rnd() * dim));
  const idx = [...set].sort((a, b) => a - b);
  return { indices: Int32Array.from(idx), values: Float64Array.from(idx, () => rnd() * 2 - 1) };
}

/** One exact Newton step on the objective without row i, with H₋ᵢ built and factored explicitly. */
function denseNewtonStep(model: LogisticModel, x: CsrMatrix, y: Int32Array, i: number): LogisticModel {
  const P = model.weights.length;
  const h = hessian(model, x, i);
  choleskyInPlace(h, P);
  const step = choleskySolve(h, P, lossGradient(model, csrRow(x, i), y[i]!));
  return { ...model, weights: model.weights.map((w, j) => w + step[j]!) };
}

test("Newton leave-one-out = one explicit Newton step without the row (Woodbury), 2 and 3 classes", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 3 }),
      fc.integer({ min: 12, max: 40 }),
      fc.integer({ min: 2, max: 7 }),
      fc.double({ min: 0.05, max: 2, noNaN: true }),
      fc.integer(),
      (classes, rows, dim, lambda, seed) => {
        const { x, y } = synthetic(rows, dim, classes, seed);
        const { model } = trainLogistic(x, y, { classes, lambda, tolerance: 1e-11 });
        const inf = prepareInfluence(model, x, y);
        const t = randomTestRow(dim, seed);
        const label = Math.abs(seed) % classes;
        const scores = looInfluenceScores(inf, t, label);
        const base = rowLoss(model, t, label);
        for (let i = 0; i < rows; i += 3) {
          const want = rowLoss(denseNewtonStep(model, x, y, i), t, label) - base;
          assert.ok(
            Math.abs(scores[i]! - want) <= 1e-9 * Math.max(1, Math.abs(want)) + 1e-13,
            `row ${i}: ${scores[i]} vs ${want}`,
          );
        }
      },
    ),
    { numRuns: 60 },
  );
});

test("binary: same sign as first-order, never smaller when helpful, leverage in [0, 1)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 10, max: 60 }),
      fc.integer({ min: 2, max: 8 }),
      fc.double({ min: 0.02, max: 3, noNaN: true }),
      fc.integer(),
      (rows, dim, lambda, seed) => {
        const { x, y } = synthetic(rows, dim, 2, seed);
        const { model } = trainLogistic(x, y, { classes: 2, lambda });
        const inf = prepareInfluence(model, x, y);
        for (let i = 0; i < rows; i++) {
          const r = inf.residuals[i]!;
          const p = r + y[i]!; // r = p - y
          const leverage = p * (1 - p) * inf.kernel[i]!;
          assert.ok(leverage >= 0 && leverage < 1, `leverage ${leverage}`);
          if (r !== 0) assert.ok(inf.looResiduals[i]! / r >= 1);
        }
        const t = randomTestRow(dim, seed);
        for (const label of [0, 1]) {
          const fo = influenceScores(inf, t, label);
          const nl = looInfluenceScores(inf, t, label);
          for (let i = 0; i < rows; i++) {
            assert.equal(Math.sign(nl[i]!), Math.sign(fo[i]!), `row ${i}`);
            if (fo[i]! > 0) assert.ok(nl[i]! >= fo[i]! * (1 - 1e-12), `row ${i}: ${nl[i]} < ${fo[i]}`);
          }
        }
      },
    ),
    { numRuns: 80 },
  );
});

test("deterministic: repeated scoring and a decoded model file give bit-identical quantized scores", () => {
  const texts = loadSpamAssassin(160, 5);
  const rows = texts.map((t, i) => ({
    rowId: `row-${String(i).padStart(4, "0")}`,
    contributionId: `k-${i % 13}`,
    contributorId: `0x${(i % 7).toString(16).padStart(40, "0")}`,
    text: t.text,
    label: t.label,
  }));
  const features = { dim: 128, maxNgram: 2 as const, maxChars: 2000 };
  const m = trainInfluenceModel(rows, features, { classes: 2, lambda: 0.3 });
  const back = decodeInfluenceModel(Buffer.concat(encodeInfluenceModel(m)));
  assert.deepEqual(back.influence.kernel, m.influence.kernel);
  assert.deepEqual(back.influence.looResiduals, m.influence.looResiduals);
  for (const t of loadSpamAssassin(170, 5).slice(160)) {
    const v = hashFeatures(t.text, features);
    const q = quantize(looInfluenceScores(m.influence, v, 1));
    assert.deepEqual(quantize(looInfluenceScores(m.influence, v, 1)), q);
    assert.deepEqual(quantize(looInfluenceScores(back.influence, v, 1)), q);
    const att = attributeInfluence(back.influence, back.rows, v);
    assert.equal(att.estimator, "newton-loo");
    if (att.weights.length > 0)
      assert.equal(
        att.weights.reduce((s, w) => s + w.ppm, 0),
        PPM_TOTAL,
      );
  }
  // Self-influence from the stored kernel equals the dense quadratic form g_iᵀH⁻¹g_i.
  const self = selfInfluence(m.influence);
  const P = m.influence.model.weights.length;
  for (const i of [0, 17, 99]) {
    const g = lossGradient(m.influence.model, csrRow(m.influence.x, i), m.labels[i]!);
    const w = choleskySolve(m.influence.cholesky, P, g);
    const want = g.reduce((s, gj, j) => s + gj * w[j]!, 0);
    assert.ok(Math.abs(self[i]! - want) <= 1e-12 * Math.max(1, want));
  }
});

test("a planted high-leverage row: the correction moves its score to the retrained effect", () => {
  // 300 ordinary rows over buckets 0..29, plus one row that alone carries buckets 30/31 (a rare
  // phrase only its contributor wrote). A test point using that phrase depends on it heavily.
  const base = synthetic(300, 30, 2, 42);
  const vecs: SparseVector[] = Array.from({ length: base.x.rows }, (_, r) => {
    const v = csrRow(base.x, r);
    return { indices: Int32Array.from(v.indices), values: Float64Array.from(v.values) };
  });
  vecs.push({ indices: Int32Array.from([4, 30, 31]), values: Float64Array.from([0.3, 0.8, 0.5]) });
  const x = toCsr(vecs, 32);
  const y = Int32Array.from([...base.y, 1]);
  const planted = x.rows - 1;
  const lambda = 0.1;
  const { model } = trainLogistic(x, y, { classes: 2, lambda, tolerance: 1e-11 });
  const inf = prepareInfluence(model, x, y);
  const r = inf.residuals[planted]!;
  const p = r + 1; // label 1: r = p - 1
  const leverage = p * (1 - p) * inf.kernel[planted]!;
  const t = { indices: Int32Array.from([30, 31]), values: Float64Array.from([0.6, 0.8]) };
  const fo = influenceScores(inf, t, 1)[planted]!;
  const nl = looInfluenceScores(inf, t, 1)[planted]!;
  const actual = rowLoss(retrainWithout(inf, y, planted), t, 1) - rowLoss(model, t, 1);
  assert.ok(actual > 0, "removing the row hurts the test point");
  assert.ok(leverage > 0.3, `planted leverage ${leverage}`);
  assert.ok(fo / actual < 0.8, `first-order ratio ${fo / actual}`);
  assert.ok(Math.abs(nl / actual - 1) < 0.05, `newton ratio ${nl / actual}`);
  assert.ok(Math.abs(nl - actual) < Math.abs(fo - actual));
  // It is also the row paid most for that answer.
  const refs: TrainingRowRef[] = Array.from({ length: x.rows }, (_, i) => ({
    rowId: `r${i}`,
    contributionId: `k${i}`,
    contributorId: i === planted ? "0xplanted" : `0x${i % 9}`,
  }));
  const att = attributeInfluence(inf, refs, t, { label: 1 });
  assert.equal(att.topHelpful[0]!.rowId, `r${planted}`);
});

for (const { name, load, lambda } of [
  { name: "SpamAssassin", load: () => loadSpamAssassin(706, 1), lambda: 0.2 },
  { name: "State of the Union (party)", load: () => loadSotuPassages(706, 1), lambda: 0.2 },
]) {
  test(`${name}: top rows' Newton leave-one-out within 5% of retraining, first-order further`, () => {
    const data = load();
    const r = topRowsLooExperiment({
      train: data.slice(0, 700),
      test: data.slice(700),
      features: { dim: 256, maxNgram: 2, maxChars: 3000 },
      lambda,
      testPoints: 2,
      candidates: 15,
    });
    assert.ok(r.newtonLoo.ratios.length >= 15);
    assert.ok(Math.abs(r.newtonLoo.median - 1) <= 0.05, `newton-loo median ${r.newtonLoo.median}`);
    assert.ok(
      Math.abs(r.newtonLoo.median - 1) < Math.abs(r.firstOrder.median - 1),
      `first-order ${r.firstOrder.median} vs newton-loo ${r.newtonLoo.median}`,
    );
  });
}
