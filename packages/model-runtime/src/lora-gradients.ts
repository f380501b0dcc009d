/**
 * Gradients of a trained LoRA adapter's parameters (its A/B factors, base frozen), for
 * gradient-based influence (issue #19): each training row's own gradient, and an answer's
 * gradient over a chosen set of its tokens. Both come from the factory's training graph
 * (`buildTrainGraph`, the same backward pass the adapter was trained with), at the adapter's
 * trained values.
 *
 * Layout: one block per adapted module — layer by layer, target module by module in the
 * adapter's order, lora_A then lora_B flattened row-major inside a block — the order of
 * `trainParams`. That is what `@openledger/attribution-core`'s `LoraGradients` expects.
 *
 * Determinism: onnxruntime on one intra-op thread (the default here) runs a fixed sequence of
 * float32 kernels, so the same inputs give the same bits on one CPU type and onnxruntime
 * version; see ARCHITECTURE.md for what that means across machines.
 */
import type { LoraAdapter } from "./adapter.ts";
import type { LoraModule } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import type { BaseModel } from "./model.ts";
import { Trainer } from "./train.ts";
import { emptyBatch, type TrainBatch } from "./train-data.ts";
import { type LoraTrainSpec, loraParamName, trainParams } from "./train-graph.ts";

/** The adapter's rank, alpha and targets as a training spec (one rank and scale for all modules). */
export function loraSpecOf(adapter: LoraAdapter): LoraTrainSpec {
  let rank: number | undefined;
  let scale: number | undefined;
  for (const [key, w] of adapter.modules) {
    rank ??= w.rank;
    scale ??= w.scale;
    if (w.rank !== rank || w.scale !== scale) {
      throw new ModelRuntimeError(
        "ADAPTER_CONFIG_INVALID",
        `adapter module ${key} has rank ${w.rank} / scale ${w.scale}, others ${rank} / ${scale}: gradients need one rank and scale`,
      );
    }
  }
  if (rank === undefined || scale === undefined) {
    throw new ModelRuntimeError("ADAPTER_CONFIG_INVALID", "adapter has no modules");
  }
  return { rank, alpha: scale * rank, targetModules: [...adapter.targetModules] as LoraModule[] };
}

/** Block sizes (one per adapted module, r·(in + out) each) in gradient layout order. */
export function loraGradientBlocks(model: BaseModel, spec: LoraTrainSpec): number[] {
  const params = trainParams(model.config, "lora", spec);
  const blocks: number[] = [];
  for (let i = 0; i < params.length; i += 2) {
    const size = (p: { shape: number[] }) => p.shape.reduce((a, b) => a * b, 1);
    blocks.push(size(params[i]!) + size(params[i + 1]!));
  }
  return blocks;
}

async function trainerAt(
  model: BaseModel,
  adapter: LoraAdapter,
  batch: number,
  seq: number,
  perExampleGrads: boolean,
  threads: number,
): Promise<Trainer> {
  const spec = loraSpecOf(adapter);
  const t = await Trainer.create(model, {
    mode: "lora",
    lora: spec,
    batch,
    seq,
    optimizer: { lr: 0 },
    seed: 0,
    intraOpThreads: threads,
    perExampleGrads,
  });
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const m of spec.targetModules) {
      const w = adapter.modules.get(`${l}.${m}`);
      if (!w) throw new ModelRuntimeError("ADAPTER_CONFIG_INVALID", `adapter has no module ${l}.${m}`);
      t.values.get(loraParamName(l, m, "A"))!.set(w.a);
      t.values.get(loraParamName(l, m, "B"))!.set(w.b);
    }
  }
  return t;
}

export interface ExampleGradientOptions {
  /** Tokens per window (a longer row is split into windows whose gradients are summed). */
  seq: number;
  /** Windows per graph run. Default 8. */
  batch?: number;
  /** onnxruntime intra-op threads. Default 1 (the reproducible setting). */
  threads?: number;
  /** Called after each graph run with (rows done, rows). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Each document's gradient of its own mean next-token loss (all its tokens, as the factory trains
 * them: `documentTokens` = with the tokenizer's special tokens) at the adapter: rows × dim float32.
 */
export async function exampleLoraGradients(
  model: BaseModel,
  adapter: LoraAdapter,
  documents: readonly ArrayLike<number>[],
  options: ExampleGradientOptions,
): Promise<{ blocks: number[]; values: Float32Array }> {
  const { seq } = options;
  const batch = options.batch ?? 8;
  const spec = loraSpecOf(adapter);
  const blocks = loraGradientBlocks(model, spec);
  const dim = blocks.reduce((a, b) => a + b, 0);
  const values = new Float32Array(documents.length * dim);
  // Windows: [k·seq, k·seq + seq] of a document (inputs seq tokens, labels the next ones).
  const windows: { doc: number; start: number; labels: number }[] = [];
  const labelCount = documents.map((d) => Math.max(0, d.length - 1));
  documents.forEach((d, doc) => {
    for (let start = 0; start + 1 < d.length; start += seq) {
      windows.push({ doc, start, labels: Math.min(seq, d.length - 1 - start) });
    }
  });
  const params = trainParams(model.config, "lora", spec);
  const t = await trainerAt(model, adapter, batch, seq, true, options.threads ?? 1);
  try {
    for (let s = 0; s < windows.length; s += batch) {
      const chunk = windows.slice(s, s + batch);
      const b = emptyBatch(batch, seq);
      chunk.forEach((w, r) => {
        const d = documents[w.doc]!;
        for (let i = 0; i <= w.labels; i++) {
          if (i < seq) b.inputIds[r * seq + i] = BigInt(d[w.start + i]!);
        }
        for (let i = 0; i < w.labels; i++) {
          b.labels[r * seq + i] = BigInt(d[w.start + i + 1]!);
          b.labelWeights[r * seq + i] = 1 / labelCount[w.doc]!;
        }
      });
      const { exampleGrads } = await t.gradients(b);
      chunk.forEach((w, r) => {
        let at = w.doc * dim;
        for (const p of params) {
          const size = p.shape.reduce((a, c) => a * c, 1);
          const g = exampleGrads.get(p.name)!;
          for (let u = 0; u < size; u++) values[at + u]! += g[r * size + u]!;
          at += size;
        }
      });
      options.onProgress?.(Math.min(windows.length, s + batch), windows.length);
    }
  } finally {
    await t.dispose();
  }
  return { blocks, values };
}

/**
 * The graph shape an answer of `tokens` context tokens runs at, and the context tokens it drops:
 * seq = tokens - 1 rounded up to a multiple of 32 (fewer shapes to build and cache), at most the
 * model's context; a longer context loses its first tokens.
 */
export function answerGradientShape(
  config: { maxPositionEmbeddings: number },
  contextTokens: number,
): { seq: number; from: number } {
  const max = config.maxPositionEmbeddings;
  const from = Math.max(0, contextTokens - 1 - max);
  const n = contextTokens - 1 - from;
  return { seq: Math.min(max, Math.max(32, Math.ceil(n / 32) * 32)), from };
}

/**
 * A batch-1 gradient graph of one adapter at one shape, kept for many answers (building the graph and
 * its session costs more than running it: 0.4 s vs tens of ms on a 4-layer base). `dispose` waits for
 * the runs in flight, so a cache may evict a graph another caller is still using.
 */
export class AnswerGradientGraph {
  #busy = 0;
  #idle: (() => void) | undefined;
  #closed = false;

  private constructor(
    readonly seq: number,
    private readonly model: BaseModel,
    private readonly spec: LoraTrainSpec,
    private readonly trainer: Trainer,
  ) {}

  static async create(
    model: BaseModel,
    adapter: LoraAdapter,
    seq: number,
    options: { threads?: number } = {},
  ): Promise<AnswerGradientGraph> {
    const t = await trainerAt(model, adapter, 1, seq, false, options.threads ?? 1);
    return new AnswerGradientGraph(seq, model, loraSpecOf(adapter), t);
  }

  /**
   * The gradient of Σ weights[t]·nll_t, where `tokens` is the whole context (prompt, then answer) and
   * `weights[t]` weighs the prediction of tokens[t + 1]; dim float32 in gradient layout.
   */
  async gradient(tokens: readonly number[], weights: ArrayLike<number>): Promise<Float32Array> {
    if (weights.length !== tokens.length - 1) throw new RangeError("weights: one per predicted token");
    const { seq, from } = answerGradientShape(this.model.config, tokens.length);
    if (seq !== this.seq) throw new RangeError(`this graph runs ${this.seq} tokens, the answer needs ${seq}`);
    if (this.#closed) throw new Error("answer gradient graph disposed");
    const n = tokens.length - 1 - from;
    const b: TrainBatch = emptyBatch(1, seq);
    for (let i = 0; i < n; i++) {
      b.inputIds[i] = BigInt(tokens[from + i]!);
      b.labels[i] = BigInt(tokens[from + i + 1]!);
      b.labelWeights[i] = weights[from + i]!;
    }
    this.#busy++;
    try {
      const { grads } = await this.trainer.gradients(b);
      const params = trainParams(this.model.config, "lora", this.spec);
      const dim = loraGradientBlocks(this.model, this.spec).reduce((a, c) => a + c, 0);
      const out = new Float32Array(dim);
      let at = 0;
      for (const p of params) {
        const g = grads.get(p.name)!;
        out.set(g, at);
        at += g.length;
      }
      return out;
    } finally {
      this.#busy--;
      if (this.#busy === 0) this.#idle?.();
    }
  }

  async dispose(): Promise<void> {
    this.#closed = true;
    if (this.#busy > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
    await this.trainer.dispose();
  }
}

/** One answer's gradient with a graph built for it (see `AnswerGradientGraph` to keep the graph). */
export async function answerLoraGradient(
  model: BaseModel,
  adapter: LoraAdapter,
  tokens: readonly number[],
  weights: ArrayLike<number>,
  options: { threads?: number } = {},
): Promise<Float32Array> {
  if (weights.length !== tokens.length - 1) throw new RangeError("weights: one per predicted token");
  const { seq } = answerGradientShape(model.config, tokens.length);
  const g = await AnswerGradientGraph.create(model, adapter, seq, options);
  try {
    return await g.gradient(tokens, weights);
  } finally {
    await g.dispose();
  }
}
