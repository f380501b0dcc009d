import { randomBytes } from "node:crypto";
import { closeSync, openSync, unlinkSync, writeSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import type { LoraAdapter } from "./adapter.ts";
import { type LlamaConfig, LORA_MODULES, type LoraModule, moduleDims } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import {
  type AttentionImpl,
  buildLlamaGraph,
  type ExternalDataSink,
  externalWeightName,
  LORA_ON,
  loraInputName,
  loraStackInputs,
  NEW_KV,
} from "./graph.ts";
import type { BaseModel } from "./model.ts";
import { type DecodeIsa, NativeDecoder, nativeDecodeAddon } from "./native-decode.ts";
import type { WeightFormat } from "./quantize.ts";
import { RowSamplers, type SamplingParams } from "./sampler.ts";
import { type PreparedAdapter, prepareSlotAdapter, type SlotLayout, SlotTable } from "./slots.ts";

export interface RuntimeOptions {
  /** Number of adapter slots including the reserved slot 0 (default 16). */
  slots?: number;
  /** LoRA target modules served (default q, k, v, o). */
  targetModules?: LoraModule[];
  /** Slot ranks. One bucket = pad every adapter to it; several = bucket by rank (default [16]). */
  rankBuckets?: number[];
  /** false builds the plain base graph (no LoRA inputs): the throughput ceiling. */
  lora?: boolean;
  /** Base weights of these modules become per-run inputs (merged-weights baseline). */
  externalWeights?: LoraModule[];
  /** In-graph LoRA layout: "segment" (default, each distinct adapter read once) or "row" (per-row gather; for comparison). */
  loraMode?: "segment" | "row";
  /**
   * Skip the LoRA deltas in steps without an adapter row (an `If` per layer group; default true).
   * false keeps the deltas always on (the graph before; kept for comparison, bench:lora-skip).
   */
  loraSkip?: boolean;
  /** Attention as one ONNX `Attention` node per layer ("fused", default) or as plain ops ("ops", for comparison). */
  attention?: AttentionImpl;
  /** onnxruntime intra-op threads (default: available cores). */
  intraOpThreads?: number;
  /**
   * Let onnxruntime's intra-op workers spin-wait between the parallel sections of a run (they
   * stop when the run returns) instead of sleeping (default false).
   * On a shared, oversubscribed CPU a spinning worker burns the core the other one needs:
   * a tiny-model decode step with 32 distinct adapters (32-batch LoRA MatMuls, each split
   * across the pool) measured 10-16 ms with spinning vs 1.5 ms without (bench/RESULTS.md).
   */
  spinWait?: boolean;
  /** Extra onnxruntime session options (e.g. enableProfiling), merged over the defaults. */
  sessionOptions?: ort.InferenceSession.SessionOptions;
  /**
   * Base weights as served: "f32" (default), or blockwise "int8" / "int4" quantized from the
   * f32 weights at build time (MatMulNBits; see quantize.ts). Per deployment.
   */
  weights?: WeightFormat;
  /**
   * Empty `model.weights` once the session holds them, so the process keeps one copy of the
   * weights (onnxruntime's), not a second one in JS. The model's config stays usable; the
   * merged-weights baseline and the TS reference need the weights, so it is off by default.
   */
  releaseWeights?: boolean;
  /**
   * Folder for the temporary file the weights pass through on their way to onnxruntime
   * (default: the OS temp folder). It is deleted as soon as the session is built.
   */
  weightsTempDir?: string;
  /**
   * With `weights: "int8c"`: run each step that is exactly one decode row (with or without an adapter)
   * in the native decode addon (@openledger/decode-native) over the same int8 weights, instead of
   * onnxruntime (default: on when the addon is built). It reads and appends the same KV buffers, so
   * a sequence moves freely between native and batched steps. The addon holds its own copy of the
   * int8 weights and of the f32 embedding (bench/RESULTS.md reports the RSS).
   */
  nativeDecode?: boolean;
  /** Threads of the native decode step (default 1; a persistent pool that sleeps between matmuls). */
  nativeDecodeThreads?: number;
  /** Integer kernel of the native step (default: the fastest the CPU runs; for tests). */
  nativeDecodeIsa?: DecodeIsa;
}

/**
 * The graph's large initializers, written to a temporary file that onnxruntime reads while it
 * builds the session (offsets page-aligned, so it may map them): the model protobuf stays a
 * few hundred KB and the weights are never copied into it.
 */
class TempWeightsFile implements ExternalDataSink {
  readonly location: string;
  private readonly fd: number;
  private offset = 0;
  /** Where each initializer went (the native step maps the embedding from here). */
  readonly offsets = new Map<string, number>();

  constructor(readonly dir: string) {
    this.location = `openledger-weights-${process.pid}-${randomBytes(6).toString("hex")}.bin`;
    this.fd = openSync(join(dir, this.location), "wx", 0o600);
  }

  write(bytes: Uint8Array, name: string): number {
    this.offset = Math.ceil(this.offset / 4096) * 4096;
    const at = this.offset;
    this.offsets.set(name, at);
    let done = 0;
    while (done < bytes.byteLength)
      done += writeSync(this.fd, bytes, done, bytes.byteLength - done, at + done);
    this.offset += bytes.byteLength;
    return at;
  }

  /** Closes and unlinks the file (a mapping onnxruntime holds stays valid). */
  remove(): void {
    closeSync(this.fd);
    unlinkSync(join(this.dir, this.location));
  }
}

/** One row of a step: feed `tokens` (the prompt, or the last sampled token) to sequence `seqId`. */
export interface StepRow {
  seqId: string | number;
  tokens: number[];
  /** Adapter slot for this row; 0 = base model. */
  slot: number;
}

/** A row of `stepSample`: `sample` set = draw this row's next token with these parameters. */
export interface SampledStepRow extends StepRow {
  sample?: SamplingParams;
}

export interface StepTimings {
  /** Time outside onnxruntime (feeds, KV copies). */
  prepareMs: number;
  runMs: number;
  /** Session runs of the step: 2 when prefill rows ran detached next to the resident batch. */
  runs: number;
  /** True when the resident KV batch was copied out and re-assembled (composition changed). */
  kvRebuilt: boolean;
  /**
   * Adapters copied into the stacked LoRA inputs this step: 0 in segment mode, whose runs read the
   * slot stacks in place (`SlotStack`; a slot write copies its adapter there once, outside any
   * step); row mode ("row", for comparison) counts its full-stack rebuilds.
   */
  adapterCopies: number;
  /**
   * Stack entries the step's runs read that none of their rows uses: the gaps in their slot ranges
   * (segment mode; each costs about one read of an adapter by the LoRA MatMuls, not a copy).
   */
  unusedAdapterReads: number;
  /**
   * Ms this runtime's thread spent writing adapters into their slot-stack entries (`loadAdapter`)
   * since its previous step began: loads handled between two steps delay the later one by this much.
   */
  slotWriteMs: number;
  /** True when the step ran in the native decode addon (`RuntimeOptions.nativeDecode`), not onnxruntime. */
  native: boolean;
}

/** `lastTimings` before the first step. */
export const noStepYet = (): StepTimings => ({
  prepareMs: 0,
  runMs: 0,
  runs: 0,
  kvRebuilt: false,
  adapterCopies: 0,
  unusedAdapterReads: 0,
  slotWriteMs: 0,
  native: false,
});

type SeqId = string | number;

/**
 * What the serving side needs from a model runtime: `ModelRuntime` (this thread) and
 * `WorkerRuntime` (its own thread, runtime-host.ts) both provide it.
 */
export interface StepRuntime {
  readonly config: LlamaConfig;
  readonly slotLayout: SlotLayout;
  readonly lastTimings: StepTimings;
  step(rows: StepRow[]): Promise<Float32Array[]>;
  /**
   * A step that samples where it runs: per row, the drawn token (rows with `sample`) or -1. Only
   * token ids come back, so a runtime on another thread keeps the logits and the sampling there.
   * A sequence's sampler (its PRNG state) lives until `release`.
   */
  stepSample(rows: SampledStepRow[]): Promise<Int32Array>;
  release(seqId: SeqId): void;
  /** Returns the slot's bytes. */
  loadAdapter(slot: number, adapter: LoraAdapter | PreparedAdapter): number;
  clearSlot(slot: number): void;
  hasSequence(seqId: SeqId): boolean;
  sequenceLength(seqId: SeqId): number;
  dispose(): Promise<void>;
}

interface SeqState {
  length: number;
  /** KV outside the resident batch: k[l] and v[l] [length, kvH*D]. */
  k: Float32Array[] | null;
  v: Float32Array[] | null;
}

interface ResidentBatch {
  seqIds: SeqId[];
  past: number;
  /** Per layer [B, past, kvH*D], sequence-major (what the graph takes). */
  keys: Float32Array[];
  values: Float32Array[];
  /** Per row, the KV columns holding its tokens, in position order. */
  cols: number[][];
}

interface ActiveStack {
  key: string;
  tensors: Map<string, ort.Tensor>;
  /** slot -> index in the stack */
  index: Map<number, number>;
}

const MASKED = -1e9;

/**
 * A batch-of-one layer cache [1, P, W] viewed as [1, P+T, W]: the same buffer while it has room, else
 * a new one of twice the size (the past copied); the new columns are the caller's to fill.
 */
function growInPlace(past: Float32Array, P: number, T: number, W: number): Float32Array {
  const total = P + T;
  let buffer = past.buffer as ArrayBuffer;
  if (past.byteOffset !== 0 || buffer.byteLength < total * W * 4) {
    buffer = new ArrayBuffer(Math.max(total, 2 * P, 64) * W * 4);
    new Float32Array(buffer).set(past.subarray(0, P * W));
  }
  return new Float32Array(buffer, 0, total * W);
}

/**
 * One layer's cache [B, P, W] with this step's columns [B, T, W] appended: [B, P+T, W]. A single
 * row (batch-1 decode) grows in place inside a buffer that doubles when full, so a decode step
 * writes only its own columns; several rows are re-laid out (their rows' stride changes).
 */
function appendColumns(
  past: Float32Array,
  fresh: Float32Array,
  B: number,
  P: number,
  T: number,
  W: number,
  /** `fresh` holds row (b, t)'s W values at (b·T + t)·stride + offset (the graph's `new_kv`). */
  stride: number,
  offset: number,
) {
  const total = P + T;
  const freshRow = (b: number, t: number) => {
    const at = (b * T + t) * stride + offset;
    return fresh.subarray(at, at + W);
  };
  if (B === 1) {
    const out = growInPlace(past, P, T, W);
    for (let t = 0; t < T; t++) out.set(freshRow(0, t), (P + t) * W);
    return out;
  }
  const out = new Float32Array(B * total * W);
  for (let b = 0; b < B; b++) {
    out.set(past.subarray(b * P * W, (b + 1) * P * W), b * total * W);
    for (let t = 0; t < T; t++) out.set(freshRow(b, t), b * total * W + (P + t) * W);
  }
  return out;
}

type ResolvedOptions = Required<
  Omit<
    RuntimeOptions,
    | "externalWeights"
    | "sessionOptions"
    | "spinWait"
    | "releaseWeights"
    | "weightsTempDir"
    | "nativeDecode"
    | "nativeDecodeThreads"
    | "nativeDecodeIsa"
  >
>;

/**
 * The ONNX session of one base model, its adapter slots and every sequence's KV cache.
 * `step` runs one forward for any mix of prefill and decode rows (continuous batching):
 * rows of different lengths batch together through an additive mask, each row with its
 * own positions, KV and adapter slot. Sequences join by appearing in a step and leave
 * with `release`.
 */
export class ModelRuntime implements StepRuntime {
  readonly slots: SlotTable;
  readonly targetModules: LoraModule[];
  readonly rankBuckets: number[];
  readonly loraEnabled: boolean;
  readonly loraMode: "segment" | "row";
  readonly loraSkip: boolean;
  readonly intraOpThreads: number;
  readonly weightFormat: WeightFormat;
  /** Feeds for externalWeights modules, keyed `w.l.m` (the merged baseline sets these). */
  readonly externalWeights = new Map<string, ort.Tensor>();
  lastTimings: StepTimings = noStepYet();
  /**
   * The native decode step when this runtime has one (see `RuntimeOptions.nativeDecode`); tests
   * switch it off and on mid-sequence through `useNativeDecode`.
   */
  readonly nativeDecoder: NativeDecoder | null;
  useNativeDecode: boolean;
  /** The target modules in the native addon's numbering. */
  readonly #nativeModules: number[];
  /** Adapter copies into the LoRA stacks, and unused stack entries read, since the last step began (see StepTimings). */
  #adapterCopies = 0;
  #unusedReads = 0;
  /** Ms spent in slot writes since the last step began (StepTimings.slotWriteMs). */
  #slotWriteMs = 0;

  private readonly seqs = new Map<SeqId, SeqState>();
  readonly #samplers = new RowSamplers();
  private resident: ResidentBatch | null = null;
  private readonly stackCache = new Map<number, ActiveStack>();
  /** Per rank bucket: the graph inputs last built over a range of its slot stack (`slotRange`). */
  private readonly rangeCache = new Map<number, { key: string; tensors: Map<string, ort.Tensor> }>();

  private constructor(
    readonly model: BaseModel,
    private readonly session: ort.InferenceSession,
    options: ResolvedOptions,
    native: NativeDecoder | null,
  ) {
    this.nativeDecoder = native;
    this.useNativeDecode = native !== null;
    this.weightFormat = options.weights;
    this.loraMode = options.loraMode;
    this.loraSkip = options.loraSkip;
    this.targetModules = options.targetModules;
    this.rankBuckets = options.rankBuckets;
    this.loraEnabled = options.lora;
    this.intraOpThreads = options.intraOpThreads;
    this.slots = new SlotTable(model.config, this.targetModules, this.rankBuckets, options.slots, (bucket) =>
      loraStackInputs(model.config, { targetModules: this.targetModules, mode: this.loraMode }, bucket),
    );
    this.#nativeModules = this.targetModules.map((m) => LORA_MODULES.indexOf(m));
  }

  /** Builds the graph and the session once. */
  static async create(model: BaseModel, options: RuntimeOptions = {}): Promise<ModelRuntime> {
    const resolved: ResolvedOptions = {
      slots: options.slots ?? 16,
      targetModules: options.targetModules ?? ["q_proj", "k_proj", "v_proj", "o_proj"],
      rankBuckets: [...(options.rankBuckets ?? [16])].sort((a, b) => a - b),
      lora: options.lora ?? true,
      loraMode: options.loraMode ?? "segment",
      loraSkip: options.loraSkip ?? true,
      intraOpThreads: options.intraOpThreads ?? availableParallelism(),
      weights: options.weights ?? "f32",
      attention: options.attention ?? "fused",
    };
    const file = new TempWeightsFile(options.weightsTempDir ?? tmpdir());
    // The native step serves base-model decode rows; merged (external) weights stay in onnxruntime.
    const addon =
      resolved.weights === "int8c" && options.nativeDecode !== false && !options.externalWeights?.length
        ? nativeDecodeAddon
        : null;
    let session: ort.InferenceSession;
    let native: NativeDecoder | null = null;
    try {
      if (addon) {
        native = new NativeDecoder(addon, model, {
          threads: options.nativeDecodeThreads ?? 1,
          ...(options.nativeDecodeIsa ? { isa: options.nativeDecodeIsa } : {}),
        });
      }
      let linear = 0;
      const graph = buildLlamaGraph(model, {
        lora: resolved.lora
          ? {
              targetModules: resolved.targetModules,
              rankBuckets: resolved.rankBuckets,
              mode: resolved.loraMode,
              skipWhenUnused: resolved.loraSkip,
            }
          : null,
        externalWeights: options.externalWeights ?? [],
        weights: resolved.weights,
        attention: resolved.attention,
        externalData: file,
        // Each quantized matrix goes to the addon (a transposed copy) as soon as it exists.
        ...(native
          ? { onQuantized: (_, rows, cols, q) => native!.setLinear(linear++, { rows, cols, ...q }) }
          : {}),
      });
      // The embedding as onnxruntime gets it: a read-only mapping of the same file pages (only the rows
      // decoded are ever read in), instead of keeping the model's f32 table alive in JS.
      const at = file.offsets.get("model.embed_tokens.weight");
      if (native && at !== undefined) native.mapEmbedding(join(file.dir, file.location), at);
      session = await ort.InferenceSession.create(graph.bytes, {
        intraOpNumThreads: resolved.intraOpThreads,
        interOpNumThreads: 1,
        executionMode: "sequential",
        graphOptimizationLevel: "all",
        ...options.sessionOptions,
        extra: {
          ...options.sessionOptions?.extra,
          session: {
            intra_op: { allow_spinning: options.spinWait ? "1" : "0" },
            // Spin only inside a run: the workers stop when it returns, so they never take the
            // core the JS threads need between steps (feeds, KV bookkeeping, sampling, HTTP).
            ...(options.spinWait ? { force_spinning_stop: "1" } : {}),
            model_external_initializers_file_folder_path: file.dir,
            ...(options.sessionOptions?.extra as { session?: object } | undefined)?.session,
          },
        },
      });
    } catch (err) {
      native?.dispose();
      throw err;
    } finally {
      file.remove();
    }
    if (options.releaseWeights) model.weights.clear();
    return new ModelRuntime(model, session, resolved, native);
  }

  /** Ends onnxruntime profiling (when enabled through sessionOptions) and writes its file. */
  endProfiling(): void {
    this.session.endProfiling();
  }

  async dispose(): Promise<void> {
    this.nativeDecoder?.dispose();
    await this.session.release();
  }

  get config(): LlamaConfig {
    return this.model.config;
  }

  /** Target modules and rank buckets of this runtime's slots (for `prepareSlotAdapter`). */
  get slotLayout(): SlotLayout {
    return this.slots.layout;
  }

  /** Converts a decoded adapter to this runtime's slot layout (what `loadAdapter` takes). */
  prepareAdapter(adapter: LoraAdapter): PreparedAdapter {
    return prepareSlotAdapter(this.model.config, this.slots.layout, adapter);
  }

  /**
   * Puts an adapter into a slot (no session rebuild). Returns the slot's bytes. A
   * `PreparedAdapter` (see `AdapterLoadPool`) is copied once into the slot's entry of its
   * bucket's stack, where every later run reads it; a `LoraAdapter` is converted on this thread first.
   */
  loadAdapter(slot: number, adapter: LoraAdapter | PreparedAdapter): number {
    if (!this.loraEnabled) {
      throw new ModelRuntimeError("SLOT_OUT_OF_RANGE", "this runtime was built without LoRA (lora: false)");
    }
    const t0 = performance.now();
    const bytes = this.slots.write(slot, adapter);
    this.#slotWriteMs += performance.now() - t0;
    this.stackCache.clear();
    return bytes;
  }

  clearSlot(slot: number): void {
    this.slots.clear(slot);
    this.stackCache.clear();
  }

  hasSequence(seqId: SeqId): boolean {
    return this.seqs.has(seqId);
  }

  /** Tokens already in the sequence's KV cache (its next position). */
  sequenceLength(seqId: SeqId): number {
    return this.seqs.get(seqId)?.length ?? 0;
  }

  get activeSequences(): number {
    return this.seqs.size;
  }

  /** `StepRuntime.stepSample`: a step, then each sampled row's token drawn by its sequence's sampler. */
  async stepSample(rows: SampledStepRow[]): Promise<Int32Array> {
    const logits = await this.step(rows);
    const out = new Int32Array(rows.length).fill(-1);
    rows.forEach((r, i) => {
      if (r.sample) out[i] = this.#samplers.sample(r.seqId, r.sample, logits[i]!);
    });
    return out;
  }

  /** Frees a sequence's KV cache (and its sampler). */
  release(seqId: SeqId): void {
    this.#samplers.release(seqId);
    this.seqs.delete(seqId);
    // Drop the resident batch's buffers once none of its sequences is alive.
    if (this.resident && !this.resident.seqIds.some((id) => this.seqs.has(id))) this.resident = null;
  }

  /**
   * One forward step. New sequences (unknown seqId) are prefilled with their tokens;
   * known ones continue from their cache. Returns each row's next-token logits.
   */
  async step(rows: StepRow[]): Promise<Float32Array[]> {
    const t0 = performance.now();
    this.#adapterCopies = 0;
    this.#unusedReads = 0;
    const slotWriteMs = this.#slotWriteMs;
    this.#slotWriteMs = 0;
    const c = this.model.config;
    const B = rows.length;
    if (B === 0) return [];
    const seen = new Set<SeqId>();
    for (const r of rows) {
      if (seen.has(r.seqId))
        throw new ModelRuntimeError("SEQUENCE_INVALID", `sequence ${r.seqId} appears twice in a step`);
      seen.add(r.seqId);
      if (r.tokens.length === 0)
        throw new ModelRuntimeError("SEQUENCE_INVALID", `sequence ${r.seqId}: no tokens`);
      for (const t of r.tokens) {
        if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) {
          throw new ModelRuntimeError("SEQUENCE_INVALID", `sequence ${r.seqId}: token ${t} outside vocab`);
        }
      }
      if (r.slot !== 0) {
        if (!this.loraEnabled || !this.slots.isLoaded(r.slot)) {
          throw new ModelRuntimeError(
            "SLOT_OUT_OF_RANGE",
            `sequence ${r.seqId}: slot ${r.slot} holds no adapter`,
          );
        }
      }
      const len = (this.seqs.get(r.seqId)?.length ?? 0) + r.tokens.length;
      if (len > c.maxPositionEmbeddings) {
        throw new ModelRuntimeError(
          "SEQUENCE_INVALID",
          `sequence ${r.seqId}: ${len} tokens exceed the context`,
        );
      }
    }

    // KV placement. (1) The same sequences in the same order as the resident batch: feed it
    // back as is (steady decode). (2) The resident sequences in their order plus rows not in it
    // (new or paused sequences, prefill chunks): run the resident rows as they are and the
    // others as a separate detached batch, so joining sequences neither evict the resident
    // batch nor pad every decode row to the prompt length. (3) Anything else: copy the
    // resident batch out and assemble a new one from the decoding rows, prompt rows detached.
    const one = rows[0]!;
    if (
      B === 1 &&
      this.useNativeDecode &&
      this.nativeDecoder &&
      one.tokens.length === 1 &&
      this.seqs.has(one.seqId) &&
      this.externalWeights.size === 0
    ) {
      const { logits, runMs, kvRebuilt } = this.nativeStep(this.nativeDecoder, one);
      const total = performance.now() - t0;
      this.lastTimings = {
        prepareMs: total - runMs,
        runMs,
        runs: 1,
        kvRebuilt,
        adapterCopies: 0,
        unusedAdapterReads: 0,
        slotWriteMs,
        native: true,
      };
      return [logits];
    }
    const res = this.resident;
    const inRes = res ? new Set(res.seqIds) : new Set<SeqId>();
    const residentRows = rows.filter((r) => inRes.has(r.seqId));
    const otherRows = rows.filter((r) => !inRes.has(r.seqId));
    // Intact: this step has all of the resident sequences in their order, or none of them.
    const residentIntact =
      res !== null &&
      (residentRows.length === 0 ||
        (res.seqIds.every((id) => this.seqs.has(id)) &&
          residentRows.length === res.seqIds.length &&
          residentRows.every((r, i) => r.seqId === res.seqIds[i])));
    // Only prefill work is detached; a known sequence decoding outside the resident batch
    // (e.g. right after its detached prefill) joins it via a rebuild, so it runs once per step.
    const detachable = otherRows.every((r) => !this.seqs.has(r.seqId) || r.tokens.length > 1);
    const byId = new Map<SeqId, Float32Array>();
    let runMs = 0;
    let runs = 1;
    let kvRebuilt = false;
    if (residentIntact && otherRows.length === 0) {
      const r = await this.runBatch(rows, res!);
      this.resident = r.batch;
      runMs += r.runMs;
      for (const [b, row] of rows.entries()) byId.set(row.seqId, r.logits[b]!);
    } else if (residentIntact && detachable) {
      runs = residentRows.length > 0 ? 2 : 1;
      if (residentRows.length > 0) {
        const r = await this.runBatch(residentRows, res!);
        this.resident = r.batch;
        runMs += r.runMs;
        for (const [b, row] of residentRows.entries()) byId.set(row.seqId, r.logits[b]!);
      }
      const d = await this.runBatch(otherRows, this.assemble(otherRows.map((r) => r.seqId)));
      runMs += d.runMs;
      this.materialize(d.batch);
      for (const [b, row] of otherRows.entries()) byId.set(row.seqId, d.logits[b]!);
    } else {
      kvRebuilt = res !== null;
      this.evictResident();
      // The rows that decode (a known sequence, one token) become the new resident batch; prompt
      // work (new sequences, prefill chunks) runs detached next to it, as in the case above, so a
      // step that both rebuilds and admits does not pad every decode row to the prompt's length.
      const decoding = rows.filter((r) => this.seqs.has(r.seqId) && r.tokens.length === 1);
      const prompts = rows.filter((r) => !(this.seqs.has(r.seqId) && r.tokens.length === 1));
      const main = decoding.length > 0 && prompts.length > 0 ? decoding : rows;
      const r = await this.runBatch(main, this.assemble(main.map((row) => row.seqId)));
      this.resident = r.batch;
      runMs += r.runMs;
      for (const [b, row] of main.entries()) byId.set(row.seqId, r.logits[b]!);
      if (main !== rows) {
        runs = 2;
        const d = await this.runBatch(prompts, this.assemble(prompts.map((row) => row.seqId)));
        runMs += d.runMs;
        this.materialize(d.batch);
        for (const [b, row] of prompts.entries()) byId.set(row.seqId, d.logits[b]!);
      }
    }
    const total = performance.now() - t0;
    this.lastTimings = {
      prepareMs: total - runMs,
      runMs,
      runs,
      kvRebuilt,
      adapterCopies: this.#adapterCopies,
      unusedAdapterReads: this.#unusedReads,
      slotWriteMs,
      native: false,
    };
    return rows.map((row) => byId.get(row.seqId)!);
  }

  /**
   * One decode token of one known sequence in the native addon (with its slot's adapter, if any): the
   * sequence becomes (or stays) the resident batch of one, whose per-layer [1, P, W] keys/values grow
   * in place (`growInPlace`); the addon writes column P and attends over columns 0..P, exactly the
   * cache a session run would leave.
   */
  private nativeStep(
    native: NativeDecoder,
    row: StepRow,
  ): { logits: Float32Array; runMs: number; kvRebuilt: boolean } {
    const c = this.model.config;
    const W = c.numKvHeads * c.headDim;
    const s = this.seqs.get(row.seqId)!;
    const P = s.length;
    let res = this.resident;
    let kvRebuilt = false;
    if (!(res && res.seqIds.length === 1 && res.seqIds[0] === row.seqId && res.past === P)) {
      kvRebuilt = res !== null;
      this.evictResident();
      res = this.assemble([row.seqId]);
    }
    const keys = res.keys.map((k) => growInPlace(k, P, 1, W));
    const values = res.values.map((v) => growInPlace(v, P, 1, W));
    // The slot's A and scale·B as they are (slot layout, zero-padded to its bucket's rank).
    const e = row.slot === 0 ? null : this.slots.get(row.slot)!;
    const adapter = e ? { rank: e.bucket, modules: this.#nativeModules, a: e.a, b: e.b } : undefined;
    const t1 = performance.now();
    const logits = native.step(row.tokens[0]!, P, keys, values, c.vocabSize, adapter);
    const runMs = performance.now() - t1;
    this.resident = { seqIds: [row.seqId], past: P + 1, keys, values, cols: [[...res.cols[0]!, P]] };
    s.length = P + 1;
    s.k = null;
    s.v = null;
    return { logits, runMs, kvRebuilt };
  }

  /**
   * One session run over `batch` (whose rows are `rows`, in order). Returns each row's
   * logits and the batch after the step (presents + each row's columns); advances lengths.
   */
  private async runBatch(
    rows: StepRow[],
    batch: ResidentBatch,
  ): Promise<{ logits: Float32Array[]; batch: ResidentBatch; runMs: number }> {
    const c = this.model.config;
    const B = rows.length;
    const T = Math.max(...rows.map((r) => r.tokens.length));
    const P = batch.past;
    const total = P + T;
    const W = c.numKvHeads * c.headDim;
    const inputIds = new BigInt64Array(B * T);
    const positions = new BigInt64Array(B * T);
    const bias = new Float32Array(B * T * total).fill(MASKED);
    const newCols: number[][] = [];
    for (let b = 0; b < B; b++) {
      const row = rows[b]!;
      const n = row.tokens.length;
      const start = this.seqs.get(row.seqId)?.length ?? 0;
      const pastCols = batch.cols[b]!;
      const added: number[] = [];
      for (let t = 0; t < T; t++) {
        const biasRow = (b * T + t) * total;
        const i = t - (T - n);
        if (i < 0) {
          bias[biasRow + P + t] = 0; // padding query attends to itself only (keeps it finite)
          continue;
        }
        inputIds[b * T + t] = BigInt(row.tokens[i]!);
        positions[b * T + t] = BigInt(start + i);
        for (const col of pastCols) bias[biasRow + col] = 0;
        for (let u = T - n; u <= t; u++) bias[biasRow + P + u] = 0;
        added.push(P + t);
      }
      newCols.push(added);
    }

    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", inputIds, [B, T]),
      position_ids: new ort.Tensor("int64", positions, [B, T]),
      attn_bias: new ort.Tensor("float32", bias, [B, T, total]),
    };
    for (let l = 0; l < c.numLayers; l++) {
      feeds[`past_key.${l}`] = new ort.Tensor("float32", batch.keys[l]!, [B, P, W]);
      feeds[`past_value.${l}`] = new ort.Tensor("float32", batch.values[l]!, [B, P, W]);
    }
    if (this.loraEnabled) this.addLoraFeeds(feeds, rows, T);
    for (const [name, t] of this.externalWeights) feeds[name] = t;
    const t1 = performance.now();
    const out = await this.session.run(feeds);
    const runMs = performance.now() - t1;

    // The graph returns only this step's keys and values: append them to the cache.
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    const fresh = out[NEW_KV]!.data as Float32Array;
    const stride = 2 * c.numLayers * W;
    for (let l = 0; l < c.numLayers; l++) {
      keys.push(appendColumns(batch.keys[l]!, fresh, B, P, T, W, stride, 2 * l * W));
      values.push(appendColumns(batch.values[l]!, fresh, B, P, T, W, stride, (2 * l + 1) * W));
    }
    for (const row of rows) {
      const s = this.seqs.get(row.seqId);
      if (s) {
        s.length += row.tokens.length;
        s.k = null;
        s.v = null;
      } else this.seqs.set(row.seqId, { length: row.tokens.length, k: null, v: null });
    }
    const logits = out["logits"]!.data as Float32Array;
    const V = c.vocabSize;
    return {
      logits: rows.map((_, b) => logits.subarray(b * V, (b + 1) * V)),
      batch: {
        seqIds: rows.map((r) => r.seqId),
        past: total,
        keys,
        values,
        cols: batch.cols.map((cols, b) => cols.concat(newCols[b]!)),
      },
      runMs,
    };
  }

  /** Copies every live sequence of the resident batch out to its own KV storage. */
  private evictResident(): void {
    if (!this.resident) return;
    this.materialize(this.resident);
    this.resident = null;
  }

  /** Copies every live sequence of `res` out of the batch into its own KV storage. */
  private materialize(res: ResidentBatch): void {
    const c = this.model.config;
    const W = c.numKvHeads * c.headDim;
    const P = res.past;
    res.seqIds.forEach((id, b) => {
      const s = this.seqs.get(id);
      if (!s) return;
      const cols = res.cols[b]!;
      const n = cols.length;
      /** Row b's columns of one layer's [B, P, W] keys or values, as [n, W]. */
      const gather = (batched: Float32Array): Float32Array => {
        const out = new Float32Array(n * W);
        for (let j = 0; j < n; j++) {
          const src = (b * P + cols[j]!) * W;
          out.set(batched.subarray(src, src + W), j * W);
        }
        return out;
      };
      s.k = res.keys.map(gather);
      s.v = res.values.map(gather);
    });
  }

  /** Builds a padded batch from the sequences' own KV (row b's tokens at columns 0..len). */
  private assemble(ids: SeqId[]): ResidentBatch {
    const c = this.model.config;
    const W = c.numKvHeads * c.headDim;
    const B = ids.length;
    const lens = ids.map((id) => this.seqs.get(id)?.length ?? 0);
    const P = Math.max(0, ...lens);
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    for (let l = 0; l < c.numLayers; l++) {
      const kb = new Float32Array(B * P * W);
      const vb = new Float32Array(B * P * W);
      ids.forEach((id, b) => {
        const s = this.seqs.get(id);
        if (!s || lens[b] === 0) return;
        // Row b's tokens at columns 0..n-1.
        kb.set(s.k![l]!, b * P * W);
        vb.set(s.v![l]!, b * P * W);
      });
      keys.push(kb);
      values.push(vb);
    }
    return {
      seqIds: ids,
      past: P,
      keys,
      values,
      cols: lens.map((n) => Array.from({ length: n }, (_, j) => j)),
    };
  }

  /**
   * Per rank bucket: the distinct slots of this step, each with the token indices of its rows
   * (its segment), and the range of the bucket's slot stack that holds them (`slotRange`).
   */
  private addLoraFeeds(feeds: Record<string, ort.Tensor>, rows: StepRow[], T: number): void {
    const N = rows.length * T;
    // No row with an adapter: the graph skips every LoRA delta (its inputs are still fed).
    const on = rows.some((r) => r.slot !== 0);
    if (this.loraSkip) feeds[LORA_ON] = new ort.Tensor("bool", Uint8Array.of(on ? 1 : 0), []);
    if (this.loraMode === "row") {
      for (const bucket of this.rankBuckets) {
        const all = Array.from({ length: this.slots.count - 1 }, (_, i) => i + 1).filter(
          (s) => this.slots.get(s)?.bucket === bucket,
        );
        // The full stack with slot s at index s (index 0 and other buckets' slots stay zero).
        const stack = this.activeStack(bucket, all, this.slots.count);
        const idx = new BigInt64Array(N);
        rows.forEach((row, b) => {
          if (row.slot !== 0 && this.slots.get(row.slot)!.bucket === bucket) {
            for (let t = 0; t < T; t++) idx[b * T + t] = BigInt(row.slot);
          }
        });
        feeds[loraInputName.idx(bucket)] = new ort.Tensor("int64", idx, [N]);
        for (const [name, t] of stack.tensors) feeds[name] = t;
      }
      return;
    }
    for (const bucket of this.rankBuckets) {
      const segments = new Map<number, number[]>();
      rows.forEach((row, b) => {
        if (row.slot === 0 || this.slots.get(row.slot)!.bucket !== bucket) return;
        const seg = segments.get(row.slot) ?? [];
        for (let t = T - row.tokens.length; t < T; t++) seg.push(b * T + t);
        segments.set(row.slot, seg);
      });
      const { tensors, count, index } = this.slotRange(bucket, segments.keys());
      if (on || !this.loraSkip) this.#unusedReads += Math.max(1, count) - segments.size;
      const U = Math.max(1, count);
      const L = Math.max(1, ...[...segments.values()].map((s) => s.length));
      // Padding entries, and the entries of a range this run does not use, point at token 0;
      // their result is never gathered.
      const rowIdx = new BigInt64Array(U * L);
      const scatter = new BigInt64Array(N).fill(BigInt(U * L)); // U*L = the appended zero row
      for (const [slot, seg] of segments) {
        const u = index.get(slot)!;
        seg.forEach((tok, i) => {
          rowIdx[u * L + i] = BigInt(tok);
          scatter[tok] = BigInt(u * L + i);
        });
      }
      feeds[loraInputName.rows(bucket)] = new ort.Tensor("int64", rowIdx, [U, L]);
      feeds[loraInputName.scatter(bucket)] = new ort.Tensor("int64", scatter, [N]);
      for (const [name, t] of tensors) feeds[name] = t;
    }
  }

  /**
   * The graph inputs of one bucket over the range of its slot stack from the lowest to the highest
   * position this run uses (`SlotStack`: views, no copy), with each needed slot's index in the range.
   * A run with no adapter of the bucket reads entry 0 (never gathered).
   */
  private slotRange(
    bucket: number,
    needed: Iterable<number>,
  ): { tensors: Map<string, ort.Tensor>; count: number; index: Map<number, number> } {
    const st = this.slots.stack(bucket);
    let lo = Number.POSITIVE_INFINITY;
    let hi = 0;
    const positions = new Map<number, number>();
    for (const slot of needed) {
      const p = this.slots.get(slot)!.position;
      positions.set(slot, p);
      lo = Math.min(lo, p);
      hi = Math.max(hi, p + 1);
    }
    if (positions.size === 0) [lo, hi] = [0, 1];
    const index = new Map<number, number>();
    for (const [slot, p] of positions) index.set(slot, p - lo);
    const key = `${lo}:${hi}:${st.generation}`;
    let cached = this.rangeCache.get(bucket);
    if (!cached || cached.key !== key) {
      const tensors = new Map<string, ort.Tensor>();
      st.inputs.forEach((input, i) => {
        const n = st.sizes[i]!;
        tensors.set(
          input.name,
          new ort.Tensor("float32", st.parts[i]!.subarray(lo * n, hi * n), [hi - lo, ...input.dims]),
        );
      });
      cached = { key, tensors };
      this.rangeCache.set(bucket, cached);
    }
    return { tensors: cached.tensors, count: positions.size === 0 ? 0 : hi - lo, index };
  }

  /** `fullSize` set: the whole slot table with slot s at index s (row mode). */
  private activeStack(bucket: number, slotList: number[], fullSize?: number): ActiveStack {
    const key = slotList.map((s) => `${s}:${this.slots.get(s)!.version}`).join(",");
    const cached = this.stackCache.get(bucket);
    if (cached && cached.key === key) return cached;
    const c = this.model.config;
    this.#adapterCopies += slotList.length;
    const U = fullSize ?? Math.max(1, slotList.length); // an unused bucket gets one zero adapter
    const at = (u: number, slot: number) => (fullSize === undefined ? u : slot);
    const tensors = new Map<string, ort.Tensor>();
    const mods = this.targetModules;
    for (let l = 0; l < c.numLayers; l++) {
      mods.forEach((m, mi) => {
        const { inDim, outDim } = moduleDims(c, m);
        const a = new Float32Array(U * inDim * bucket);
        const b = new Float32Array(U * bucket * outDim);
        slotList.forEach((slot, u) => {
          const e = this.slots.get(slot)!;
          a.set(e.a[l * mods.length + mi]!, at(u, slot) * inDim * bucket);
          b.set(e.b[l * mods.length + mi]!, at(u, slot) * bucket * outDim);
        });
        tensors.set(loraInputName.a(bucket, l, m), new ort.Tensor("float32", a, [U, inDim, bucket]));
        tensors.set(loraInputName.b(bucket, l, m), new ort.Tensor("float32", b, [U, bucket, outDim]));
      });
    }
    const stack = { key, tensors, index: new Map(slotList.map((s, u) => [s, u])) };
    this.stackCache.set(bucket, stack);
    return stack;
  }

  /** Sets the external (merged) weight inputs, for the merged-weights baseline. */
  setExternalWeight(layer: number, module: LoraModule, data: Float32Array): void {
    const { inDim, outDim } = moduleDims(this.model.config, module);
    this.externalWeights.set(
      externalWeightName(layer, module),
      new ort.Tensor("float32", data, [outDim, inDim]),
    );
  }
}
