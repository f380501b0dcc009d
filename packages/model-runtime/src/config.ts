import { ModelRuntimeError } from "./errors.ts";

/** The subset of a Hugging Face `LlamaConfig` the runtime needs, in camelCase. */
export interface LlamaConfig {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  ropeTheta: number;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

/** Byte-level tiny model used by tests and the demo: 256 bytes + BOS/EOS/PAD. */
export const TINY_VOCAB_SIZE = 259;
export const TINY_BOS = 256;
export const TINY_EOS = 257;
export const TINY_PAD = 258;

export const TINY_CONFIG: LlamaConfig = {
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  intermediateSize: 128,
  vocabSize: TINY_VOCAB_SIZE,
  ropeTheta: 10000,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: true,
  maxPositionEmbeddings: 2048,
  bosTokenId: TINY_BOS,
  eosTokenIds: [TINY_EOS],
};

/** Shape of HuggingFaceTB/SmolLM-135M (config.json: rope_theta 10000.0, rms_norm_eps 1e-05, tied). */
export const SMOLLM_135M_CONFIG: LlamaConfig = {
  hiddenSize: 576,
  numLayers: 30,
  numHeads: 9,
  numKvHeads: 3,
  headDim: 64,
  intermediateSize: 1536,
  vocabSize: 49152,
  ropeTheta: 10000,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: true,
  maxPositionEmbeddings: 2048,
  bosTokenId: 0,
  eosTokenIds: [0],
};

/** Parses a Hugging Face config.json of a Llama-architecture model. */
export function parseHfConfig(json: unknown): LlamaConfig {
  if (typeof json !== "object" || json === null) throw bad("config.json is not an object");
  const c = json as Record<string, unknown>;
  const arch = c["architectures"];
  if (Array.isArray(arch) && arch.length > 0 && !arch.some((a) => a === "LlamaForCausalLM")) {
    throw bad(`unsupported architectures ${JSON.stringify(arch)} (only LlamaForCausalLM)`);
  }
  const int = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
      throw bad(`${key} must be a positive integer`);
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== "number" || !(v > 0)) throw bad(`${key} must be a positive number`);
    return v;
  };
  const hiddenSize = int("hidden_size");
  const numHeads = int("num_attention_heads");
  const numKvHeads = int("num_key_value_heads", numHeads);
  const headDim = int("head_dim", Math.floor(hiddenSize / numHeads));
  if (numHeads % numKvHeads !== 0) throw bad("num_attention_heads must be a multiple of num_key_value_heads");
  if (headDim % 2 !== 0) throw bad("head_dim must be even for RoPE");
  const scaling = c["rope_scaling"];
  if (scaling !== undefined && scaling !== null) throw bad("rope_scaling is not supported");
  const eos = c["eos_token_id"];
  const eosTokenIds = Array.isArray(eos) ? eos.map(Number) : typeof eos === "number" ? [eos] : [];
  const bos = c["bos_token_id"];
  return {
    hiddenSize,
    numLayers: int("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: int("intermediate_size"),
    vocabSize: int("vocab_size"),
    ropeTheta: num("rope_theta", 10000),
    rmsNormEps: num("rms_norm_eps", 1e-6),
    tieWordEmbeddings: c["tie_word_embeddings"] === true,
    maxPositionEmbeddings: int("max_position_embeddings", 2048),
    bosTokenId: typeof bos === "number" ? bos : null,
    eosTokenIds,
  };
}

/** The config.json a Hugging Face loader would accept for this config. */
export function toHfConfig(config: LlamaConfig): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: config.hiddenSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKvHeads,
    head_dim: config.headDim,
    intermediate_size: config.intermediateSize,
    vocab_size: config.vocabSize,
    rope_theta: config.ropeTheta,
    rms_norm_eps: config.rmsNormEps,
    tie_word_embeddings: config.tieWordEmbeddings,
    max_position_embeddings: config.maxPositionEmbeddings,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : config.eosTokenIds,
    hidden_act: "silu",
    torch_dtype: "float32",
  };
}

/** Linear layers a LoRA adapter may target, with their [in, out] sizes. */
export const LORA_MODULES = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;
export type LoraModule = (typeof LORA_MODULES)[number];

export function moduleDims(config: LlamaConfig, module: LoraModule): { inDim: number; outDim: number } {
  const h = config.hiddenSize;
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  switch (module) {
    case "q_proj":
      return { inDim: h, outDim: q };
    case "k_proj":
    case "v_proj":
      return { inDim: h, outDim: kv };
    case "o_proj":
      return { inDim: q, outDim: h };
    case "gate_proj":
    case "up_proj":
      return { inDim: h, outDim: config.intermediateSize };
    case "down_proj":
      return { inDim: config.intermediateSize, outDim: h };
  }
}

export function moduleWeightName(layer: number, module: LoraModule): string {
  const group =
    module.endsWith("_proj") && ["gate_proj", "up_proj", "down_proj"].includes(module) ? "mlp" : "self_attn";
  return `model.layers.${layer}.${group}.${module}.weight`;
}

function bad(message: string): ModelRuntimeError {
  return new ModelRuntimeError("MODEL_CONFIG_INVALID", `model config: ${message}`);
}
