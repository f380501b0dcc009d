import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type LlamaConfig, LORA_MODULES, type LoraModule, moduleDims } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import { Rng } from "./rng.ts";
import { parseSafetensors, serializeSafetensors, type Tensor } from "./safetensors.ts";

/** One adapted linear layer, in PEFT layout: A is [rank, in], B is [out, rank]. */
export interface LoraWeights {
  rank: number;
  scale: number;
  a: Float32Array;
  b: Float32Array;
}

/** A LoRA adapter decoded to f32, keyed by `${layer}.${module}` (e.g. "0.q_proj"). */
export interface LoraAdapter {
  /** Largest rank over its modules: the slot rank it needs. */
  rank: number;
  targetModules: LoraModule[];
  modules: Map<string, LoraWeights>;
}

export interface PeftAdapterConfig {
  r: number;
  lora_alpha: number;
  target_modules: string[] | string;
  use_rslora?: boolean;
  rank_pattern?: Record<string, number>;
  alpha_pattern?: Record<string, number>;
  bias?: string;
  use_dora?: boolean;
  fan_in_fan_out?: boolean;
  modules_to_save?: string[] | null;
  peft_type?: string;
  task_type?: string;
  base_model_name_or_path?: string | null;
  [key: string]: unknown;
}

export const DEFAULT_TARGET_MODULES: LoraModule[] = ["q_proj", "k_proj", "v_proj", "o_proj"];

const TENSOR_NAME =
  /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)\.lora_(A|B)(?:\.[A-Za-z0-9_-]+)?\.weight$/;

/** Bytes one adapter of `rank` on `modules` occupies in f32 (A and B, every layer). */
export function adapterBytes(config: LlamaConfig, rank: number, modules: readonly LoraModule[]): number {
  let n = 0;
  for (const m of modules) {
    const { inDim, outDim } = moduleDims(config, m);
    n += rank * (inDim + outDim);
  }
  return n * config.numLayers * 4;
}

/** Bytes the adapter actually holds (its own ranks, no slot padding). */
export function loraAdapterBytes(adapter: LoraAdapter): number {
  let n = 0;
  for (const w of adapter.modules.values()) n += w.a.length + w.b.length;
  return n * 4;
}

/**
 * Validates a PEFT adapter against the base config and decodes it. Every problem is a
 * ModelRuntimeError whose message names the tensor and both shapes.
 */
export function parsePeftAdapter(
  config: LlamaConfig,
  adapterConfigJson: unknown,
  safetensorsBytes: Uint8Array,
): LoraAdapter {
  const { config: cfg, targets } = parseAdapterConfig(adapterConfigJson);
  const { tensors } = parseSafetensors(safetensorsBytes);
  const pairs = new Map<string, { a?: Tensor; b?: Tensor; aName?: string; bName?: string }>();
  for (const [name, t] of tensors) {
    const m = TENSOR_NAME.exec(name);
    if (!m) {
      throw new ModelRuntimeError("ADAPTER_TENSOR_UNEXPECTED", `adapter: unexpected tensor ${name}`, {
        tensor: name,
      });
    }
    const layer = Number(m[1]);
    const module = m[3] as LoraModule;
    if (!(LORA_MODULES as readonly string[]).includes(module)) {
      throw new ModelRuntimeError(
        "ADAPTER_TARGET_UNSUPPORTED",
        `adapter: tensor ${name} targets ${module}; supported: ${LORA_MODULES.join(", ")}`,
        { tensor: name, module },
      );
    }
    if (layer >= config.numLayers) {
      throw new ModelRuntimeError(
        "ADAPTER_SHAPE_MISMATCH",
        `adapter: tensor ${name} is for layer ${layer} but the base model has ${config.numLayers} layers`,
        { tensor: name, layer, numLayers: config.numLayers },
      );
    }
    if (!targets.includes(module)) {
      throw new ModelRuntimeError(
        "ADAPTER_TENSOR_UNEXPECTED",
        `adapter: tensor ${name} is for ${module}, which is not in target_modules [${targets.join(", ")}]`,
        { tensor: name, module },
      );
    }
    const key = `${layer}.${module}`;
    const pair = pairs.get(key) ?? {};
    if (m[4] === "A") {
      pair.a = t;
      pair.aName = name;
    } else {
      pair.b = t;
      pair.bName = name;
    }
    pairs.set(key, pair);
  }
  const modules = new Map<string, LoraWeights>();
  const seenModules = new Set<LoraModule>();
  let maxRank = 0;
  for (const [key, pair] of pairs) {
    const [layerStr, module] = key.split(".") as [string, LoraModule];
    const layer = Number(layerStr);
    const prefix = `base_model.model.model.layers.${layer}.${["gate_proj", "up_proj", "down_proj"].includes(module) ? "mlp" : "self_attn"}.${module}`;
    if (!pair.a || !pair.b) {
      const missing = !pair.a ? `${prefix}.lora_A.weight` : `${prefix}.lora_B.weight`;
      throw new ModelRuntimeError("ADAPTER_TENSOR_MISSING", `adapter: tensor ${missing} is missing`, {
        tensor: missing,
      });
    }
    const { rank, scale } = moduleRankScale(cfg, layer, module);
    const { inDim, outDim } = moduleDims(config, module);
    expectShape(pair.aName!, pair.a.shape, [rank, inDim]);
    expectShape(pair.bName!, pair.b.shape, [outDim, rank]);
    modules.set(key, { rank, scale, a: pair.a.data, b: pair.b.data });
    seenModules.add(module);
    maxRank = Math.max(maxRank, rank);
  }
  for (const t of targets) {
    if (!seenModules.has(t)) {
      throw new ModelRuntimeError(
        "ADAPTER_TENSOR_MISSING",
        `adapter: target module ${t} is in target_modules but has no lora_A/lora_B tensors`,
        { module: t },
      );
    }
  }
  return { rank: maxRank, targetModules: targets, modules };
}

/**
 * Content hash of a PEFT adapter: sha256( sha256(adapter_config.json) || sha256(adapter_model.safetensors) ),
 * hex. Both files matter (the config carries alpha and the target modules), and hashing the
 * two digests keeps the definition independent of any archive format. The gateway stores adapters
 * under it; validators check the files they attribute with against it.
 */
export function adapterContentHash(configBytes: Uint8Array, weightBytes: Uint8Array): string {
  return contentHashOfDigests(sha256(configBytes), sha256(weightBytes));
}

export function sha256(bytes: Uint8Array): Buffer {
  return createHash("sha256").update(bytes).digest();
}

export function contentHashOfDigests(configDigest: Uint8Array, weightsDigest: Uint8Array): string {
  return createHash("sha256").update(configDigest).update(weightsDigest).digest("hex");
}

/** Reads `dir/adapter_config.json` + `dir/adapter_model.safetensors`. */
export async function loadPeftAdapter(config: LlamaConfig, dir: string): Promise<LoraAdapter> {
  const { configJson } = await readAdapterConfig(dir);
  const bytes = await readFile(join(dir, "adapter_model.safetensors"));
  return parsePeftAdapter(config, configJson, bytes);
}

/** Reads and parses `dir/adapter_config.json` (its bytes too: the content hash covers them). */
export async function readAdapterConfig(dir: string): Promise<{ configJson: unknown; configBytes: Buffer }> {
  let configBytes: Buffer;
  try {
    configBytes = await readFile(join(dir, "adapter_config.json"));
  } catch (err) {
    throw new ModelRuntimeError(
      "ADAPTER_CONFIG_INVALID",
      `adapter: cannot read adapter_config.json in ${dir}`,
      {
        cause: (err as Error).message,
      },
    );
  }
  try {
    return { configJson: JSON.parse(configBytes.toString("utf8")), configBytes };
  } catch {
    throw new ModelRuntimeError("ADAPTER_CONFIG_INVALID", "adapter: adapter_config.json is not valid JSON");
  }
}

/**
 * Validates `adapter_config.json` (everything about it that does not need the tensors) and
 * resolves its target modules. Throws ADAPTER_CONFIG_INVALID / ADAPTER_TARGET_UNSUPPORTED.
 */
export function parseAdapterConfig(json: unknown): { config: PeftAdapterConfig; targets: LoraModule[] } {
  const config = validateAdapterConfig(json);
  return { config, targets: resolveTargets(config.target_modules) };
}

/** The rank PEFT gives `layers.<layer>.<module>` under `cfg`, and its scale (alpha / r, or alpha / sqrt(r) with rsLoRA). */
export function moduleRankScale(
  cfg: PeftAdapterConfig,
  layer: number,
  module: LoraModule,
): { rank: number; scale: number } {
  const rank = rankFor(cfg, layer, module);
  const alpha = alphaFor(cfg, layer, module);
  return { rank, scale: cfg.use_rslora ? alpha / Math.sqrt(rank) : alpha / rank };
}

function validateAdapterConfig(json: unknown): PeftAdapterConfig {
  const bad = (msg: string) => new ModelRuntimeError("ADAPTER_CONFIG_INVALID", `adapter_config.json: ${msg}`);
  if (typeof json !== "object" || json === null) throw bad("not an object");
  const c = json as PeftAdapterConfig;
  if (c.peft_type !== undefined && c.peft_type !== "LORA") throw bad(`peft_type ${c.peft_type} is not LORA`);
  if (!Number.isInteger(c.r) || c.r <= 0) throw bad("r must be a positive integer");
  if (typeof c.lora_alpha !== "number" || !(c.lora_alpha > 0))
    throw bad("lora_alpha must be a positive number");
  if (c.use_rslora !== undefined && typeof c.use_rslora !== "boolean")
    throw bad("use_rslora must be a boolean");
  if (c.use_dora) throw bad("DoRA adapters (use_dora) are not supported");
  if (c.fan_in_fan_out) throw bad("fan_in_fan_out is not supported for Llama linear layers");
  if (c.bias !== undefined && c.bias !== "none") throw bad(`bias "${c.bias}" is not supported (only "none")`);
  if (c.modules_to_save && c.modules_to_save.length > 0) throw bad("modules_to_save is not supported");
  if (!Array.isArray(c.target_modules) && typeof c.target_modules !== "string") {
    throw bad("target_modules must be a list of module names or a string");
  }
  return c;
}

function resolveTargets(target: string[] | string): LoraModule[] {
  if (Array.isArray(target)) {
    for (const t of target) {
      if (!(LORA_MODULES as readonly string[]).includes(t)) {
        throw new ModelRuntimeError(
          "ADAPTER_TARGET_UNSUPPORTED",
          `adapter: target module ${t} is not supported; supported: ${LORA_MODULES.join(", ")}`,
          { module: t },
        );
      }
    }
    return LORA_MODULES.filter((m) => target.includes(m));
  }
  if (target === "all-linear") return [...LORA_MODULES];
  // PEFT treats a string as a regex that must fully match the module's qualified name.
  const re = new RegExp(`^(?:${target})$`);
  const hits = LORA_MODULES.filter(
    (m) => re.test(m) || re.test(`model.layers.0.self_attn.${m}`) || re.test(`model.layers.0.mlp.${m}`),
  );
  if (hits.length === 0) {
    throw new ModelRuntimeError(
      "ADAPTER_TARGET_UNSUPPORTED",
      `adapter: target_modules "${target}" matches nothing`,
    );
  }
  return hits;
}

function patternValue(pattern: Record<string, number> | undefined, layer: number, module: LoraModule) {
  if (!pattern) return undefined;
  const full = `model.layers.${layer}.${module}`;
  for (const [key, value] of Object.entries(pattern)) {
    if (full.endsWith(key) || new RegExp(`(^|\\.)${key}$`).test(full)) return value;
  }
  return undefined;
}

function rankFor(cfg: PeftAdapterConfig, layer: number, module: LoraModule): number {
  return patternValue(cfg.rank_pattern, layer, module) ?? cfg.r;
}

function alphaFor(cfg: PeftAdapterConfig, layer: number, module: LoraModule): number {
  return patternValue(cfg.alpha_pattern, layer, module) ?? cfg.lora_alpha;
}

function expectShape(name: string, shape: number[], expected: number[]): void {
  if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i])) {
    throw new ModelRuntimeError(
      "ADAPTER_SHAPE_MISMATCH",
      `adapter: tensor ${name} has shape [${shape.join(", ")}], expected [${expected.join(", ")}]`,
      { tensor: name, shape, expected },
    );
  }
}

export interface RandomAdapterOptions {
  rank: number;
  alpha?: number;
  targetModules?: LoraModule[];
  useRslora?: boolean;
  seed: number | string;
  /** Magnitude of the update relative to the base weights (default 0.5). */
  strength?: number;
}

export interface PeftFiles {
  adapterConfig: PeftAdapterConfig;
  safetensors: Uint8Array;
}

/**
 * A deterministic random adapter as real PEFT files (both A and B random, unlike PEFT's
 * zero-initialised B, so the adapter visibly changes outputs).
 */
export function generateRandomPeft(config: LlamaConfig, options: RandomAdapterOptions): PeftFiles {
  const rank = options.rank;
  const alpha = options.alpha ?? 2 * rank;
  const targets = options.targetModules ?? DEFAULT_TARGET_MODULES;
  const strength = options.strength ?? 0.5;
  const rng = new Rng(options.seed);
  const tensors = new Map<string, Tensor>();
  const scale = options.useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
  for (let l = 0; l < config.numLayers; l++) {
    for (const m of targets) {
      const { inDim, outDim } = moduleDims(config, m);
      const group = ["gate_proj", "up_proj", "down_proj"].includes(m) ? "mlp" : "self_attn";
      const prefix = `base_model.model.model.layers.${l}.${group}.${m}`;
      const a = rng.fillUniform(new Float32Array(rank * inDim), Math.sqrt(3 / inDim));
      // B chosen so that scale * B A x has about `strength` times the variance of W x.
      const b = rng.fillUniform(new Float32Array(outDim * rank), (strength * Math.sqrt(3 / rank)) / scale);
      tensors.set(`${prefix}.lora_A.weight`, { shape: [rank, inDim], data: a });
      tensors.set(`${prefix}.lora_B.weight`, { shape: [outDim, rank], data: b });
    }
  }
  const adapterConfig: PeftAdapterConfig = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: null,
    r: rank,
    lora_alpha: alpha,
    lora_dropout: 0,
    target_modules: [...targets],
    use_rslora: options.useRslora ?? false,
    bias: "none",
    fan_in_fan_out: false,
    modules_to_save: null,
  };
  return { adapterConfig, safetensors: serializeSafetensors(tensors, { metadata: { format: "pt" } }) };
}

export async function writePeftAdapter(dir: string, files: PeftFiles): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "adapter_config.json"), JSON.stringify(files.adapterConfig, null, 2));
  await writeFile(join(dir, "adapter_model.safetensors"), files.safetensors);
}

/** Convenience for tests and benchmarks: a random adapter decoded in memory. */
export function generateRandomAdapter(config: LlamaConfig, options: RandomAdapterOptions): LoraAdapter {
  const files = generateRandomPeft(config, options);
  return parsePeftAdapter(config, files.adapterConfig, files.safetensors);
}
