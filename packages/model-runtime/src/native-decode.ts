/**
 * The native batch-1 decode step (@openledger/decode-native: C++ over Node-API, compiled by node-gyp
 * at `npm ci`), loaded once. Optional: where the install could not compile it, or
 * `OPENLEDGER_DECODE_NATIVE=off` (an operator's switch, and how the tests reproduce a machine without
 * it), `nativeDecodeAddon` is null and every step runs in onnxruntime. `OPENLEDGER_DECODE_NATIVE_ISA`
 * (avx512vnni, avx2, scalar) forces the integer kernel; by default the fastest the CPU runs.
 * Loaded with `require` (a .node file), so a missing addon is a caught error, not a failed import.
 */
import { createRequire } from "node:module";
import type { LlamaConfig } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import { type BaseModel, getWeight } from "./model.ts";
import type { ChannelQuantizedMatrix } from "./quantize.ts";

export type DecodeIsa = "avx512vnni" | "avx2" | "scalar";

/** One int8c linear layer as the graph quantized it: data [cols, rows] (MatMul's B), scales [rows]. */
export interface NativeLinear extends ChannelQuantizedMatrix {
  rows: number;
  cols: number;
}

/**
 * One adapter for a step, in the runtime's slot layout: `a[l * modules.length + i]` is module i's A
 * [in, rank] in layer l, `b` the same module's scale·B [rank, out]; `modules` index LORA_MODULES
 * (q, k, v, o, gate, up, down: the addon's numbering).
 */
export interface NativeAdapter {
  rank: number;
  modules: number[];
  a: Float32Array[];
  b: Float32Array[];
}

interface NativeModelHandle {
  readonly __brand: "decode-native-model";
}

export interface DecodeNativeAddon {
  createModel(
    config: LlamaConfig,
    weights: {
      embed: Float32Array;
      inputNorm: Float32Array[];
      postNorm: Float32Array[];
      finalNorm: Float32Array;
      /** All of them at once; or none here and `setLinear` for each. */
      linears?: NativeLinear[];
    },
    /** hugePages (default true): the int8 weights in one mapping madvised for 2 MB transparent huge pages. */
    options?: { isa?: DecodeIsa; threads?: number; hugePages?: boolean },
  ): NativeModelHandle;
  /**
   * Appends the token's K/V at column `pos` of each layer's buffer ([>= pos+1, kvH·D]) and fills
   * `logits`; with `adapter`, its LoRA deltas are added to the targeted projections.
   */
  step(
    model: NativeModelHandle,
    token: number,
    pos: number,
    keys: Float32Array[],
    values: Float32Array[],
    logits: Float32Array,
    adapter?: NativeAdapter,
  ): void;
  /**
   * Reads the embedding from a read-only mapping of `path` at `offset` (page-aligned; [vocab, hidden]
   * f32) instead of the array given to createModel, which it lets go.
   */
  mapEmbedding(model: NativeModelHandle, path: string, offset: number): void;
  /** Linear layer `index` (per layer q+k+v, o, gate+up, down; then the head), copied. */
  setLinear(model: NativeModelHandle, index: number, linear: NativeLinear): void;
  info(model: NativeModelHandle): { isa: DecodeIsa; threads: number; weightBytes: number };
  dispose(model: NativeModelHandle): void;
  /** The kernels this CPU runs, fastest first. */
  isas(): DecodeIsa[];
}

let addon: DecodeNativeAddon | null = null;
let loadError: string | null = null;
try {
  if (process.env.OPENLEDGER_DECODE_NATIVE === "off")
    throw new Error("disabled by OPENLEDGER_DECODE_NATIVE=off");
  addon = createRequire(import.meta.url)("@openledger/decode-native") as DecodeNativeAddon;
  if (typeof addon.step !== "function") throw new Error("the addon has no step()");
} catch (err) {
  addon = null;
  loadError = ((err as Error).message ?? String(err)).split("\n")[0]!;
}

/** The addon, or null (then `nativeDecodeStatus().reason` says why). */
export const nativeDecodeAddon: DecodeNativeAddon | null = addon;

export function nativeDecodeStatus(): { available: boolean; reason: string | null } {
  return { available: addon !== null, reason: loadError };
}

/** A model's weights held by the addon: one token of one sequence per `step`. */
export class NativeDecoder {
  readonly isa: DecodeIsa;
  readonly threads: number;
  #handle: NativeModelHandle | null;

  /**
   * Norms and the f32 embedding come from `model` (before releaseWeights); the linear layers follow
   * through `setLinear` as the int8c graph quantizes them (`GraphOptions.onQuantized`), each copied
   * at once, so the quantized JS arrays never pile up.
   */
  constructor(
    private readonly addon: DecodeNativeAddon,
    model: BaseModel,
    options: { threads?: number; isa?: DecodeIsa } = {},
  ) {
    const c = model.config;
    const isa = options.isa ?? (process.env.OPENLEDGER_DECODE_NATIVE_ISA as DecodeIsa | undefined);
    const layers = Array.from({ length: c.numLayers }, (_, l) => l);
    this.#handle = addon.createModel(
      c,
      {
        embed: getWeight(model, "model.embed_tokens.weight").data,
        inputNorm: layers.map((l) => getWeight(model, `model.layers.${l}.input_layernorm.weight`).data),
        postNorm: layers.map(
          (l) => getWeight(model, `model.layers.${l}.post_attention_layernorm.weight`).data,
        ),
        finalNorm: getWeight(model, "model.norm.weight").data,
      },
      { threads: options.threads ?? 1, ...(isa ? { isa } : {}) },
    );
    const info = addon.info(this.#handle);
    this.isa = info.isa;
    this.threads = info.threads;
  }

  /** Bytes the addon holds: int8 weights (rows padded to 64), their scales and column sums (the f32 embedding is the model's array, held by reference). */
  get weightBytes(): number {
    return this.#handle ? this.addon.info(this.#handle).weightBytes : 0;
  }

  /** The embedding from a file (see DecodeNativeAddon.mapEmbedding): the model's f32 array is let go. */
  mapEmbedding(path: string, offset: number): void {
    if (!this.#handle) throw new ModelRuntimeError("SEQUENCE_INVALID", "the native decoder was disposed");
    this.addon.mapEmbedding(this.#handle, path, offset);
  }

  /** Linear layer `index` in the graph's order (per layer q+k+v, o, gate+up, down; then the head). */
  setLinear(index: number, linear: NativeLinear): void {
    if (!this.#handle) throw new ModelRuntimeError("SEQUENCE_INVALID", "the native decoder was disposed");
    this.addon.setLinear(this.#handle, index, linear);
  }

  /**
   * Runs `token` at `pos` (with `adapter`'s deltas when given): writes its K/V at column pos of
   * `keys[l]` / `values[l]`; returns the logits.
   */
  step(
    token: number,
    pos: number,
    keys: Float32Array[],
    values: Float32Array[],
    vocab: number,
    adapter?: NativeAdapter,
  ): Float32Array {
    if (!this.#handle) throw new ModelRuntimeError("SEQUENCE_INVALID", "the native decoder was disposed");
    const logits = new Float32Array(vocab);
    this.addon.step(this.#handle, token, pos, keys, values, logits, adapter);
    return logits;
  }

  dispose(): void {
    if (this.#handle) this.addon.dispose(this.#handle);
    this.#handle = null;
  }
}
