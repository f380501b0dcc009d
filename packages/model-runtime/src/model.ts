import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { access, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type LlamaConfig,
  LORA_MODULES,
  moduleDims,
  moduleWeightName,
  parseHfConfig,
  TINY_CONFIG,
  toHfConfig,
} from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import { Rng } from "./rng.ts";
import {
  readSafetensors,
  readSafetensorsLazy,
  type SafetensorsDtype,
  type Tensor,
  writeSafetensors,
} from "./safetensors.ts";

/** A base model: config plus f32 weights under Hugging Face Llama tensor names. */
export interface BaseModel {
  config: LlamaConfig;
  weights: Map<string, Tensor>;
  /** Parsed tokenizer.json / tokenizer_config.json when the directory has them. */
  tokenizerJson?: unknown;
  tokenizerConfig?: unknown;
}

/** Every tensor name the runtime reads, with its expected shape. */
export function expectedWeightShapes(config: LlamaConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const h = config.hiddenSize;
  shapes.set("model.embed_tokens.weight", [config.vocabSize, h]);
  for (let l = 0; l < config.numLayers; l++) {
    shapes.set(`model.layers.${l}.input_layernorm.weight`, [h]);
    shapes.set(`model.layers.${l}.post_attention_layernorm.weight`, [h]);
    for (const m of LORA_MODULES) {
      const { inDim, outDim } = moduleDims(config, m);
      shapes.set(moduleWeightName(l, m), [outDim, inDim]);
    }
  }
  shapes.set("model.norm.weight", [h]);
  if (!config.tieWordEmbeddings) shapes.set("lm_head.weight", [config.vocabSize, h]);
  return shapes;
}

/** Throws MODEL_WEIGHTS_INVALID naming the first missing or mis-shaped tensor. */
export function validateWeights(config: LlamaConfig, weights: Map<string, Tensor>): void {
  for (const [name, shape] of expectedWeightShapes(config)) {
    const t = weights.get(name);
    if (!t)
      throw new ModelRuntimeError("MODEL_WEIGHTS_INVALID", `weights: tensor ${name} is missing`, { name });
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelRuntimeError(
        "MODEL_WEIGHTS_INVALID",
        `weights: tensor ${name} has shape [${t.shape}], expected [${shape}]`,
        { name, shape: t.shape, expected: shape },
      );
    }
  }
}

/** Bytes of f32 weights read per decode step (tied embeddings counted once, as the lm_head). */
export function baseWeightBytes(config: LlamaConfig): number {
  let n = 0;
  for (const shape of expectedWeightShapes(config).values()) n += shape.reduce((a, b) => a * b, 1);
  return n * 4;
}

/**
 * Deterministic random weights. Linear layers are uniform with unit output variance
 * and embeddings uniform(-1, 1), so logits of the tiny model are well separated (greedy
 * decoding is not decided by rounding), unlike a 0.02-std init.
 */
export function generateBaseModel(config: LlamaConfig, seed: number | string = 1): BaseModel {
  const rng = new Rng(seed);
  const weights = new Map<string, Tensor>();
  for (const [name, shape] of expectedWeightShapes(config)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (name.endsWith("norm.weight")) {
      rng.fillUniform(data, 0.1);
      for (let i = 0; i < data.length; i++) data[i] = data[i]! + 1;
    } else if (name === "model.embed_tokens.weight" || name === "lm_head.weight") {
      rng.fillUniform(data, 1);
    } else {
      rng.fillUniform(data, Math.sqrt(3 / shape[1]!));
    }
    weights.set(name, { shape, data });
  }
  return { config, weights };
}

/** Writes config.json + model.safetensors (+ tokenizer files) in Hugging Face layout. */
export async function writeBaseModelDir(
  dir: string,
  model: BaseModel,
  options: { dtype?: SafetensorsDtype } = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), JSON.stringify(toHfConfig(model.config), null, 2));
  await writeSafetensors(join(dir, "model.safetensors"), model.weights, {
    metadata: { format: "pt" },
    dtype: options.dtype ?? "F32",
  });
  if (model.tokenizerJson !== undefined) {
    await writeFile(join(dir, "tokenizer.json"), JSON.stringify(model.tokenizerJson));
  }
  if (model.tokenizerConfig !== undefined) {
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(model.tokenizerConfig));
  }
}

/**
 * Loads a Hugging Face style directory: config.json + model.safetensors (or shards listed
 * in model.safetensors.index.json) [+ tokenizer.json, tokenizer_config.json]. `lazy`: tensors
 * are read from disk when their `data` is accessed, not kept (what a runtime that hands the
 * weights to onnxruntime wants: see `readSafetensorsLazy`).
 */
export async function loadBaseModelDir(dir: string, options: { lazy?: boolean } = {}): Promise<BaseModel> {
  const read = options.lazy ? readSafetensorsLazy : readSafetensors;
  const config = parseHfConfig(JSON.parse(await readFile(join(dir, "config.json"), "utf8")));
  const index = (await readJsonIfExists(join(dir, "model.safetensors.index.json"))) as
    | { weight_map?: Record<string, string> }
    | undefined;
  let tensors: Map<string, Tensor>;
  if (index?.weight_map) {
    tensors = new Map();
    for (const shard of new Set(Object.values(index.weight_map))) {
      for (const [name, t] of (await read(join(dir, shard))).tensors) tensors.set(name, t);
    }
  } else {
    tensors = (await read(join(dir, "model.safetensors"))).tensors;
  }
  // Checkpoints saved with tied embeddings sometimes still carry lm_head.weight; it must equal the embedding.
  if (config.tieWordEmbeddings) tensors.delete("lm_head.weight");
  validateWeights(config, tensors);
  const model: BaseModel = { config, weights: tensors };
  const tok = await readJsonIfExists(join(dir, "tokenizer.json"));
  if (tok !== undefined) model.tokenizerJson = tok;
  const tokCfg = await readJsonIfExists(join(dir, "tokenizer_config.json"));
  if (tokCfg !== undefined) model.tokenizerConfig = tokCfg;
  return model;
}

async function readJsonIfExists(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

export function getWeight(model: BaseModel, name: string): Tensor {
  const t = model.weights.get(name);
  if (!t)
    throw new ModelRuntimeError("MODEL_WEIGHTS_INVALID", `weights: tensor ${name} is missing`, { name });
  return t;
}

/**
 * Writes the seeded generated model of `config` to `dir` once (a temporary directory renamed into
 * place, so concurrent first starts — the gateway and the factory — are safe: the loser's copy is
 * identical and dropped). Returns `dir`.
 */
export async function ensureGeneratedModelDir(
  dir: string,
  config: LlamaConfig,
  seed: number,
): Promise<string> {
  try {
    await access(join(dir, "model.safetensors"));
    return dir;
  } catch {
    // not there yet
  }
  const tmp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  await writeBaseModelDir(tmp, generateBaseModel(config, seed));
  try {
    await rename(tmp, dir);
  } catch {
    await rm(tmp, { recursive: true, force: true });
  }
  return dir;
}

/**
 * The tiny deterministic model (TINY_CONFIG, seed 1) written to `dir` once: the gateway, the factory
 * and validators generating it each get the same bytes, so the same base-model hash.
 */
export function ensureTinyModelDir(dir: string): Promise<string> {
  return ensureGeneratedModelDir(dir, TINY_CONFIG, 1);
}

/**
 * How the platform names a base model: the SHA-256 (hex) of `dir`/model.safetensors. The gateway
 * registers it, the factory records it on grants and jobs, validators find a lineage's base model by it.
 */
export async function baseModelHash(dir: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(join(dir, "model.safetensors"))) h.update(chunk as Buffer);
  return h.digest("hex");
}
