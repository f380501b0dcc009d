import assert from "node:assert/strict";
import { test } from "node:test";
import { TINY_CONFIG } from "./config.ts";
import { type BaseModel, generateBaseModel } from "./model.ts";
import { dequantizeBlockwise, QUANT_BLOCK, quantizeBlockwise } from "./quantize.ts";
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

/** The model the quantized graph stands for: linear weights and the (untied) head dequantized. */
function dequantizedModel(model: BaseModel, bits: 4 | 8): BaseModel {
  const weights = new Map<string, Tensor>();
  for (const [name, t] of model.weights) {
    const [rows, cols] = t.shape as [number, number];
    const linear = t.shape.length === 2 && name.endsWith("_proj.weight");
    weights.set(
      name,
      linear
        ? {
            shape: t.shape,
            data: dequantizeBlockwise(quantizeBlockwise(t.data, rows, cols, bits), rows, cols, bits),
          }
        : t,
    );
  }
  const embed = model.weights.get("model.embed_tokens.weight")!;
  const [v, h] = embed.shape as [number, number];
  weights.set("lm_head.weight", {
    shape: embed.shape,
    data: dequantizeBlockwise(quantizeBlockwise(embed.data, v, h, bits), v, h, bits),
  });
  return { config: { ...model.config, tieWordEmbeddings: false }, weights };
}

test("int8 / int4 runtimes compute the dequantized model (up to int8 activations) and mostly keep f32's greedy choice", async () => {
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
  for (const [format, bits, minAgree] of [
    ["int8", 8, 0.9],
    ["int4", 4, 0.8],
  ] as const) {
    const rt = await ModelRuntime.create(model, { lora: false, intraOpThreads: 1, weights: format });
    const ref = referenceForward(dequantizedModel(model, bits), tokens);
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
    // The remaining difference is MatMulNBits quantizing activations to int8 per block.
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
