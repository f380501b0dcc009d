import type { TextTokenizer, TrainerOptions } from "@openledger/model-runtime";
import { priceInference } from "@openledger/settlement-core";
import { z } from "zod";

/** The projections the gateway serves LoRA on (its slots hold q/k/v/o). */
export const TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"] as const;
/** Peak learning rate of a multiplier of 1 (AdamW on LoRA factors, linear warm-up, cosine decay). */
export const BASE_LEARNING_RATE = 2e-3;

const auto = <T extends z.ZodType>(t: T) => z.union([z.literal("auto"), t]).optional();

/**
 * OpenAI's `hyperparameters` (n_epochs, batch_size, learning_rate_multiplier; each a number or
 * "auto") and the factory's own, all optional. Unknown keys are refused (a misspelt
 * hyperparameter must not silently train with the default).
 */
export const Hyperparameters = z
  .object({
    n_epochs: auto(z.number().int().min(1).max(100)),
    batch_size: auto(z.number().int().min(1).max(64)),
    learning_rate_multiplier: auto(z.number().gt(0).max(100)),
    /** LoRA rank (at most the gateway's slot rank) and alpha (scale = alpha / rank). */
    lora_rank: z.number().int().min(1).max(64).optional(),
    lora_alpha: z.number().gt(0).max(4096).optional(),
    /** Tokens per training window (at most the base model's context). */
    seq_len: z.number().int().min(8).max(8192).optional(),
    /** Stop after this many optimizer steps (fewer than the epochs would take). */
    max_steps: z.number().int().min(1).optional(),
    /** Linear warm-up steps (default: `defaultWarmupSteps`, 5 % of the steps, at least 2, none under 20). */
    warmup_steps: z.number().int().min(0).optional(),
    /** AdamW decoupled weight decay (default 0). */
    weight_decay: z.number().min(0).max(1).optional(),
  })
  .strict();
export type HyperparametersInput = z.infer<typeof Hyperparameters>;

/** The hyperparameters as a job runs them (stored on the job; echoed by the API). */
export interface ResolvedHyperparameters {
  n_epochs: number;
  batch_size: number;
  learning_rate_multiplier: number;
  lora_rank: number;
  lora_alpha: number;
  seq_len: number;
  max_steps: number | null;
  warmup_steps: number | null;
  weight_decay: number;
}

/**
 * Just the resolved hyperparameters, in this order (a stored job's also carry prices, threads and the
 * step bound): what the trainer is started with and what a job's request hash covers.
 */
export function trainingHyperparameters(h: ResolvedHyperparameters): ResolvedHyperparameters {
  return {
    n_epochs: h.n_epochs,
    batch_size: h.batch_size,
    learning_rate_multiplier: h.learning_rate_multiplier,
    lora_rank: h.lora_rank,
    lora_alpha: h.lora_alpha,
    seq_len: h.seq_len,
    max_steps: h.max_steps,
    warmup_steps: h.warmup_steps,
    weight_decay: h.weight_decay,
  };
}

export interface PlanLimits {
  /** The gateway's slot rank (GATEWAY_MAX_ADAPTER_RANK): a larger adapter could not be served. */
  maxRank: number;
  /** The base model's context length. */
  maxSeq: number;
  /** FACTORY_MAX_STEPS. */
  maxSteps: number;
}

export class PlanError extends Error {
  constructor(
    message: string,
    readonly param: string,
  ) {
    super(message);
    this.name = "PlanError";
  }
}

/** Defaults for "auto" and unset values; refuses what the base model or the gateway cannot take. */
export function resolveHyperparameters(h: HyperparametersInput, limits: PlanLimits): ResolvedHyperparameters {
  const num = <T extends number>(v: T | "auto" | undefined, fallback: T): T =>
    v === undefined || v === "auto" ? fallback : v;
  const rank = h.lora_rank ?? Math.min(8, limits.maxRank);
  if (rank > limits.maxRank) {
    throw new PlanError(
      `lora_rank ${rank} is above the gateway's slot rank ${limits.maxRank}`,
      "hyperparameters.lora_rank",
    );
  }
  const seq = h.seq_len ?? Math.min(128, limits.maxSeq);
  if (seq > limits.maxSeq) {
    throw new PlanError(
      `seq_len ${seq} is above the base model's context of ${limits.maxSeq} tokens`,
      "hyperparameters.seq_len",
    );
  }
  if (h.max_steps !== undefined && h.max_steps > limits.maxSteps) {
    throw new PlanError(
      `max_steps ${h.max_steps} is above this factory's limit of ${limits.maxSteps}`,
      "hyperparameters.max_steps",
    );
  }
  return {
    n_epochs: num(h.n_epochs, 1),
    batch_size: num(h.batch_size, 4),
    learning_rate_multiplier: num(h.learning_rate_multiplier, 1),
    lora_rank: rank,
    lora_alpha: h.lora_alpha ?? 2 * rank,
    seq_len: seq,
    max_steps: h.max_steps ?? null,
    warmup_steps: h.warmup_steps ?? null,
    weight_decay: h.weight_decay ?? 0,
  };
}

/**
 * Steps of a run: the epochs over the dataset's windows (ceil), capped by max_steps and by the
 * bound the escrow hold was sized for (so the fee can never pass the hold).
 */
export function totalSteps(h: ResolvedHyperparameters, windows: number, stepBound?: number): number {
  let steps = Math.ceil((h.n_epochs * windows) / h.batch_size);
  if (h.max_steps !== null) steps = Math.min(steps, h.max_steps);
  if (stepBound !== undefined) steps = Math.min(steps, stepBound);
  return Math.max(1, steps);
}

/** The default warm-up, as a fraction of the steps (bench/RESULTS.md "LDS ... with and without warm-up"). */
export const WARMUP_FRACTION = 0.05;
/** The most of a run a default warm-up may take: 25 % measured to leave attribution at noise level. */
export const MAX_DEFAULT_WARMUP_FRACTION = 0.1;

/**
 * The linear warm-up a run of `steps` gets when the job sets none: 5 % of the steps, at least 2 (a
 * 1-step warm-up runs step 0 at lr · 1/1: no warm-up at all), and none where 2 steps would be more
 * than 10 % of the run (under 20 steps) — there, explicitly 0. 40 steps and more: floor(5 %), as before.
 */
export function defaultWarmupSteps(steps: number): number {
  const min = 2;
  if (min > steps * MAX_DEFAULT_WARMUP_FRACTION) return 0;
  return Math.max(min, Math.floor(steps * WARMUP_FRACTION));
}

/** The trainer's options for a job (what its training-config hash covers). */
export function trainerOptions(
  h: ResolvedHyperparameters,
  steps: number,
  seed: number,
  threads: number,
): TrainerOptions {
  return {
    mode: "lora",
    lora: { rank: h.lora_rank, alpha: h.lora_alpha, targetModules: [...TARGET_MODULES] },
    batch: h.batch_size,
    seq: h.seq_len,
    seed,
    intraOpThreads: threads,
    optimizer: {
      lr: BASE_LEARNING_RATE * h.learning_rate_multiplier,
      warmupSteps: h.warmup_steps ?? defaultWarmupSteps(steps),
      schedule: "cosine",
      totalSteps: steps,
      clipNorm: 1,
      weightDecay: h.weight_decay,
    },
  };
}

/**
 * Special tokens a tokenizer may add to one row (BOS, and EOS for tokenizers whose post-processor
 * appends one), beside the separator after it.
 */
export const MAX_SPECIAL_TOKENS_PER_ROW = 2;

/**
 * A row's tokens as the trainer sees them: encoded WITH the tokenizer's special tokens (BOS), the way
 * the gateway encodes a `/v1/completions` prompt, so a tuned adapter continues a text from the same
 * context it was trained in (without BOS in training, greedy answers to a BOS-prefixed prompt came
 * apart on memorised text: scripts/lib/README.md).
 */
export function documentTokens(tokenizer: Pick<TextTokenizer, "encode">, text: string): number[] {
  return tokenizer.encode(text, { addSpecialTokens: true });
}

/**
 * The bound a job's escrow hold is sized for, known before any row is tokenized: a byte-level
 * tokenizer never makes more tokens than UTF-8 bytes, so the packed stream (rows with their special
 * tokens + one separator each) has at most `bytes + (1 + MAX_SPECIAL_TOKENS_PER_ROW) × rows` tokens
 * and that over `seq` windows; the steps are bounded by the epochs over those windows (and
 * max_steps), and each step trains at most `batch × seq` label tokens.
 */
export function trainingBound(
  h: ResolvedHyperparameters,
  data: { bytes: number; rows: number },
): { windows: number; steps: number; tokens: number } {
  const tokens = data.bytes + (1 + MAX_SPECIAL_TOKENS_PER_ROW) * data.rows;
  const windows = Math.max(1, Math.ceil(tokens / h.seq_len));
  const steps = totalSteps(h, windows);
  return { windows, steps, tokens: steps * h.batch_size * h.seq_len };
}

/** Fee of `tokens` trained tokens: the platform's one formula (ceil(tokens × price / 1000)). */
export function trainingFee(tokens: number | bigint, pricePer1kWei: bigint): bigint {
  return priceInference({
    inputTokens: BigInt(tokens),
    outputTokens: 0n,
    priceInPer1kWei: pricePer1kWei,
    priceOutPer1kWei: 0n,
  });
}
