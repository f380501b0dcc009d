import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { getLlama, type Llama, LlamaLogLevel, type LlamaModel, type Token } from "node-llama-cpp";
import { generateRandomAdapter, type LoraAdapter } from "./adapter.ts";
import { TINY_CONFIG } from "./config.ts";
import { encodeGgmlTensor, permuteForLlamaCppRope, writeLoraGguf, writeModelGguf } from "./gguf.ts";
import { type BaseModel, generateBaseModel } from "./model.ts";
import { Rng } from "./rng.ts";
import { ModelRuntime } from "./runtime.ts";
import { halfToFloat } from "./safetensors.ts";
import { argmax } from "./sampler.ts";

// The parity test of the GGUF writer: llama.cpp (node-llama-cpp's prebuilt CPU binaries)
// running the converted files must pick the same greedy tokens as our ONNX runtime on the
// same weights, with and without LoRA adapters. Tiny model, so it runs in a few seconds.

let dir: string;
let model: BaseModel;
let adapters: LoraAdapter[];
let llama: Llama;
let lm: LlamaModel;
let rt: ModelRuntime;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "gguf-test-"));
  model = generateBaseModel(TINY_CONFIG, 5);
  adapters = [
    generateRandomAdapter(TINY_CONFIG, { rank: 8, seed: 11 }),
    // rsLoRA scale (alpha / sqrt(r)) with MLP modules: llama.cpp has no rsLoRA, so the
    // writer folds the scale into lora_b.
    generateRandomAdapter(TINY_CONFIG, {
      rank: 4,
      seed: 12,
      useRslora: true,
      targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    }),
  ];
  await writeModelGguf(join(dir, "base.gguf"), model, { type: "F32" });
  for (const [i, a] of adapters.entries()) await writeLoraGguf(join(dir, `lora-${i}.gguf`), TINY_CONFIG, a);
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  lm = await llama.loadModel({ modelPath: join(dir, "base.gguf") });
  rt = await ModelRuntime.create(model, {
    slots: 3,
    rankBuckets: [8],
    targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    intraOpThreads: 1,
  });
  rt.loadAdapter(1, adapters[0]!);
  rt.loadAdapter(2, adapters[1]!);
});

after(async () => {
  await rt?.dispose();
  await lm?.dispose();
  await llama?.dispose();
  await rm(dir, { recursive: true, force: true });
});

/** Our greedy choice after each prefix of `tokens` (teacher forcing, one token per step). */
async function oursArgmaxPerPosition(tokens: number[], slot: number, seqId: string): Promise<number[]> {
  const out: number[] = [];
  try {
    for (const t of tokens) {
      const [logits] = await rt.step([{ seqId, tokens: [t], slot }]);
      out.push(argmax(logits!));
    }
  } finally {
    rt.release(seqId);
  }
  return out;
}

async function llamaArgmaxPerPosition(tokens: number[], lora: string | null): Promise<number[]> {
  const ctx = await lm.createContext({
    contextSize: 256,
    threads: 1,
    ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
  });
  try {
    const seq = ctx.getSequence();
    const res = await seq.controlledEvaluate(
      tokens.map((t) => [t as Token, { generateNext: { token: true, options: { temperature: 0 } } }]),
    );
    return res.map((r) => r?.next?.token as number);
  } finally {
    await ctx.dispose();
  }
}

async function llamaGreedy(prompt: number[], n: number, lora: string | null): Promise<number[]> {
  const ctx = await lm.createContext({
    contextSize: 256,
    threads: 1,
    ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
  });
  try {
    const out: number[] = [];
    for await (const t of ctx.getSequence().evaluate(prompt as Token[], { temperature: 0 })) {
      out.push(t as number);
      if (out.length >= n) break;
    }
    return out;
  } finally {
    await ctx.dispose();
  }
}

async function oursGreedy(prompt: number[], n: number, slot: number, seqId: string): Promise<number[]> {
  const out: number[] = [];
  try {
    let [logits] = await rt.step([{ seqId, tokens: prompt, slot }]);
    while (out.length < n) {
      const t = argmax(logits!);
      out.push(t);
      [logits] = await rt.step([{ seqId, tokens: [t], slot }]);
    }
  } finally {
    rt.release(seqId);
  }
  return out;
}

const loraPath = (slot: number) => (slot === 0 ? null : join(dir, `lora-${slot - 1}.gguf`));

test("llama.cpp on the converted GGUF picks our greedy token at every position (base and LoRA)", async () => {
  const rng = new Rng(99);
  const tokens = Array.from({ length: 48 }, () => Math.floor(rng.next() * 256));
  for (const slot of [0, 1, 2]) {
    const ours = await oursArgmaxPerPosition(tokens, slot, `tf-${slot}`);
    const theirs = await llamaArgmaxPerPosition(tokens, loraPath(slot));
    assert.deepEqual(theirs, ours, `slot ${slot}: per-position argmax differs`);
  }
  // The adapters change the model's choices (otherwise the LoRA half proves nothing).
  const base = await oursArgmaxPerPosition(tokens, 0, "tf-base-again");
  const lora = await oursArgmaxPerPosition(tokens, 2, "tf-lora-again");
  assert.ok(
    base.some((t, i) => t !== lora[i]),
    "the adapter changes no greedy token",
  );
});

test("free-running greedy generations are identical on both runtimes", async () => {
  const prompts = [
    [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100],
    [256, 1, 2, 3, 250, 17],
    [99, 180, 3, 64, 64, 64, 200, 10],
  ];
  for (const [p, prompt] of prompts.entries()) {
    for (const slot of [0, 1, 2]) {
      const ours = await oursGreedy(prompt, 16, slot, `g-${p}-${slot}`);
      const theirs = await llamaGreedy(prompt, 16, loraPath(slot));
      assert.deepEqual(theirs, ours, `prompt ${p}, slot ${slot}`);
    }
  }
});

test("q/k rows are permuted per head into llama.cpp's interleaved rotary order", () => {
  // 1 head, head_dim 4, 1 column: HF rows [x0 x1 | x2 x3] pair (x0,x2),(x1,x3) -> llama.cpp [x0 x2 x1 x3].
  assert.deepEqual([...permuteForLlamaCppRope(Float32Array.from([0, 1, 2, 3]), 1, 1)], [0, 2, 1, 3]);
  // 2 heads, head_dim 2, 2 columns: each head's two rows swap nothing (half = 1) but heads stay in place.
  const two = permuteForLlamaCppRope(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), 2, 2);
  assert.deepEqual([...two], [1, 2, 3, 4, 5, 6, 7, 8]);
});

test("Q8_0 blocks decode back within half a step, Q4_0 within one (its top level clips)", () => {
  const rng = new Rng(3);
  const x = rng.fillUniform(new Float32Array(64), 2);
  const q8 = encodeGgmlTensor("Q8_0", x);
  assert.equal(q8.length, 2 * 34);
  const q4 = encodeGgmlTensor("Q4_0", x);
  assert.equal(q4.length, 2 * 18);
  const v8 = new DataView(q8.buffer);
  const v4 = new DataView(q4.buffer);
  for (let b = 0; b < 2; b++) {
    const d8 = halfToFloat(v8.getUint16(b * 34, true));
    const d4 = halfToFloat(v4.getUint16(b * 18, true));
    for (let j = 0; j < 32; j++) {
      const orig = x[b * 32 + j]!;
      assert.ok(Math.abs(v8.getInt8(b * 34 + 2 + j) * d8 - orig) <= Math.abs(d8) * 0.5 + 1e-3);
      const byte = q4[b * 18 + 2 + (j % 16)]!;
      const nib = j < 16 ? byte & 15 : byte >> 4;
      assert.ok(Math.abs((nib - 8) * d4 - orig) <= Math.abs(d4) + 1e-3);
    }
  }
});
