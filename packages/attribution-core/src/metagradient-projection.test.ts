import assert from "node:assert/strict";
import { test } from "node:test";
import { adamwMetagradientInfluence, type RecordedStep, type TrainingTape } from "./metagradient.ts";
import {
  principalDirections,
  projectedMetagradientInfluence,
  projectMetagradient,
  rowUpdateDirections,
} from "./metagradient-projection.ts";
import { mulberry32 } from "./testing/spam-assassin.ts";

/**
 * A tape of a made-up AdamW run over rows in a `span`-dimensional subspace of R^dim (so the rows'
 * gradients have rank `span` < dim), with a symmetric made-up Hessian per step: the projection is
 * checked against the full reverse pass on the same tape, which metagradient.test.ts checks against
 * retraining.
 */
const DIM = 8;
const ROWS = 10;
const STEPS = 6;
const SPAN = 5;

function fixture(seed: number) {
  const rnd = mulberry32(seed);
  const r = () => rnd() * 2 - 1;
  const axes = Array.from({ length: SPAN }, () => Float64Array.from({ length: DIM }, r));
  const inSpan = () => {
    const v = new Float64Array(DIM);
    for (const a of axes) {
      const c = r();
      for (let j = 0; j < DIM; j++) v[j] = v[j]! + c * a[j]!;
    }
    return v;
  };
  const rowsAt = Array.from({ length: STEPS + 1 }, () => Array.from({ length: ROWS }, inSpan));
  const steps: RecordedStep[] = [];
  const m = new Float32Array(DIM);
  const v = new Float32Array(DIM);
  for (let t = 0; t < STEPS; t++) {
    const rowGrads = new Float32Array(ROWS * DIM);
    const grad = new Float32Array(DIM);
    rowsAt[t]!.forEach((g, i) => {
      for (let j = 0; j < DIM; j++) {
        rowGrads[i * DIM + j] = g[j]! / ROWS;
        grad[j] = grad[j]! + g[j]! / ROWS;
      }
    });
    steps.push({
      step: t,
      lr: 0.01,
      params: Float32Array.from({ length: DIM }, r),
      m: Float32Array.from(m),
      v: Float32Array.from(v),
      grad,
      rowGrads,
    });
    for (let j = 0; j < DIM; j++) {
      m[j] = 0.9 * m[j]! + 0.1 * grad[j]!;
      v[j] = 0.999 * v[j]! + 0.001 * grad[j]! * grad[j]!;
    }
  }
  const tape: TrainingTape = {
    hyper: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, clipNorm: 1 },
    rows: ROWS,
    dim: DIM,
    steps,
  };
  // H_t = A_tᵀA_t − I/2 (symmetric, indefinite), one per step
  const hs = steps.map(() => Array.from({ length: DIM }, () => Float64Array.from({ length: DIM }, r)));
  const hvp = async (t: number, x: Float64Array) => {
    const a = hs[t]!;
    const ax = a.map((row) => row.reduce((s, e, j) => s + e * x[j]!, 0));
    return Float64Array.from(
      { length: DIM },
      (_, j) => a.reduce((s, row, i) => s + row[j]! * ax[i]!, 0) - x[j]! / 2,
    );
  };
  // final-adapter gradients of the rows (what the directions come from) and an answer in their span
  const finalRows = new Float64Array(ROWS * DIM);
  rowsAt[STEPS]!.forEach((g, i) => {
    finalRows.set(g, i * DIM);
  });
  return { tape, hvp, finalRows, inSpan, outOfSpan: () => Float64Array.from({ length: DIM }, r) };
}

const relDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
};

test("principal directions: orthonormal in the scaled metric, ordered, capped at the gradients' rank", async () => {
  const { finalRows } = fixture(1);
  const scale = Float64Array.from({ length: DIM }, (_, j) => 0.5 + j / 4);
  for (const s of [undefined, scale]) {
    const d = await principalDirections(finalRows, ROWS, DIM, DIM, s);
    assert.equal(d.k, SPAN, "k is capped at the rank of the rows' gradients");
    for (let a = 0; a < d.k; a++) {
      for (let b = 0; b < d.k; b++) {
        // u_a · u_b = basis_a · dual_b (u = basis·s = dual/s)
        let dot = 0;
        for (let j = 0; j < DIM; j++) dot += d.basis[a * DIM + j]! * d.dual[b * DIM + j]!;
        assert.ok(Math.abs(dot - (a === b ? 1 : 0)) < 1e-10, `u_${a}·u_${b} = ${dot}`);
      }
      // the variance along u_a is Σ_i ((s g_i)·u_a)² = Σ_i (g_i · dual_a)²
      let variance = 0;
      for (let i = 0; i < ROWS; i++) {
        let c = 0;
        for (let j = 0; j < DIM; j++) c += finalRows[i * DIM + j]! * d.dual[a * DIM + j]!;
        variance += c * c;
      }
      assert.ok(Math.abs(variance - d.variance[a]!) < 1e-9 * d.variance[0]!);
      if (a > 0) assert.ok(d.variance[a]! <= d.variance[a - 1]!);
    }
  }
  await assert.rejects(principalDirections(finalRows, ROWS, DIM - 1, 2), RangeError);
  await assert.rejects(principalDirections(finalRows, ROWS, DIM, 0), RangeError);
});

test("projected metagradient: exact for answers in the directions' span, τ(ĝ) otherwise, any k from one precompute", async () => {
  const { tape, hvp, finalRows, inSpan, outOfSpan } = fixture(2);
  const scale = Float64Array.from({ length: DIM }, (_, j) => 2 ** (j - 4));
  for (const s of [undefined, scale]) {
    const directions = await principalDirections(finalRows, ROWS, DIM, SPAN, s);
    const p = await projectMetagradient(tape, directions, { hvp });
    // an answer in the span of the rows' gradients: the projection is the full reverse pass
    const g = inSpan();
    const exact = await adamwMetagradientInfluence(tape, g, { hvp });
    const full = projectedMetagradientInfluence(p, g);
    assert.ok(Math.abs(full.captured - 1) < 1e-10, `captured ${full.captured}`);
    assert.ok(relDiff(full.scores, exact) < 1e-9, `in span: ${relDiff(full.scores, exact)}`);
    // fewer directions, or an answer outside the span: the reverse pass of the projected gradient
    // ĝ = S⁻¹ U Uᵀ S g, computed here independently of the dual/basis bookkeeping
    for (const [answer, k] of [
      [g, 2],
      [outOfSpan(), SPAN],
    ] as const) {
      const u = Array.from({ length: k }, (_, j) =>
        Float64Array.from({ length: DIM }, (_, e) => directions.basis[j * DIM + e]! * (s ? s[e]! : 1)),
      );
      const sg = Float64Array.from(answer, (x, e) => x * (s ? s[e]! : 1));
      const gHat = new Float64Array(DIM);
      for (const uj of u) {
        const c = uj.reduce((acc, x, e) => acc + x * sg[e]!, 0);
        for (let e = 0; e < DIM; e++) gHat[e] = gHat[e]! + (c * uj[e]!) / (s ? s[e]! : 1);
      }
      const want = await adamwMetagradientInfluence(tape, gHat, { hvp });
      const got = projectedMetagradientInfluence(p, answer, k);
      assert.ok(relDiff(got.scores, want) < 1e-9, `k=${k}: ${relDiff(got.scores, want)}`);
      const res = answer.reduce((acc, x, e) => acc + (x - gHat[e]!) ** 2, 0);
      const norm = answer.reduce((acc, x) => acc + x * x, 0);
      assert.ok(Math.abs(got.captured - (1 - res / norm)) < 1e-10);
      assert.ok(got.captured < 0.999, "this answer is not in the first k directions' span");
      // and it is not the full reverse pass (the test would not notice a projection that does nothing)
      assert.ok(relDiff(got.scores, await adamwMetagradientInfluence(tape, answer, { hvp })) > 1e-3);
    }
  }
  const p = await projectMetagradient(tape, await principalDirections(finalRows, ROWS, DIM, 2), {
    hvp: null,
  });
  assert.throws(() => projectedMetagradientInfluence(p, new Float64Array(DIM), 3), RangeError);
  assert.throws(() => projectedMetagradientInfluence(p, new Float64Array(DIM - 1)), RangeError);
});

test("rowUpdateDirections: each row's clipped gradient terms times Adam's momentum-summed step sizes", () => {
  const { tape } = fixture(3);
  const { beta1: b1, beta2: b2, eps, clipNorm } = tape.hyper;
  const d = rowUpdateDirections(tape);
  // the documented sum, written out term by term
  const den = tape.steps.map((s) => {
    const norm = Math.sqrt(s.grad.reduce((a, x) => a + x * x, 0));
    const scale = norm > clipNorm ? clipNorm / (norm + 1e-6) : 1;
    const v = Float64Array.from(s.v, (x, j) => b2 * x + (1 - b2) * (s.grad[j]! * scale) ** 2);
    return { scale, root: Float64Array.from(v, (x) => Math.sqrt(x / (1 - b2 ** (s.step + 1))) + eps) };
  });
  assert.ok(den.some((x) => x.scale < 1) && den.some((x) => x.scale === 1), "both clipping branches");
  for (let i = 0; i < ROWS; i++) {
    for (let j = 0; j < DIM; j++) {
      let want = 0;
      tape.steps.forEach((s, t) => {
        let a = 0;
        for (let u = t; u < STEPS; u++) {
          const su = tape.steps[u]!;
          a += (b1 ** (u - t) * su.lr) / ((1 - b1 ** (su.step + 1)) * den[u]!.root[j]!);
        }
        want += (1 - b1) * a * den[t]!.scale * s.rowGrads[i * DIM + j]!;
      });
      assert.ok(Math.abs(d[i * DIM + j]! - want) <= 1e-9 * Math.abs(want) + 1e-15, `row ${i} coord ${j}`);
    }
  }
});
