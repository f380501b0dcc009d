import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  adapterBytes,
  generateRandomPeft,
  loadPeftAdapter,
  loraAdapterBytes,
  parsePeftAdapter,
  writePeftAdapter,
} from "./adapter.ts";
import { TINY_CONFIG } from "./config.ts";
import { ModelRuntimeError, type ModelRuntimeErrorCode } from "./errors.ts";
import { parseSafetensors, serializeSafetensors } from "./safetensors.ts";

const isCode = (code: ModelRuntimeErrorCode) => (e: unknown) =>
  e instanceof ModelRuntimeError && e.code === code;

test("random PEFT adapter round-trips through real PEFT files", async (t) => {
  const files = generateRandomPeft(TINY_CONFIG, { rank: 8, alpha: 16, seed: "rt" });
  const dir = await mkdtemp(join(tmpdir(), "mr-peft-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writePeftAdapter(dir, files);
  const adapter = await loadPeftAdapter(TINY_CONFIG, dir);
  assert.equal(adapter.rank, 8);
  assert.deepEqual(adapter.targetModules, ["q_proj", "k_proj", "v_proj", "o_proj"]);
  assert.equal(adapter.modules.size, TINY_CONFIG.numLayers * 4);
  const q0 = adapter.modules.get("0.q_proj")!;
  assert.equal(q0.scale, 2); // lora_alpha / r
  const raw = parseSafetensors(files.safetensors).tensors;
  assert.deepEqual(q0.a, raw.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")!.data);
  assert.equal(loraAdapterBytes(adapter), adapterBytes(TINY_CONFIG, 8, adapter.targetModules));
  // deterministic
  assert.deepEqual(
    generateRandomPeft(TINY_CONFIG, { rank: 8, alpha: 16, seed: "rt" }).safetensors,
    files.safetensors,
  );
});

test("use_rslora scales by alpha / sqrt(r); rank_pattern gives per-module ranks", () => {
  const files = generateRandomPeft(TINY_CONFIG, { rank: 4, alpha: 8, seed: 1, useRslora: true });
  assert.equal(
    parsePeftAdapter(TINY_CONFIG, files.adapterConfig, files.safetensors).modules.get("1.v_proj")!.scale,
    4,
  );
  // Build an adapter whose v_proj has rank 2 while the rest have rank 4.
  const small = parseSafetensors(generateRandomPeft(TINY_CONFIG, { rank: 2, seed: 2 }).safetensors).tensors;
  const big = parseSafetensors(files.safetensors).tensors;
  for (const [name, t] of small) if (name.includes("v_proj")) big.set(name, t);
  const cfg = { ...files.adapterConfig, use_rslora: false, rank_pattern: { v_proj: 2 } };
  const adapter = parsePeftAdapter(TINY_CONFIG, cfg, serializeSafetensors(big));
  assert.equal(adapter.modules.get("0.v_proj")!.rank, 2);
  assert.equal(adapter.modules.get("0.q_proj")!.rank, 4);
  assert.equal(adapter.rank, 4);
});

test("adapters that do not fit the base model are rejected with a code naming the tensor and shapes", () => {
  const files = generateRandomPeft(TINY_CONFIG, { rank: 4, seed: 3 });
  const tensors = parseSafetensors(files.safetensors).tensors;
  const name = "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight";
  // wrong out dim (hidden instead of kv dim)
  const wrong = new Map(tensors);
  wrong.set(name, { shape: [64, 4], data: new Float32Array(256) });
  assert.throws(
    () => parsePeftAdapter(TINY_CONFIG, files.adapterConfig, serializeSafetensors(wrong)),
    (e: unknown) =>
      isCode("ADAPTER_SHAPE_MISMATCH")(e) &&
      (e as Error).message.includes(name) &&
      (e as Error).message.includes("[64, 4]") &&
      (e as Error).message.includes("[32, 4]"),
  );
  // a base model with a different hidden size
  assert.throws(
    () => parsePeftAdapter({ ...TINY_CONFIG, hiddenSize: 128 }, files.adapterConfig, files.safetensors),
    isCode("ADAPTER_SHAPE_MISMATCH"),
  );
  // more layers than the base
  assert.throws(
    () => parsePeftAdapter({ ...TINY_CONFIG, numLayers: 1 }, files.adapterConfig, files.safetensors),
    isCode("ADAPTER_SHAPE_MISMATCH"),
  );
  // r in the config disagrees with the tensors
  assert.throws(
    () => parsePeftAdapter(TINY_CONFIG, { ...files.adapterConfig, r: 8 }, files.safetensors),
    isCode("ADAPTER_SHAPE_MISMATCH"),
  );
  // missing half of a pair
  const missing = new Map(tensors);
  missing.delete(name);
  assert.throws(
    () => parsePeftAdapter(TINY_CONFIG, files.adapterConfig, serializeSafetensors(missing)),
    (e: unknown) => isCode("ADAPTER_TENSOR_MISSING")(e) && (e as Error).message.includes(name),
  );
  // unsupported target and unknown tensors
  assert.throws(
    () =>
      parsePeftAdapter(
        TINY_CONFIG,
        { ...files.adapterConfig, target_modules: ["lm_head"] },
        files.safetensors,
      ),
    isCode("ADAPTER_TARGET_UNSUPPORTED"),
  );
  const extra = new Map(tensors);
  extra.set("base_model.model.lm_head.weight", { shape: [1], data: new Float32Array(1) });
  assert.throws(
    () => parsePeftAdapter(TINY_CONFIG, files.adapterConfig, serializeSafetensors(extra)),
    isCode("ADAPTER_TENSOR_UNEXPECTED"),
  );
  // bad config fields
  for (const bad of [
    { r: 0 },
    { lora_alpha: "x" },
    { use_dora: true },
    { bias: "all" },
    { peft_type: "IA3" },
  ]) {
    assert.throws(
      () => parsePeftAdapter(TINY_CONFIG, { ...files.adapterConfig, ...bad }, files.safetensors),
      isCode("ADAPTER_CONFIG_INVALID"),
    );
  }
});

test("target_modules as a regex string and PEFT names with an adapter name are accepted", () => {
  const files = generateRandomPeft(TINY_CONFIG, { rank: 2, seed: 4, targetModules: ["q_proj", "v_proj"] });
  const renamed = new Map(
    [...parseSafetensors(files.safetensors).tensors].map(([n, t]) => [
      n.replace(".weight", ".default.weight"),
      t,
    ]),
  );
  const adapter = parsePeftAdapter(
    TINY_CONFIG,
    { ...files.adapterConfig, target_modules: ".*\\.(q_proj|v_proj)" },
    serializeSafetensors(renamed),
  );
  assert.deepEqual(adapter.targetModules, ["q_proj", "v_proj"]);
});
