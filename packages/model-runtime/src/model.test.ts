import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { generateRandomAdapter } from "./adapter.ts";
import { SMOLLM_135M_CONFIG, TINY_CONFIG } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import {
  baseWeightBytes,
  generateBaseModel,
  loadBaseModelDir,
  validateWeights,
  writeBaseModelDir,
} from "./model.ts";
import { mergeAdapter, referenceForward } from "./reference.ts";
import { writeSafetensors } from "./safetensors.ts";

test("generated tiny model is deterministic and round-trips through a HF-style directory", async (t) => {
  const a = generateBaseModel(TINY_CONFIG, 7);
  const b = generateBaseModel(TINY_CONFIG, 7);
  const c = generateBaseModel(TINY_CONFIG, 8);
  const name = "model.layers.1.self_attn.q_proj.weight";
  assert.deepEqual(a.weights.get(name)!.data, b.weights.get(name)!.data);
  assert.notDeepEqual(a.weights.get(name)!.data, c.weights.get(name)!.data);
  const dir = await mkdtemp(join(tmpdir(), "mr-model-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeBaseModelDir(dir, a);
  const loaded = await loadBaseModelDir(dir);
  assert.deepEqual(loaded.config, TINY_CONFIG);
  for (const [k, v] of a.weights) assert.deepEqual(loaded.weights.get(k)!.data, v.data, k);
});

test("SmolLM-135M shape has ~135M parameters (tied embeddings)", () => {
  const params = baseWeightBytes(SMOLLM_135M_CONFIG) / 4;
  assert.ok(params > 134e6 && params < 135.5e6, String(params));
});

test("reference: causal (prefix logits do not depend on later tokens) and adapter == merged weights", () => {
  const model = generateBaseModel(TINY_CONFIG, 1);
  const full = referenceForward(model, [1, 2, 3, 4]);
  const prefix = referenceForward(model, [1, 2]);
  assert.deepEqual(prefix[1], full[1]);
  const adapter = generateRandomAdapter(TINY_CONFIG, { rank: 4, seed: 9 });
  const withLora = referenceForward(model, [1, 2, 3], adapter);
  const merged = referenceForward(mergeAdapter(model, adapter), [1, 2, 3]);
  let maxErr = 0;
  let maxDelta = 0;
  withLora[2]!.forEach((v, i) => {
    maxErr = Math.max(maxErr, Math.abs(v - merged[2]![i]!));
    maxDelta = Math.max(maxDelta, Math.abs(v - full[2]![i]!));
  });
  assert.ok(maxErr < 1e-4, `lora vs merged ${maxErr}`);
  assert.ok(maxDelta > 0.1, "the adapter must change the logits");
});

test("bf16 checkpoints and sharded safetensors load (widened to f32)", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "mr-bf16-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const model = generateBaseModel(TINY_CONFIG, 3);
  await writeBaseModelDir(join(dir, "bf16"), model, { dtype: "BF16" });
  const loaded = await loadBaseModelDir(join(dir, "bf16"));
  const name = "model.layers.0.mlp.up_proj.weight";
  const a = model.weights.get(name)!.data;
  const b = loaded.weights.get(name)!.data;
  a.forEach((v, i) => {
    assert.ok(Math.abs(v - b[i]!) <= Math.abs(v) / 128 + 1e-30);
  });
  // two shards + index, as large HF checkpoints are saved
  const shardDir = join(dir, "sharded");
  await writeBaseModelDir(shardDir, model);
  const names = [...model.weights.keys()];
  const half = Math.floor(names.length / 2);
  const shards = [names.slice(0, half), names.slice(half)];
  const weightMap: Record<string, string> = {};
  for (const [i, group] of shards.entries()) {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    await writeSafetensors(join(shardDir, file), new Map(group.map((n) => [n, model.weights.get(n)!])));
    for (const n of group) weightMap[n] = file;
  }
  await rm(join(shardDir, "model.safetensors"));
  await writeFile(join(shardDir, "model.safetensors.index.json"), JSON.stringify({ weight_map: weightMap }));
  const fromShards = await loadBaseModelDir(shardDir);
  for (const [k, v] of model.weights) assert.deepEqual(fromShards.weights.get(k)!.data, v.data, k);
});

test("weights that do not match the config are rejected with MODEL_WEIGHTS_INVALID naming the tensor", () => {
  const model = generateBaseModel(TINY_CONFIG, 1);
  const weights = new Map(model.weights);
  weights.set("model.layers.1.self_attn.k_proj.weight", { shape: [64, 64], data: new Float32Array(64 * 64) });
  assert.throws(
    () => validateWeights(TINY_CONFIG, weights),
    (e: unknown) =>
      e instanceof ModelRuntimeError &&
      e.code === "MODEL_WEIGHTS_INVALID" &&
      e.message.includes("model.layers.1.self_attn.k_proj.weight") &&
      e.message.includes("[32,64]"),
  );
  weights.delete("model.norm.weight");
  assert.throws(() => validateWeights(TINY_CONFIG, weights), ModelRuntimeError);
});
