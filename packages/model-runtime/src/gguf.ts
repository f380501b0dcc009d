import { open } from "node:fs/promises";
import type { LoraAdapter } from "./adapter.ts";
import { type LlamaConfig, LORA_MODULES, type LoraModule, moduleWeightName } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import { type BaseModel, getWeight } from "./model.ts";
import { floatToHalf } from "./safetensors.ts";

/**
 * A small GGUF (v3) writer: our safetensors base models and PEFT adapters as files llama.cpp
 * loads, so benchmarks run llama.cpp on exactly our weights. Written here because no
 * maintained npm package writes GGUF (node-llama-cpp only reads it), and the Llama-specific
 * part — tensor names and the q/k row permutation for llama.cpp's RoPE layout — is what a
 * converter is about anyway (it mirrors llama.cpp's convert_hf_to_gguf.py and
 * convert_lora_to_gguf.py for the Llama architecture).
 *
 * Layout: magic "GGUF", version 3, tensor count and metadata count (u64), the metadata
 * key/values, the tensor infos (name, dims innermost first, ggml type, offset into the data
 * section), padding to `general.alignment` (32), then each tensor's data, each aligned.
 */

/** ggml tensor types this writer produces. */
export type GgufWeightType = "F32" | "F16" | "Q8_0" | "Q4_0";

const GGML_TYPE: Record<GgufWeightType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 };
const ALIGNMENT = 32;
/** Elements per quantization block (Q8_0 and Q4_0). */
const QK = 32;

// GGUF metadata value types.
const T_UINT32 = 4;
const T_INT32 = 5;
const T_FLOAT32 = 6;
const T_BOOL = 7;
const T_STRING = 8;
const T_ARRAY = 9;

type MetaValue =
  | { type: "u32"; value: number }
  | { type: "i32"; value: number }
  | { type: "f32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "str"; value: string }
  | { type: "strs"; value: string[] }
  | { type: "f32s"; value: Float32Array }
  | { type: "i32s"; value: Int32Array };

interface GgufTensor {
  name: string;
  /** Row-major shape as in safetensors ([out, in]); written innermost first. */
  shape: number[];
  type: GgufWeightType;
  data: Float32Array;
}

const enc = new TextEncoder();

class ByteSink {
  private chunks: Uint8Array[] = [];
  private cur = new Uint8Array(1 << 16);
  private pos = 0;
  length = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.pos));
    this.cur = new Uint8Array(Math.max(1 << 16, n));
    this.pos = 0;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.cur.set(b, this.pos);
    this.pos += b.length;
    this.length += b.length;
  }
  u32(v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.bytes(b);
  }
  i32(v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    this.bytes(b);
  }
  u64(v: number): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    this.bytes(b);
  }
  f32(v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.bytes(b);
  }
  str(s: string): void {
    const b = enc.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(to: number): void {
    const n = (to - (this.length % to)) % to;
    if (n > 0) this.bytes(new Uint8Array(n));
  }
  finish(): Uint8Array {
    this.chunks.push(this.cur.subarray(0, this.pos));
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

function writeMeta(sink: ByteSink, key: string, v: MetaValue): void {
  sink.str(key);
  switch (v.type) {
    case "u32":
      sink.u32(T_UINT32);
      sink.u32(v.value);
      return;
    case "i32":
      sink.u32(T_INT32);
      sink.i32(v.value);
      return;
    case "f32":
      sink.u32(T_FLOAT32);
      sink.f32(v.value);
      return;
    case "bool":
      sink.u32(T_BOOL);
      sink.bytes(Uint8Array.of(v.value ? 1 : 0));
      return;
    case "str":
      sink.u32(T_STRING);
      sink.str(v.value);
      return;
    case "strs":
      sink.u32(T_ARRAY);
      sink.u32(T_STRING);
      sink.u64(v.value.length);
      for (const s of v.value) sink.str(s);
      return;
    case "f32s":
      sink.u32(T_ARRAY);
      sink.u32(T_FLOAT32);
      sink.u64(v.value.length);
      sink.bytes(new Uint8Array(v.value.buffer, v.value.byteOffset, v.value.byteLength));
      return;
    case "i32s":
      sink.u32(T_ARRAY);
      sink.u32(T_INT32);
      sink.u64(v.value.length);
      sink.bytes(new Uint8Array(v.value.buffer, v.value.byteOffset, v.value.byteLength));
      return;
  }
}

/** Bytes of one tensor of `count` elements in `type`. */
function tensorBytes(type: GgufWeightType, count: number): number {
  switch (type) {
    case "F32":
      return count * 4;
    case "F16":
      return count * 2;
    case "Q8_0":
      return (count / QK) * 34;
    case "Q4_0":
      return (count / QK) * 18;
  }
}

/** Encodes `data` as ggml `type` (block layouts of ggml-quants.c's reference quantizers). */
export function encodeGgmlTensor(type: GgufWeightType, data: Float32Array): Uint8Array {
  const out = new Uint8Array(tensorBytes(type, data.length));
  const view = new DataView(out.buffer);
  if (type === "F32") {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return out;
  }
  if (type === "F16") {
    for (let i = 0; i < data.length; i++) view.setUint16(i * 2, floatToHalf(data[i]!), true);
    return out;
  }
  if (data.length % QK !== 0) {
    throw new ModelRuntimeError(
      "MODEL_WEIGHTS_INVALID",
      `gguf: ${type} needs rows that are a multiple of 32`,
    );
  }
  const blocks = data.length / QK;
  if (type === "Q8_0") {
    // block_q8_0 { half d; int8 qs[32] }: d = amax / 127, q = round(x / d).
    for (let b = 0; b < blocks; b++) {
      let amax = 0;
      for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(data[b * QK + j]!));
      const d = amax / 127;
      const id = d !== 0 ? 1 / d : 0;
      const o = b * 34;
      view.setUint16(o, floatToHalf(d), true);
      for (let j = 0; j < QK; j++) view.setInt8(o + 2 + j, Math.round(data[b * QK + j]! * id));
    }
    return out;
  }
  // block_q4_0 { half d; uint8 qs[16] }: d = max / -8 (max = the value of largest magnitude),
  // q = min(15, trunc(x / d + 8.5)); low nibbles hold elements 0..15, high nibbles 16..31.
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = data[b * QK + j]!;
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = max / -8;
    const id = d !== 0 ? 1 / d : 0;
    const o = b * 18;
    view.setUint16(o, floatToHalf(d), true);
    for (let j = 0; j < QK / 2; j++) {
      const x0 = Math.min(15, Math.trunc(data[b * QK + j]! * id + 8.5));
      const x1 = Math.min(15, Math.trunc(data[b * QK + j + QK / 2]! * id + 8.5));
      out[o + 2 + j] = x0 | (x1 << 4);
    }
  }
  return out;
}

/**
 * llama.cpp's rotary layout: HF Llama rotates the two halves of each head (rotate_half),
 * llama.cpp rotates interleaved pairs. Converting the rows of q/k (and of q/k lora_B)
 * per head — reshape (heads, 2, headDim/2, cols), swap the middle axes — makes the two agree.
 */
export function permuteForLlamaCppRope(data: Float32Array, heads: number, cols: number): Float32Array {
  const rows = data.length / cols;
  const headRows = rows / heads;
  const half = headRows / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let two = 0; two < 2; two++) {
      for (let i = 0; i < half; i++) {
        const src = h * headRows + two * half + i;
        const dst = h * headRows + i * 2 + two;
        out.set(data.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

const LLAMA_CPP_MODULE: Record<LoraModule, string> = {
  q_proj: "attn_q",
  k_proj: "attn_k",
  v_proj: "attn_v",
  o_proj: "attn_output",
  gate_proj: "ffn_gate",
  up_proj: "ffn_up",
  down_proj: "ffn_down",
};

function ropeHeads(config: LlamaConfig, m: LoraModule): number | null {
  if (m === "q_proj") return config.numHeads;
  if (m === "k_proj") return config.numKvHeads;
  return null;
}

function architectureMeta(config: LlamaConfig): [string, MetaValue][] {
  return [
    ["general.architecture", { type: "str", value: "llama" }],
    ["general.alignment", { type: "u32", value: ALIGNMENT }],
    ["llama.context_length", { type: "u32", value: config.maxPositionEmbeddings }],
    ["llama.embedding_length", { type: "u32", value: config.hiddenSize }],
    ["llama.block_count", { type: "u32", value: config.numLayers }],
    ["llama.feed_forward_length", { type: "u32", value: config.intermediateSize }],
    ["llama.attention.head_count", { type: "u32", value: config.numHeads }],
    ["llama.attention.head_count_kv", { type: "u32", value: config.numKvHeads }],
    ["llama.attention.key_length", { type: "u32", value: config.headDim }],
    ["llama.attention.value_length", { type: "u32", value: config.headDim }],
    ["llama.rope.dimension_count", { type: "u32", value: config.headDim }],
    ["llama.rope.freq_base", { type: "f32", value: config.ropeTheta }],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: config.rmsNormEps }],
    ["llama.vocab_size", { type: "u32", value: config.vocabSize }],
  ];
}

/**
 * Vocabulary metadata. llama.cpp needs one to load a model, but benchmarks and the parity
 * test feed token ids, so exact text handling is not needed: a byte-level SentencePiece-style
 * vocabulary (`<0x00>`..`<0xFF>`, as the tiny model's ids 0..255 are bytes) padded with
 * placeholder tokens to the model's vocabulary size, BOS/EOS from the config.
 */
function vocabMeta(config: LlamaConfig): [string, MetaValue][] {
  const V = config.vocabSize;
  if (V < 259)
    throw new ModelRuntimeError("MODEL_CONFIG_INVALID", "gguf: vocabulary smaller than 259 tokens");
  const tokens: string[] = [];
  const types = new Int32Array(V);
  const eos = new Set(config.eosTokenIds);
  for (let i = 0; i < V; i++) {
    if (i < 256 && !eos.has(i) && i !== config.bosTokenId) {
      tokens.push(`<0x${i.toString(16).toUpperCase().padStart(2, "0")}>`);
      types[i] = 6; // BYTE
    } else if (eos.has(i) || i === config.bosTokenId) {
      // llama.cpp recognises "</s>" as end of generation by its text.
      const first = i === config.bosTokenId ? "<s>" : i === config.eosTokenIds[0] ? "</s>" : `</s${i}>`;
      tokens.push(first);
      types[i] = 3; // CONTROL
    } else {
      tokens.push(`<t${i}>`);
      types[i] = 1; // NORMAL
    }
  }
  // Ids whose byte token gave way to BOS/EOS (SmolLM's 0): the byte moves to a free id so
  // the vocabulary still holds all 256 bytes (llama.cpp looks up <0x0A> at load).
  let free = 256;
  for (let i = 0; i < 256; i++) {
    if (types[i] === 6) continue;
    while (free < V && (types[free] !== 1 || eos.has(free) || free === config.bosTokenId)) free++;
    if (free >= V) break;
    tokens[free] = `<0x${i.toString(16).toUpperCase().padStart(2, "0")}>`;
    types[free] = 6;
    free++;
  }
  const meta: [string, MetaValue][] = [
    ["tokenizer.ggml.model", { type: "str", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "strs", value: tokens }],
    ["tokenizer.ggml.scores", { type: "f32s", value: new Float32Array(V) }],
    ["tokenizer.ggml.token_type", { type: "i32s", value: types }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: false }],
    // No "▁" word prefix: byte tokens decode back to exactly the text they encode.
    ["tokenizer.ggml.add_space_prefix", { type: "bool", value: false }],
  ];
  if (config.bosTokenId !== null)
    meta.push(["tokenizer.ggml.bos_token_id", { type: "u32", value: config.bosTokenId }]);
  if (config.eosTokenIds[0] !== undefined)
    meta.push(["tokenizer.ggml.eos_token_id", { type: "u32", value: config.eosTokenIds[0] }]);
  return meta;
}

async function writeGguf(path: string, meta: [string, MetaValue][], tensors: GgufTensor[]): Promise<number> {
  const head = new ByteSink();
  head.bytes(enc.encode("GGUF"));
  head.u32(3);
  head.u64(tensors.length);
  head.u64(meta.length);
  for (const [k, v] of meta) writeMeta(head, k, v);
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    head.str(t.name);
    head.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) head.u64(t.shape[i]!);
    head.u32(GGML_TYPE[t.type]);
    head.u64(offset);
    offsets.push(offset);
    offset += tensorBytes(t.type, t.data.length);
    offset += (ALIGNMENT - (offset % ALIGNMENT)) % ALIGNMENT;
  }
  head.pad(ALIGNMENT);
  const headBytes = head.finish();
  const fh = await open(path, "w");
  try {
    await fh.write(headBytes, 0, headBytes.length, 0);
    for (const [i, t] of tensors.entries()) {
      const bytes = encodeGgmlTensor(t.type, t.data);
      await fh.write(bytes, 0, bytes.length, headBytes.length + offsets[i]!);
    }
    // Trailing padding of the last tensor, so the file length matches the offsets.
    const end = headBytes.length + offset;
    await fh.truncate(end);
    return end;
  } finally {
    await fh.close();
  }
}

/** Weight type of each base tensor: norms stay f32 (as llama.cpp's converter keeps 1-D tensors). */
function pickType(shape: number[], type: GgufWeightType): GgufWeightType {
  if (shape.length < 2) return "F32";
  if ((type === "Q8_0" || type === "Q4_0") && shape[shape.length - 1]! % QK !== 0) return "F16";
  return type;
}

/**
 * Writes `model` as a llama.cpp GGUF file (architecture `llama`). `type` applies to the 2-D
 * weights (embedding included; 1-D norms stay f32). Returns the file size.
 */
export async function writeModelGguf(
  path: string,
  model: BaseModel,
  options: { type?: GgufWeightType; name?: string } = {},
): Promise<number> {
  const c = model.config;
  const type = options.type ?? "F32";
  const fileType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 }[type];
  const meta: [string, MetaValue][] = [
    ...architectureMeta(c),
    ["general.name", { type: "str", value: options.name ?? "openledger" }],
    ["general.file_type", { type: "u32", value: fileType }],
    ...vocabMeta(c),
  ];
  const tensors: GgufTensor[] = [];
  const add = (name: string, hf: string, data?: Float32Array) => {
    const w = getWeight(model, hf);
    tensors.push({ name, shape: w.shape, type: pickType(w.shape, type), data: data ?? w.data });
  };
  add("token_embd.weight", "model.embed_tokens.weight");
  for (let l = 0; l < c.numLayers; l++) {
    add(`blk.${l}.attn_norm.weight`, `model.layers.${l}.input_layernorm.weight`);
    add(`blk.${l}.ffn_norm.weight`, `model.layers.${l}.post_attention_layernorm.weight`);
    for (const m of LORA_MODULES) {
      const hf = moduleWeightName(l, m);
      const heads = ropeHeads(c, m);
      const w = getWeight(model, hf);
      add(
        `blk.${l}.${LLAMA_CPP_MODULE[m]}.weight`,
        hf,
        heads === null ? undefined : permuteForLlamaCppRope(w.data, heads, w.shape[1]!),
      );
    }
  }
  add("output_norm.weight", "model.norm.weight");
  if (!c.tieWordEmbeddings) add("output.weight", "lm_head.weight");
  return writeGguf(path, meta, tensors);
}

/**
 * Writes a LoRA adapter as a llama.cpp adapter GGUF (`general.type = adapter`,
 * `adapter.type = lora`): per module `blk.N.<module>.weight.lora_a` ([rank, in] as PEFT's
 * lora_A) and `.lora_b` ([out, rank]; q/k rows permuted like the base weights). llama.cpp
 * scales by `adapter.lora.alpha / rank`; when the modules' scales do not share one alpha
 * (rank/alpha patterns, rsLoRA) each scale is folded into lora_b and alpha is written as 0
 * (llama.cpp then applies the scale 1).
 */
export async function writeLoraGguf(
  path: string,
  config: LlamaConfig,
  adapter: LoraAdapter,
): Promise<number> {
  const alphas = new Set([...adapter.modules.values()].map((w) => w.scale * w.rank));
  const alphaValues = [...alphas];
  const uniform = alphaValues.every((a) => Math.abs(a - alphaValues[0]!) <= 1e-6 * Math.abs(alphaValues[0]!));
  const alpha = uniform ? alphaValues[0]! : 0;
  const meta: [string, MetaValue][] = [
    ["general.architecture", { type: "str", value: "llama" }],
    ["general.alignment", { type: "u32", value: ALIGNMENT }],
    ["general.type", { type: "str", value: "adapter" }],
    ["adapter.type", { type: "str", value: "lora" }],
    ["adapter.lora.alpha", { type: "f32", value: alpha }],
  ];
  const tensors: GgufTensor[] = [];
  const keys = [...adapter.modules.keys()].sort((x, y) => {
    const [lx, mx] = x.split(".") as [string, LoraModule];
    const [ly, my] = y.split(".") as [string, LoraModule];
    return Number(lx) - Number(ly) || LORA_MODULES.indexOf(mx) - LORA_MODULES.indexOf(my);
  });
  for (const key of keys) {
    const w = adapter.modules.get(key)!;
    const [layer, m] = key.split(".") as [string, LoraModule];
    const base = `blk.${layer}.${LLAMA_CPP_MODULE[m]}.weight`;
    const inDim = w.a.length / w.rank;
    const outDim = w.b.length / w.rank;
    let b = w.b;
    if (!uniform) b = b.map((v) => v * w.scale);
    const heads = ropeHeads(config, m);
    if (heads !== null) b = permuteForLlamaCppRope(b, heads, w.rank);
    tensors.push({ name: `${base}.lora_a`, shape: [w.rank, inDim], type: "F32", data: w.a });
    tensors.push({ name: `${base}.lora_b`, shape: [outDim, w.rank], type: "F32", data: b });
  }
  return writeGguf(path, meta, tensors);
}
