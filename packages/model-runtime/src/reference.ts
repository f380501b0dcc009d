import type { LoraAdapter } from "./adapter.ts";
import type { LoraModule } from "./config.ts";
import { moduleWeightName } from "./config.ts";
import { type BaseModel, getWeight } from "./model.ts";

/**
 * Plain-TypeScript Llama forward pass: slow, obvious, f64 accumulation, no cache.
 * Used only by tests as the ground truth the ONNX graph must match. Returns the logits
 * of every position.
 */
export function referenceForward(model: BaseModel, tokens: number[], adapter?: LoraAdapter): Float64Array[] {
  const c = model.config;
  const h = c.hiddenSize;
  const d = c.headDim;
  const groups = c.numHeads / c.numKvHeads;
  const embed = getWeight(model, "model.embed_tokens.weight").data;
  const T = tokens.length;
  let x: Float64Array[] = tokens.map((id) => Float64Array.from(embed.subarray(id * h, (id + 1) * h)));

  const linear = (layer: number, module: LoraModule, input: Float64Array[]): Float64Array[] => {
    const w = getWeight(model, moduleWeightName(layer, module));
    const [outDim, inDim] = w.shape as [number, number];
    const lora = adapter?.modules.get(`${layer}.${module}`);
    return input.map((v) => {
      const y = new Float64Array(outDim);
      for (let o = 0; o < outDim; o++) {
        let s = 0;
        for (let i = 0; i < inDim; i++) s += v[i]! * w.data[o * inDim + i]!;
        y[o] = s;
      }
      if (lora) {
        // y += scale * B (A x), A: [r, in], B: [out, r] (PEFT layout)
        const ax = new Float64Array(lora.rank);
        for (let r = 0; r < lora.rank; r++) {
          let s = 0;
          for (let i = 0; i < inDim; i++) s += lora.a[r * inDim + i]! * v[i]!;
          ax[r] = s;
        }
        for (let o = 0; o < outDim; o++) {
          let s = 0;
          for (let r = 0; r < lora.rank; r++) s += lora.b[o * lora.rank + r]! * ax[r]!;
          y[o] = y[o]! + lora.scale * s;
        }
      }
      return y;
    });
  };

  const rmsNorm = (v: Float64Array, weight: Float32Array): Float64Array => {
    let ss = 0;
    for (const e of v) ss += e * e;
    const inv = 1 / Math.sqrt(ss / v.length + c.rmsNormEps);
    return v.map((e, i) => e * inv * weight[i]!);
  };

  const rope = (v: Float64Array, heads: number, pos: number): void => {
    const half = d / 2;
    for (let hd = 0; hd < heads; hd++) {
      for (let i = 0; i < half; i++) {
        const angle = pos / c.ropeTheta ** ((2 * i) / d);
        const cos = Math.cos(angle);
        const sin = Math.sin(angle);
        const a = v[hd * d + i]!;
        const b = v[hd * d + i + half]!;
        v[hd * d + i] = a * cos - b * sin;
        v[hd * d + i + half] = b * cos + a * sin;
      }
    }
  };

  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const normed = x.map((v) => rmsNorm(v, getWeight(model, `${p}.input_layernorm.weight`).data));
    const q = linear(l, "q_proj", normed);
    const k = linear(l, "k_proj", normed);
    const v = linear(l, "v_proj", normed);
    for (let t = 0; t < T; t++) {
      rope(q[t]!, c.numHeads, t);
      rope(k[t]!, c.numKvHeads, t);
    }
    const attn = q.map((qt, t) => {
      const out = new Float64Array(c.numHeads * d);
      for (let hd = 0; hd < c.numHeads; hd++) {
        const kvh = Math.floor(hd / groups);
        const scores = new Float64Array(t + 1);
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j <= t; j++) {
          let s = 0;
          for (let i = 0; i < d; i++) s += qt[hd * d + i]! * k[j]![kvh * d + i]!;
          scores[j] = s / Math.sqrt(d);
          max = Math.max(max, scores[j]!);
        }
        let sum = 0;
        for (let j = 0; j <= t; j++) {
          scores[j] = Math.exp(scores[j]! - max);
          sum += scores[j]!;
        }
        for (let j = 0; j <= t; j++) {
          for (let i = 0; i < d; i++)
            out[hd * d + i] = out[hd * d + i]! + (scores[j]! / sum) * v[j]![kvh * d + i]!;
        }
      }
      return out;
    });
    const o = linear(l, "o_proj", attn);
    x = x.map((v, t) => v.map((e, i) => e + o[t]![i]!));
    const normed2 = x.map((v) => rmsNorm(v, getWeight(model, `${p}.post_attention_layernorm.weight`).data));
    const gate = linear(l, "gate_proj", normed2);
    const up = linear(l, "up_proj", normed2);
    const act = gate.map((g, t) => g.map((e, i) => (e / (1 + Math.exp(-e))) * up[t]![i]!));
    const down = linear(l, "down_proj", act);
    x = x.map((v, t) => v.map((e, i) => e + down[t]![i]!));
  }
  const head = c.tieWordEmbeddings ? embed : getWeight(model, "lm_head.weight").data;
  const normW = getWeight(model, "model.norm.weight").data;
  return x.map((v) => {
    const n = rmsNorm(v, normW);
    const logits = new Float64Array(c.vocabSize);
    for (let tok = 0; tok < c.vocabSize; tok++) {
      let s = 0;
      for (let i = 0; i < h; i++) s += n[i]! * head[tok * h + i]!;
      logits[tok] = s;
    }
    return logits;
  });
}

/** The base model with an adapter merged in: W' = W + scale * B A for every adapted module. */
export function mergeAdapter(model: BaseModel, adapter: LoraAdapter): BaseModel {
  const weights = new Map(model.weights);
  for (const [key, lora] of adapter.modules) {
    const [layerStr, module] = key.split(".") as [string, LoraModule];
    const name = moduleWeightName(Number(layerStr), module);
    const w = getWeight(model, name);
    const [outDim, inDim] = w.shape as [number, number];
    const merged = Float32Array.from(w.data);
    for (let o = 0; o < outDim; o++) {
      for (let i = 0; i < inDim; i++) {
        let s = 0;
        for (let r = 0; r < lora.rank; r++) s += lora.b[o * lora.rank + r]! * lora.a[r * inDim + i]!;
        merged[o * inDim + i] = merged[o * inDim + i]! + lora.scale * s;
      }
    }
    weights.set(name, { shape: w.shape, data: merged });
  }
  return { ...model, weights };
}
