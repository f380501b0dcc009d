import type { LoraAdapter } from "./adapter.ts";
import { type LlamaConfig, LORA_MODULES, type LoraModule, TINY_CONFIG } from "./config.ts";
import { type BaseModel, generateBaseModel } from "./model.ts";
import { referenceForward } from "./reference.ts";
import { Rng } from "./rng.ts";
import { Trainer } from "./train.ts";
import { batchFromRows, type TrainBatch } from "./train-data.ts";
import { loraParamName } from "./train-graph.ts";

/**
 * Gradients of the ONNX training graph against central finite differences of the plain-TS
 * f64 reference forward (reference.ts, independent code): the loss Σ w·nll is recomputed in
 * f64 with one weight moved by ±ε. Each checked coordinate's relative error is
 * |g − fd| / max(|g|, |fd|); coordinates whose gradient is below 1% of the tensor's largest
 * are skipped (their relative error measures f32 rounding, not the derivation). Used by
 * train-graph.test.ts (asserts) and bench/factory.ts (reports `gradCheckMaxRelErr`).
 */

/** GQA (4 heads over 2 KV heads) and an untied head, so every block's gradient is exercised. */
export const GRAD_CHECK_CONFIG: LlamaConfig = { ...TINY_CONFIG, numLayers: 2, tieWordEmbeddings: false };
export const GRAD_CHECK_TARGETS: LoraModule[] = [...LORA_MODULES];
const B = 2;
const T = 7;
const enc = (s: string) => [...new TextEncoder().encode(s)];
export const GRAD_CHECK_ROWS = [enc("the whale!"), enc("Call me")];
export const GRAD_CHECK_BATCH: TrainBatch = batchFromRows(GRAD_CHECK_ROWS, B, T);

/** The tiny model of the check, with weights halved (keeps the softmaxes away from saturation). */
export function gradCheckModel(): BaseModel {
  const model = generateBaseModel(GRAD_CHECK_CONFIG, 7);
  for (const [name, t] of model.weights) {
    if (!name.endsWith("norm.weight")) for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! * 0.5;
  }
  return model;
}

/** Σ w·nll of the check's batch by the f64 reference forward. */
export function referenceLoss(m: BaseModel, adapter?: LoraAdapter): number {
  let loss = 0;
  const batch = GRAD_CHECK_BATCH;
  GRAD_CHECK_ROWS.forEach((row, r) => {
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

/** The trainer's current LoRA factors as the reference forward's adapter (views, not copies). */
export function trainerAdapter(trainer: Trainer): LoraAdapter {
  const spec = trainer.options.lora!;
  const modules = new Map<string, { rank: number; scale: number; a: Float32Array; b: Float32Array }>();
  for (let l = 0; l < trainer.model.config.numLayers; l++) {
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

export interface GradCheckResult {
  maxRelErr: number;
  checked: number;
  /** Tensors whose gradient was all zero (a derivation that never reached them). */
  zeroTensors: string[];
}

/** Checks `perTensor` coordinates of every trainable tensor (half the largest-gradient ones, half random). */
export function finiteDifferenceCheck(
  grads: Map<string, Float32Array>,
  values: Map<string, Float32Array>,
  loss: () => number,
  perTensor: number,
): GradCheckResult {
  let maxRelErr = 0;
  let checked = 0;
  const zeroTensors: string[] = [];
  const rng = new Rng(3);
  for (const [name, g] of grads) {
    const w = values.get(name)!;
    let gmax = 0;
    for (const v of g) gmax = Math.max(gmax, Math.abs(v));
    if (!(gmax > 0)) {
      zeroTensors.push(name);
      continue;
    }
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
  return { maxRelErr, checked, zeroTensors };
}

/**
 * The LoRA check: rank 4 on every projection of the tiny GQA model, B set to random values
 * (B = 0 at init would make dA = 0), `perTensor` coordinates per LoRA factor.
 */
export async function loraGradCheck(
  perTensor = 6,
): Promise<GradCheckResult & { loss: number; referenceLoss: number }> {
  const model = gradCheckModel();
  const trainer = await Trainer.create(model, {
    mode: "lora",
    lora: { rank: 4, alpha: 8, targetModules: GRAD_CHECK_TARGETS },
    batch: B,
    seq: T,
    optimizer: { lr: 1e-3 },
    seed: 1,
    intraOpThreads: 1,
  });
  try {
    const rng = new Rng(11);
    for (const p of trainer.params)
      if (p.name.includes("lora_B")) rng.fillUniform(trainer.values.get(p.name)!, 0.3);
    const adapter = trainerAdapter(trainer);
    const { loss, grads } = await trainer.gradients(GRAD_CHECK_BATCH);
    const ref = referenceLoss(model, adapter);
    const check = finiteDifferenceCheck(
      grads,
      trainer.values,
      () => referenceLoss(model, adapter),
      perTensor,
    );
    return { ...check, loss, referenceLoss: ref };
  } finally {
    await trainer.dispose();
  }
}
