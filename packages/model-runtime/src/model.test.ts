import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { generateRandomAdapter } from "./adapter.ts";
import { SMOLLM_135M_CONFIG, TINY_CONFIG } from "./config.ts";
import { baseWeightBytes, generateBaseModel, loadBaseModelDir, writeBaseModelDir } from "./model.ts";
import { mergeAdapter, referenceForward } from "./reference.ts";

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
