import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { LoraAdapter } from "./adapter.ts";
import { type LlamaConfig, type LoraModule, TINY_CONFIG } from "./config.ts";
import { type BaseModel, generateBaseModel } from "./model.ts";
import { referenceForward } from "./reference.ts";
import { Rng } from "./rng.ts";
import { Trainer } from "./train.ts";
import { batchFromRows, type TrainBatch } from "./train-data.ts";
import { loraParamName } from "./train-graph.ts";

/**
 * Gradients of the ONNX training graph against central finite differences of the plain-TS
 * f64 reference forward (reference.ts, independent code): the loss Σ w·nll is recomputed
 * in f64 with one weight moved by ±ε. Each checked coordinate's relative error is
 * |g − fd| / max(|g|, |fd|); coordinates whose gradient is below 1% of the tensor's
 * largest are skipped (their relative error measures f32 rounding, not the derivation).
 */

// GQA (4 heads over 2 KV heads) and an untied head, so every block's gradient is exercised.
const CONFIG: LlamaConfig = { ...TINY_CONFIG, numLayers: 2, tieWordEmbeddings: false };
const TARGETS: LoraModule[] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
const B = 2;
const T = 7;
const rows = [[...new TextEncoder().encode("the whale!")], [...new TextEncoder().encode("Call me")]];
const batch: TrainBatch = batchFromRows(rows, B, T);
let model: BaseModel;
const trainers: Trainer[] = [];

before(() => {
  model = generateBaseModel(CONFIG, 7);
  // Smaller weights than the generator's unit-variance init keep the softmaxes away from saturation.
  for (const [name, t] of model.weights) {
    if (!name.endsWith("norm.weight")) for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! * 0.5;
  }
});
after(async () => {
  for (const t of trainers) await t.dispose();
});

function refLoss(m: BaseModel, adapter?: LoraAdapter): number {
  let loss = 0;
  rows.forEach((row, r) => {
    const logits = referenceForward(m, row.slice(0, T), adapter);
    for (let t = 0; t < logits.length; t++) {
      const w = batch.labelWeights[r * T + t]!;
      if (w === 0) continue;
      const l = logits[t]!;
      let max = Number.NEGATIVE_INFINITY;
      for (const v of l) max = Math.max(max, v);
      let s = 0;
      for (const v of l) s += Math.exp(v - max);
      loss += w * (max + Math.log(s) - l[Number(batch.labels[r * T + t])]!);
    }
  });
  return loss;
}

function adapterOf(trainer: Trainer): LoraAdapter {
  const spec = trainer.options.lora!;
  const modules = new Map<string, { rank: number; scale: number; a: Float32Array; b: Float32Array }>();
  for (let l = 0; l < CONFIG.numLayers; l++) {
    for (const m of spec.targetModules) {
      modules.set(`${l}.${m}`, {
        rank: spec.rank,
        scale: spec.alpha / spec.rank,
        a: trainer.values.get(loraParamName(l, m, "A"))!,
        b: trainer.values.get(loraParamName(l, m, "B"))!,
      });
    }
  }
  return { rank: spec.rank, targetModules: spec.targetModules, modules };
}

/** Checks `perTensor` coordinates of every trainable tensor (largest-gradient ones first). */
function gradCheck(
  grads: Map<string, Float32Array>,
  values: Map<string, Float32Array>,
  loss: () => number,
  perTensor: number,
): { maxRelErr: number; checked: number } {
  let maxRelErr = 0;
  let checked = 0;
  const rng = new Rng(3);
  for (const [name, g] of grads) {
    const w = values.get(name)!;
    let gmax = 0;
    for (const v of g) gmax = Math.max(gmax, Math.abs(v));
    assert.ok(gmax > 0, `${name}: gradient is all zero`);
    const order = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]!) - Math.abs(g[a]!));
    const picks = new Set(order.slice(0, Math.ceil(perTensor / 2)));
    while (picks.size < Math.min(perTensor, g.length)) {
      const i = rng.nextU32() % g.length;
      if (Math.abs(g[i]!) >= 0.01 * gmax) picks.add(i);
      else if (picks.size + 1 >= g.length) break;
      else picks.add(order[picks.size]!);
    }
    for (const i of picks) {
      const orig = w[i]!;
      const eps = 1e-3 * Math.max(1, Math.abs(orig));
      w[i] = orig + eps;
      const up = w[i]!;
      const lp = loss();
      w[i] = orig - eps;
      const down = w[i]!;
      const lm = loss();
      w[i] = orig;
      const fd = (lp - lm) / (up - down);
      const rel = Math.abs(fd - g[i]!) / Math.max(Math.abs(fd), Math.abs(g[i]!));
      maxRelErr = Math.max(maxRelErr, rel);
      checked++;
    }
  }
  return { maxRelErr, checked };
}

test("LoRA (every projection, GQA): loss equals the reference, gradients match finite differences", async () => {
  const trainer = await Trainer.create(model, {
    mode: "lora",
    lora: { rank: 4, alpha: 8, targetModules: TARGETS },
    batch: B,
    seq: T,
    optimizer: { lr: 1e-3 },
    seed: 1,
    intraOpThreads: 1,
  });
  trainers.push(trainer);
  // B starts at zero (so dA = 0): give it random values to check both factors.
  const rng = new Rng(11);
  for (const p of trainer.params)
    if (p.name.includes("lora_B")) rng.fillUniform(trainer.values.get(p.name)!, 0.3);
  const adapter = adapterOf(trainer);
  const { loss, grads } = await trainer.gradients(batch);
  const ref = refLoss(model, adapter);
  assert.ok(Math.abs(loss - ref) < 1e-4 * Math.abs(ref), `loss ${loss} vs reference ${ref}`);
  const { maxRelErr, checked } = gradCheck(grads, trainer.values, () => refLoss(model, adapter), 6);
  console.log(`LoRA grad check: ${checked} coordinates, max relative error ${maxRelErr.toExponential(2)}`);
  assert.ok(maxRelErr < 1e-3, `max relative error ${maxRelErr}`);
});

test("all weights of a small model: gradients of every tensor match finite differences", async () => {
  const trainer = await Trainer.create(model, {
    mode: "full",
    batch: B,
    seq: T,
    optimizer: { lr: 1e-3 },
    seed: 1,
    intraOpThreads: 1,
  });
  trainers.push(trainer);
  const { loss, grads } = await trainer.gradients(batch);
  const current: BaseModel = {
    config: CONFIG,
    weights: new Map(
      trainer.params.map((p) => [p.name, { shape: p.shape, data: trainer.values.get(p.name)! }]),
    ),
  };
  const ref = refLoss(current);
  assert.ok(Math.abs(loss - ref) < 1e-4 * Math.abs(ref), `loss ${loss} vs reference ${ref}`);
  assert.equal(grads.size, trainer.params.length);
  const { maxRelErr, checked } = gradCheck(grads, trainer.values, () => refLoss(current), 4);
  console.log(`full grad check: ${checked} coordinates, max relative error ${maxRelErr.toExponential(2)}`);
  assert.ok(maxRelErr < 1e-3, `max relative error ${maxRelErr}`);
});
