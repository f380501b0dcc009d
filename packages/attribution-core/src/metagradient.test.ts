import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type AdamWHyperparameters,
  adamwMetagradientInfluence,
  type RecordedStep,
  type TrainingTape,
} from "./metagradient.ts";
import { mulberry32 } from "./testing/spam-assassin.ts";

/**
 * A small non-convex model with exact derivatives, trained by an independent float64 AdamW (the
 * update of model-runtime's Trainer, written out again): per row ℓ_i(θ) = φ_i(x_i·θ) with
 * φ(z) = softplus(−y z) + 0.1 cos z. The metagradient must predict what retraining with one row's
 * weight moved by a factor (1 ± δ) does to a held-out answer's loss.
 */
const HYPER: AdamWHyperparameters = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, clipNorm: 0.6 };
const D = 7;
const STEPS = 14;

interface Problem {
  xs: Float64Array[];
  ys: number[];
  answer: { x: Float64Array; y: number };
  theta0: Float64Array;
  lrs: number[];
}

function problem(seed: number, rows: number): Problem {
  const rnd = mulberry32(seed);
  const vec = (scale: number) =>
    // the last coordinate is 0 in every row: its gradient, m and v stay 0 (the v' = 0 case)
    Float64Array.from({ length: D }, (_, j) => (j === D - 1 ? 0 : (rnd() * 2 - 1) * scale));
  const xs = Array.from({ length: rows }, () => vec(3));
  const ys = xs.map(() => (rnd() < 0.5 ? -1 : 1));
  const theta0 = Float64Array.from({ length: D }, () => (rnd() - 0.5) * 0.2);
  const lrs = Array.from(
    { length: STEPS },
    (_, t) => 0.05 * (0.1 + 0.45 * (1 + Math.cos((Math.PI * t) / STEPS))),
  );
  return { xs, ys, answer: { x: vec(2), y: 1 }, theta0, lrs };
}

const sig = (z: number) => 1 / (1 + Math.exp(-z));
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += a[j]! * b[j]!;
  return s;
};
/** φ'(z) and φ''(z) of φ(z) = softplus(−y z) + 0.1 cos z. */
const d1 = (z: number, y: number) => -y * sig(-y * z) - 0.1 * Math.sin(z);
const d2 = (z: number, y: number) => sig(y * z) * sig(-y * z) - 0.1 * Math.cos(z);

/** Trains with row weights `w`; returns θ_T and the tape (float32 state, as the Trainer stores it). */
function train(
  p: Problem,
  w: readonly number[],
): { theta: Float64Array; tape: TrainingTape; clipped: boolean[] } {
  const n = p.xs.length;
  const theta = Float64Array.from(p.theta0);
  const m = new Float64Array(D);
  const v = new Float64Array(D);
  const steps: RecordedStep[] = [];
  const clipped: boolean[] = [];
  for (let t = 0; t < STEPS; t++) {
    const g = new Float64Array(D);
    const rowGrads = new Float32Array(n * D);
    p.xs.forEach((x, i) => {
      const c = w[i]! * d1(dot(x, theta), p.ys[i]!);
      for (let j = 0; j < D; j++) {
        g[j] = g[j]! + c * x[j]!;
        rowGrads[i * D + j] = c * x[j]!;
      }
    });
    steps.push({
      step: t,
      lr: p.lrs[t]!,
      params: Float32Array.from(theta),
      m: Float32Array.from(m),
      v: Float32Array.from(v),
      grad: Float32Array.from(g),
      rowGrads,
    });
    const norm = Math.sqrt(dot(g, g));
    clipped.push(norm > HYPER.clipNorm);
    const s = norm > HYPER.clipNorm ? HYPER.clipNorm / (norm + 1e-6) : 1;
    const bc1 = 1 - HYPER.beta1 ** (t + 1);
    const bc2 = 1 - HYPER.beta2 ** (t + 1);
    const lr = p.lrs[t]!;
    for (let j = 0; j < D; j++) {
      const gh = g[j]! * s;
      m[j] = HYPER.beta1 * m[j]! + (1 - HYPER.beta1) * gh;
      v[j] = HYPER.beta2 * v[j]! + (1 - HYPER.beta2) * gh * gh;
      theta[j] =
        theta[j]! * (1 - lr * HYPER.weightDecay) -
        (lr * (m[j]! / bc1)) / (Math.sqrt(v[j]! / bc2) + HYPER.eps);
    }
  }
  return { theta, tape: { hyper: HYPER, rows: n, dim: D, steps }, clipped };
}

const answerLoss = (p: Problem, theta: Float64Array) =>
  Math.log1p(Math.exp(-p.answer.y * dot(p.answer.x, theta)));

/** Exact H_t v of Σ w_i ℓ_i at the tape's θ_t. */
function exactHvp(p: Problem, tape: TrainingTape, w: readonly number[]) {
  return async (t: number, v: Float64Array) => {
    const theta = tape.steps[t]!.params;
    const out = new Float64Array(D);
    p.xs.forEach((x, i) => {
      const c = w[i]! * d2(dot(x, theta), p.ys[i]!) * dot(x, v);
      for (let j = 0; j < D; j++) out[j] = out[j]! + c * x[j]!;
    });
    return out;
  };
}

async function check(seed: number) {
  const n = 9;
  const p = problem(seed, n);
  const w = Array.from({ length: n }, () => 1 / n);
  const { theta, tape, clipped } = train(p, w);
  const za = p.answer.y * dot(p.answer.x, theta);
  const answerGrad = p.answer.x.map((x) => -p.answer.y * sig(-za) * x);
  const exact = await adamwMetagradientInfluence(tape, answerGrad, { hvp: exactHvp(p, tape, w) });
  const firstOrder = await adamwMetagradientInfluence(tape, answerGrad, { hvp: null });
  const noV = await adamwMetagradientInfluence(tape, answerGrad, {
    hvp: exactHvp(p, tape, w),
    secondMomentAdjoint: false,
  });
  // Retraining: row i's weight times (1 ± δ); τ_i = −∂L/∂log w_i.
  const delta = 1e-4;
  const retrained = Array.from({ length: n }, (_, i) => {
    const at = (f: number) =>
      answerLoss(
        p,
        train(
          p,
          w.map((x, k) => (k === i ? x * f : x)),
        ).theta,
      );
    return -(at(1 + delta) - at(1 - delta)) / (2 * delta);
  });
  const relErr = (est: Float64Array) => {
    let num = 0;
    let den = 0;
    for (let i = 0; i < n; i++) {
      num += (est[i]! - retrained[i]!) ** 2;
      den += retrained[i]! ** 2;
    }
    return Math.sqrt(num / den);
  };
  return { exact: relErr(exact), firstOrder: relErr(firstOrder), noV: relErr(noV), clipped };
}

test("AdamW metagradients predict retraining with a row re-weighted; dropping the Hessian or the v̄ term does not", async () => {
  const clipped: boolean[] = [];
  for (const seed of [1, 2, 3, 4]) {
    const r = await check(seed);
    clipped.push(...r.clipped);
    // float32 tape (as the Trainer stores it), float64 retraining: ~1e-8 apart
    assert.ok(r.exact < 1e-6, `seed ${seed}: exact metagradient off by ${r.exact}`);
    assert.ok(
      r.firstOrder > 0.05,
      `seed ${seed}: without H_t the metagradient must be wrong (${r.firstOrder})`,
    );
    assert.ok(r.noV > 0.05, `seed ${seed}: without v̄ the metagradient must be wrong (${r.noV})`);
  }
  // both branches of the clipping adjoint were exercised
  assert.ok(clipped.includes(true) && clipped.includes(false));
});

test("metagradient influence is deterministic and checks its sizes", async () => {
  const p = problem(5, 6);
  const w = Array.from({ length: 6 }, () => 1 / 6);
  const { tape } = train(p, w);
  const g = Float64Array.from({ length: D }, (_, j) => j - 3);
  const a = await adamwMetagradientInfluence(tape, g, { hvp: exactHvp(p, tape, w) });
  const b = await adamwMetagradientInfluence(tape, g, { hvp: exactHvp(p, tape, w) });
  assert.deepEqual(a, b);
  await assert.rejects(adamwMetagradientInfluence(tape, new Float64Array(D - 1), { hvp: null }), RangeError);
  const bad = { ...tape, rows: 7 };
  await assert.rejects(adamwMetagradientInfluence(bad, g, { hvp: null }), RangeError);
});
