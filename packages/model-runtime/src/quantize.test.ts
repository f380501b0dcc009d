import assert from "node:assert/strict";
import { test } from "node:test";
import { TINY_CONFIG } from "./config.ts";
import { type BaseModel, generateBaseModel } from "./model.ts";
import {
  dequantizeBlockwise,
  dequantizePerChannel,
  QUANT_BLOCK,
  quantizeBlockwise,
  quantizePerChannel,
} from "./quantize.ts";
import { referenceForward } from "./reference.ts";
import { Rng } from "./rng.ts";
import { ModelRuntime } from "./runtime.ts";
import type { Tensor } from "./safetensors.ts";
import { argmax } from "./sampler.ts";

test("blockwise int8 / int4: every weight within half a step (int4: one step at the clipped top), short last block", () => {
  const rng = new Rng(1);
  const rows = 3;
  const cols = 70; // two full blocks and a 6-wide last one
  const w = rng.fillUniform(new Float32Array(rows * cols), 3);
  for (const bits of [8, 4] as const) {
    const q = quantizeBlockwise(w, rows, cols, bits);
    const blocks = Math.ceil(cols / QUANT_BLOCK);
    assert.equal(q.scales.length, rows * blocks);
    assert.equal(q.data.length, (rows * blocks * QUANT_BLOCK * bits) / 8);
    const back = dequantizeBlockwise(q, rows, cols, bits);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const d = Math.abs(q.scales[r * blocks + Math.floor(c / QUANT_BLOCK)]!);
        const err = Math.abs(back[r * cols + c]! - w[r * cols + c]!);
        assert.ok(
          err <= (bits === 8 ? d / 2 : d) + 1e-6,
          `bits ${bits} [${r},${c}] error ${err} > step ${d}`,
        );
      }
    }
  }
});

test("per-channel int8: every weight within half its channel's step, stored as MatMul's B [in, out]", () => {
  const rng = new Rng(2);
  const rows = 5;
  const cols = 70;
  const w = rng.fillUniform(new Float32Array(rows * cols), 3);
  w[2 * cols + 7] = 40; // an outlier widens only its own channel's step
  const q = quantizePerChannel(w, rows, cols);
  assert.equal(q.scales.length, rows);
  assert.equal(q.data[7 * rows + 2], 127);
  const back = dequantizePerChannel(q, rows, cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const err = Math.abs(back[r * cols + c]! - w[r * cols + c]!);
      assert.ok(err <= q.scales[r]! / 2 + 1e-6, `[${r},${c}] error ${err} > half step ${q.scales[r]}`);
    }
  }
  assert.ok(q.scales[2]! > 5 * q.scales[1]!);
});

type Quantized = "int8" | "int4" | "int8c";
const roundTrip = (format: Quantized, data: Float32Array, rows: number, cols: number): Float32Array => {
  if (format === "int8c") return dequantizePerChannel(quantizePerChannel(data, rows, cols), rows, cols);
  const bits = format === "int8" ? 8 : 4;
  return dequantizeBlockwise(quantizeBlockwise(data, rows, cols, bits), rows, cols, bits);
};

/** The model the quantized graph stands for: linear weights and the (untied) head dequantized. */
function dequantizedModel(model: BaseModel, format: Quantized): BaseModel {
  const weights = new Map<string, Tensor>();
  for (const [name, t] of model.weights) {
    const [rows, cols] = t.shape as [number, number];
    const linear = t.shape.length === 2 && name.endsWith("_proj.weight");
    weights.set(name, linear ? { shape: t.shape, data: roundTrip(format, t.data, rows, cols) } : t);
  }
  const embed = model.weights.get("model.embed_tokens.weight")!;
  const [v, h] = embed.shape as [number, number];
  weights.set("lm_head.weight", { shape: embed.shape, data: roundTrip(format, embed.data, v, h) });
  return { config: { ...model.config, tieWordEmbeddings: false }, weights };
}

test("int8 / int4 / int8c runtimes compute the dequantized model (up to int8 activations) and mostly keep f32's greedy choice", async () => {
  const model = generateBaseModel(TINY_CONFIG, 5);
  const tokens = Array.from({ length: 24 }, (_, i) => (i * 37 + 11) % 256);
  const f32 = await ModelRuntime.create(model, { lora: false, intraOpThreads: 1 });
  const f32Logits: Float32Array[] = [];
  for (let t = 1; t <= tokens.length; t++) {
    const [l] = await f32.step([{ seqId: t, tokens: tokens.slice(0, t), slot: 0 }]);
    f32Logits.push(Float32Array.from(l!));
    f32.release(t);
  }
  await f32.dispose();
  for (const [format, minAgree] of [
    ["int8", 0.9],
    ["int4", 0.8],
    ["int8c", 0.9],
  ] as const) {
    const rt = await ModelRuntime.create(model, { lora: false, intraOpThreads: 1, weights: format });
    const ref = referenceForward(dequantizedModel(model, format), tokens);
    let agree = 0;
    let maxErr = 0;
    let maxAbs = 0;
    for (let t = 1; t <= tokens.length; t++) {
      const [l] = await rt.step([{ seqId: t, tokens: tokens.slice(0, t), slot: 0 }]);
      rt.release(t);
      const r = ref[t - 1]!;
      for (let i = 0; i < l!.length; i++) {
        maxErr = Math.max(maxErr, Math.abs(l![i]! - r[i]!));
        maxAbs = Math.max(maxAbs, Math.abs(r[i]!));
      }
      if (argmax(l!) === argmax(f32Logits[t - 1]!)) agree++;
    }
    await rt.dispose();
    // The remaining difference is the activations' quantization: MatMulNBits to int8 per block of
    // 32, DynamicQuantizeMatMul (int8c) to uint8 per call.
    console.log(
      `${format}: max |graph - dequantized reference| ${maxErr.toExponential(2)} (|logit| ${maxAbs.toFixed(2)}), greedy ${agree}/${tokens.length}`,
    );
    assert.ok(
      maxErr < 0.05 * maxAbs,
      `${format}: max |graph - dequantized reference| ${maxErr} vs |logit| ${maxAbs}`,
    );
    assert.ok(
      agree / tokens.length >= minAgree,
      `${format}: greedy agreement with f32 ${agree}/${tokens.length}`,
    );
  }
});

test("releaseWeights leaves the config and drops the JS weights; the runtime still runs", async () => {
  const model = generateBaseModel(TINY_CONFIG, 2);
  const rt = await ModelRuntime.create(model, { lora: false, intraOpThreads: 1, releaseWeights: true });
  assert.equal(model.weights.size, 0);
  const [l] = await rt.step([{ seqId: "a", tokens: [1, 2, 3], slot: 0 }]);
  assert.equal(l!.length, TINY_CONFIG.vocabSize);
  await rt.dispose();
});
