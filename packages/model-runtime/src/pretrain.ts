import { type BpeTrainOptions, trainByteLevelBpe } from "./bpe-train.ts";
import type { LlamaConfig } from "./config.ts";
import { type BaseModel, expectedWeightShapes } from "./model.ts";
import { Rng } from "./rng.ts";
import type { Tensor } from "./safetensors.ts";
import { HfTokenizer } from "./tokenizer.ts";
import { Trainer, type TrainerOptions } from "./train.ts";
import { PackedDataset } from "./train-data.ts";

/**
 * Pretraining a small Llama-architecture model from scratch on a text corpus, with the runtime's own
 * full-weight training graphs: a byte-level BPE tokenizer trained on the same text, a seeded
 * initialisation, packed causal-LM windows in a seeded order, AdamW with warm-up and cosine decay.
 * Every part is a pure function of (texts, options), and the trainer's arithmetic has a fixed order
 * (one intra-op thread; the embedding gradient is a Gemm, not a racy scatter), so the same inputs give
 * the same bytes on machines of the same kind — what lets the repository keep the result and a test
 * check that the script reproduces it.
 */
export interface PretrainOptions {
  /** The model's shape; `vocabSize` is also the tokenizer's. BOS/EOS are set from the tokenizer. */
  config: Omit<LlamaConfig, "bosTokenId" | "eosTokenIds">;
  /** The special token that starts (BOS) and ends (EOS, the document separator) every document. */
  specialToken: string;
  seed: number;
  steps: number;
  batch: number;
  seq: number;
  lr: number;
  warmupSteps: number;
  weightDecay: number;
  /** intra-op threads of the training session (1 = a fixed reduction order everywhere). */
  threads: number;
}

export interface PretrainResult {
  model: BaseModel;
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  /** Mean per-token loss (nats) of the held-out documents before and after training. */
  heldOutLossBefore: number;
  heldOutLossAfter: number;
  trainTokens: number;
  heldOutTokens: number;
  /** Mean training loss of the first and the last 5 % of the steps. */
  trainLossStart: number;
  trainLossEnd: number;
}

export interface PretrainProgress {
  phase: "tokenizer" | "step" | "eval";
  step: number;
  steps: number;
  loss?: number;
}

/** Standard small-LM initialisation (GPT-2's): N(0, 0.02)-like uniform, residual outputs / √(2L), norms 1. */
export function initialWeights(config: LlamaConfig, seed: number): Map<string, Tensor> {
  const rng = new Rng(`${seed}:pretrain-init`);
  const std = 0.02;
  const weights = new Map<string, Tensor>();
  for (const [name, shape] of expectedWeightShapes(config)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (name.endsWith("norm.weight")) data.fill(1);
    else {
      const residual = name.endsWith("o_proj.weight") || name.endsWith("down_proj.weight");
      const s = residual ? std / Math.sqrt(2 * config.numLayers) : std;
      rng.fillUniform(data, s * Math.sqrt(3)); // uniform with standard deviation s
    }
    weights.set(name, { shape, data });
  }
  return weights;
}

/**
 * Trains the tokenizer on `train`, then the model; `heldOut` documents are only evaluated.
 * `onProgress` is called for the tokenizer, every step and each evaluation.
 */
export async function pretrain(
  train: string[],
  heldOut: string[],
  options: PretrainOptions,
  onProgress: (p: PretrainProgress) => void = () => {},
): Promise<PretrainResult> {
  onProgress({ phase: "tokenizer", step: 0, steps: options.steps });
  const bpe: BpeTrainOptions = {
    vocabSize: options.config.vocabSize,
    specialTokens: [options.specialToken],
    bosToken: options.specialToken,
  };
  const { tokenizerJson } = trainByteLevelBpe(train, bpe);
  const tokenizerConfig: Record<string, unknown> = {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: options.specialToken,
    eos_token: options.specialToken,
    unk_token: null,
    pad_token: null,
    model_max_length: options.config.maxPositionEmbeddings,
    add_bos_token: true,
    // Decoding must give back the text exactly (span attribution compares outputs with the rows):
    // no "clean-up" of spaces before punctuation.
    clean_up_tokenization_spaces: false,
  };
  const tokenizer = new HfTokenizer(tokenizerJson, tokenizerConfig);
  const special = tokenizer.bosTokenId!;
  const config: LlamaConfig = { ...options.config, bosTokenId: special, eosTokenIds: [special] };
  // Documents as the factory trains rows and the gateway encodes prompts: BOS + text (+ the separator).
  const encode = (texts: string[]) => texts.map((t) => ({ tokens: tokenizer.encode(t) }));
  const data = new PackedDataset(encode(train), { seq: options.seq, separator: special, seed: options.seed });
  const held = new PackedDataset(encode(heldOut), {
    seq: options.seq,
    separator: special,
    seed: options.seed,
  });
  const model: BaseModel = { config, weights: initialWeights(config, options.seed) };
  const trainerOptions: TrainerOptions = {
    mode: "full",
    batch: options.batch,
    seq: options.seq,
    optimizer: {
      lr: options.lr,
      weightDecay: options.weightDecay,
      warmupSteps: options.warmupSteps,
      schedule: "cosine",
      totalSteps: options.steps,
      clipNorm: 1,
    },
    seed: options.seed,
    intraOpThreads: options.threads,
  };
  const trainer = await Trainer.create(model, trainerOptions);
  try {
    const evaluate = async (): Promise<number> => {
      onProgress({ phase: "eval", step: trainer.step, steps: options.steps });
      let sum = 0;
      let count = 0;
      for (let w = 0; w < held.windows; w += options.batch) {
        const windows = Array.from({ length: Math.min(options.batch, held.windows - w) }, (_, i) => w + i);
        const batch = held.batchOf(windows, options.batch);
        const { loss } = await trainer.evaluate(batch);
        // The graph's loss is the sum of weighted token losses (weights 1/tokens of the batch).
        sum += loss * batch.tokens;
        count += batch.tokens;
      }
      return sum / count;
    };
    const heldOutLossBefore = await evaluate();
    const losses: number[] = [];
    while (trainer.step < options.steps) {
      const r = await trainer.trainStep(data.batchAt(trainer.step, options.batch));
      losses.push(r.loss);
      onProgress({ phase: "step", step: r.step, steps: options.steps, loss: r.loss });
    }
    const heldOutLossAfter = await evaluate();
    const tail = Math.max(1, Math.floor(options.steps / 20));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const weights = new Map<string, Tensor>();
    for (const p of trainer.params) {
      weights.set(p.name, { shape: p.shape, data: Float32Array.from(trainer.values.get(p.name)!) });
    }
    return {
      model: { config, weights, tokenizerJson, tokenizerConfig },
      tokenizerJson,
      tokenizerConfig,
      heldOutLossBefore,
      heldOutLossAfter,
      trainTokens: data.totalTokens,
      heldOutTokens: held.totalTokens,
      trainLossStart: mean(losses.slice(0, tail)),
      trainLossEnd: mean(losses.slice(-tail)),
    };
  } finally {
    await trainer.dispose();
  }
}
