import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { choleskyInPlace, choleskySolve, quantize } from "./logistic.ts";
import {
  attributeLoraInfluence,
  dampedFisherSolve,
  decodeLoraGradients,
  encodeLoraGradients,
  type LoraGradients,
  loraInfluenceScores,
  loraSelfInfluence,
  prepareLoraInfluence,
  refinedLoraInfluenceScores,
} from "./lora-influence.ts";
import { mulberry32 } from "./testing/spam-assassin.ts";

function randomGrads(rows: number, blocks: number[], seed: number): LoraGradients {
  const rnd = mulberry32(seed);
  const dim = blocks.reduce((s, b) => s + b, 0);
  return { rows, blocks, values: Float32Array.from({ length: rows * dim }, () => rnd() * 2 - 1) };
}

/** Dense reference: per block, (λI + GᵀG/n)⁻¹ formed and factored in the d×d parameter space. */
function denseScores(
  g: LoraGradients,
  lambdas: number[],
  t: Float64Array,
): { scores: number[]; self: number[] } {
  const { rows: n, blocks, values } = g;
  const dim = blocks.reduce((s, b) => s + b, 0);
  const scores = new Array<number>(n).fill(0);
  const self = new Array<number>(n).fill(0);
  let off = 0;
  blocks.forEach((d, l) => {
    const h = new Float64Array(d * d);
    for (let i = 0; i < n; i++)
      for (let u = 0; u < d; u++)
        for (let v = 0; v < d; v++)
          h[u * d + v]! += (values[i * dim + off + u]! * values[i * dim + off + v]!) / n;
    for (let u = 0; u < d; u++) h[u * d + u]! += lambdas[l]!;
    choleskyInPlace(h, d);
    const w = choleskySolve(h, d, t.subarray(off, off + d));
    for (let i = 0; i < n; i++) {
      const gi = Array.from({ length: d }, (_, u) => values[i * dim + off + u]!);
      const hi = choleskySolve(h, d, gi);
      for (let u = 0; u < d; u++) {
        scores[i]! += w[u]! * gi[u]!;
        self[i]! += hi[u]! * gi[u]!;
      }
    }
    off += d;
  });
  return { scores, self };
}

test("kernel (Woodbury) influence equals the damped Fisher inverse formed in parameter space", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 12 }),
      fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 3 }),
      fc.double({ min: 0.01, max: 2, noNaN: true }),
      fc.integer(),
      (rows, blocks, ratio, seed) => {
        const g = randomGrads(rows, blocks, seed);
        const m = prepareLoraInfluence(g, { dampingRatio: ratio });
        const rnd = mulberry32(seed ^ 77);
        const t = Float64Array.from({ length: g.values.length / rows }, () => rnd() - 0.5);
        const got = loraInfluenceScores(m, t);
        const self = loraSelfInfluence(m);
        const want = denseScores(g, m.lambdas, t);
        for (let i = 0; i < rows; i++) {
          assert.ok(
            Math.abs(got[i]! - want.scores[i]!) <= 1e-8 * (1 + Math.abs(want.scores[i]!)),
            `score ${i}`,
          );
          assert.ok(Math.abs(self[i]! - want.self[i]!) <= 1e-8 * (1 + want.self[i]!), `self ${i}`);
          assert.ok(self[i]! >= 0);
        }
      },
    ),
    { numRuns: 80 },
  );
});

test("LoRA influence: deterministic, linear in the answer gradient, rows with the answer's gradient help", () => {
  const g = randomGrads(40, [24, 16], 9);
  const m = prepareLoraInfluence(g);
  const dim = 40;
  // An answer whose gradient is row 7's: row 7 must be the most helpful.
  const t = Float64Array.from(g.values.subarray(7 * dim, 8 * dim));
  const s = loraInfluenceScores(m, t);
  assert.equal(s.indexOf(Math.max(...s)), 7);
  assert.deepEqual(quantize(loraInfluenceScores(prepareLoraInfluence(g), t)), quantize(s));
  const twice = loraInfluenceScores(
    m,
    t.map((v) => 2 * v),
  );
  for (let i = 0; i < 40; i++) assert.ok(Math.abs(twice[i]! - 2 * s[i]!) <= 1e-12 * (1 + Math.abs(s[i]!)));
  assert.throws(() => loraInfluenceScores(m, new Float64Array(3)), RangeError);
  assert.throws(
    () => prepareLoraInfluence({ rows: 2, blocks: [3], values: new Float32Array(5) }),
    RangeError,
  );
});

test("LoRA gradient artifact: encodes and decodes exactly; attribution pays positive rows' contributors, ppm summing to 1e6", () => {
  const grads = randomGrads(7, [6, 4], 11);
  const rows = Array.from({ length: 7 }, (_, i) => ({
    rowId: String(i + 1),
    contributionId: `c${i}`,
    contributorId: `0x${(i % 3).toString().padStart(40, "0")}`,
  }));
  const bytes = Buffer.concat(encodeLoraGradients({ grads, rows, meta: { model: "m" } }));
  const back = decodeLoraGradients(new Uint8Array(bytes));
  assert.deepEqual(back.rows, rows);
  assert.deepEqual(back.meta, { model: "m" });
  assert.deepEqual(back.grads.blocks, grads.blocks);
  assert.deepEqual(Array.from(back.grads.values), Array.from(grads.values));
  const corrupt = new Uint8Array(bytes);
  corrupt[corrupt.length - 1]! ^= 1;
  assert.throws(() => decodeLoraGradients(corrupt), /checksum/);

  const m = prepareLoraInfluence(back.grads);
  // The answer's gradient = row 2's: row 2 helps it most.
  const t = Float64Array.from(grads.values.subarray(2 * 10, 3 * 10));
  const a = attributeLoraInfluence(m, rows, t, { dampingRatio: 0.01 });
  assert.equal(a.topHelpful[0]!.rowId, "3");
  assert.equal(
    a.weights.reduce((s, w) => s + w.ppm, 0),
    1_000_000,
  );
  assert.ok(a.weights.some((w) => w.contributorId === rows[2]!.contributorId && w.ppm > 0));
  assert.deepEqual(attributeLoraInfluence(m, rows, t, { dampingRatio: 0.01 }), a);
  const none = attributeLoraInfluence(m, rows, new Float64Array(10), { dampingRatio: 0.01 });
  assert.deepEqual(none.weights, []);
  assert.equal(none.unattributed, "no-positive-influence");
});

/** Block-diagonal c·GᵀG/n + Λ as a dense dim×dim matrix. */
function denseCurvature(g: LoraGradients, lambdas: number[], c: number): Float64Array {
  const { rows: n, blocks, values } = g;
  const dim = blocks.reduce((s, b) => s + b, 0);
  const h = new Float64Array(dim * dim);
  let off = 0;
  blocks.forEach((d, l) => {
    for (let u = off; u < off + d; u++) {
      for (let v = off; v < off + d; v++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += values[i * dim + u]! * values[i * dim + v]!;
        h[u * dim + v] = (c * s) / n + (u === v ? lambdas[l]! : 0);
      }
    }
    off += d;
  });
  return h;
}

test("dampedFisherSolve inverts λI + GᵀG/n per block; refinement converges to (H + Λ)⁻¹ and keeps the Fisher solution when H is the Fisher", async () => {
  const g = randomGrads(9, [5, 4], 21);
  const dim = 9;
  const m = prepareLoraInfluence(g, { dampingRatio: 0.05 });
  const rnd = mulberry32(5);
  const t = Float64Array.from({ length: dim }, () => rnd() - 0.5);
  const fisher = denseCurvature(g, m.lambdas, 1);
  const x = dampedFisherSolve(m, t);
  for (let u = 0; u < dim; u++) {
    let s = 0;
    for (let v = 0; v < dim; v++) s += fisher[u * dim + v]! * x[v]!;
    assert.ok(Math.abs(s - t[u]!) <= 1e-9 * (1 + Math.abs(t[u]!)), `row ${u}`);
  }
  const matVec = (h: Float64Array, lambdasOff: boolean) => async (v: Float64Array) =>
    Float64Array.from({ length: dim }, (_, u) => {
      let s = 0;
      for (let w = 0; w < dim; w++) s += h[u * dim + w]! * v[w]!;
      // the HVP is H alone: take the damping back out
      return lambdasOff ? s - (u < 5 ? m.lambdas[0]! : m.lambdas[1]!) * v[u]! : s;
    });
  const base = loraInfluenceScores(m, t);
  const same = await refinedLoraInfluenceScores(m, t, matVec(fisher, true), { iterations: 5 });
  for (let i = 0; i < 9; i++) assert.ok(Math.abs(same[i]! - base[i]!) <= 1e-8 * (1 + Math.abs(base[i]!)));
  // H = 1.3·Fisher: the iterates converge to g_iᵀ(1.3F + Λ)⁻¹g_t.
  const h = denseCurvature(g, m.lambdas, 1.3);
  const want = (() => {
    const f = Float64Array.from(h);
    choleskyInPlace(f, dim);
    const sol = choleskySolve(f, dim, t);
    return Array.from({ length: 9 }, (_, i) => {
      let s = 0;
      for (let u = 0; u < dim; u++) s += g.values[i * dim + u]! * sol[u]!;
      return s;
    });
  })();
  const seen: number[] = [];
  const got = await refinedLoraInfluenceScores(m, t, matVec(h, true), {
    iterations: 60,
    onIteration: (k) => seen.push(k),
  });
  assert.deepEqual(
    seen,
    Array.from({ length: 61 }, (_, k) => k),
  );
  for (let i = 0; i < 9; i++)
    assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-7 * (1 + Math.abs(want[i]!)), `row ${i}`);
});
