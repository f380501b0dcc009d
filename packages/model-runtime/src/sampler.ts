import { Rng } from "./rng.ts";

export interface SamplingParams {
  /** 0 (default) = greedy argmax. */
  temperature?: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability sums to >= topP (default 1). */
  topP?: number;
  /** Seed of the sampler's PRNG: the same seed and logits give the same tokens. */
  seed?: number | string;
}

/** Index of the largest logit; ties go to the lowest index (deterministic). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  let bestV = logits[0]!;
  for (let i = 1; i < logits.length; i++) {
    if (logits[i]! > bestV) {
      bestV = logits[i]!;
      best = i;
    }
  }
  return best;
}

export class Sampler {
  readonly temperature: number;
  readonly topP: number;
  private readonly rng: Rng;

  constructor(params: SamplingParams = {}) {
    this.temperature = params.temperature ?? 0;
    this.topP = params.topP ?? 1;
    if (!(this.temperature >= 0)) throw new RangeError("temperature must be >= 0");
    if (!(this.topP > 0 && this.topP <= 1)) throw new RangeError("topP must be in (0, 1]");
    this.rng = new Rng(params.seed ?? 0);
  }

  sample(logits: ArrayLike<number>): number {
    if (this.temperature === 0) return argmax(logits);
    const n = logits.length;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) max = Math.max(max, logits[i]!);
    const probs = new Float64Array(n);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      probs[i] = Math.exp((logits[i]! - max) / this.temperature);
      sum += probs[i]!;
    }
    // Sort by probability (index breaks ties) so the nucleus is the same on every machine.
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => probs[b]! - probs[a]! || a - b);
    let keep = n;
    if (this.topP < 1) {
      let acc = 0;
      for (let k = 0; k < n; k++) {
        acc += probs[order[k]!]! / sum;
        if (acc >= this.topP) {
          keep = k + 1;
          break;
        }
      }
    }
    let kept = 0;
    for (let k = 0; k < keep; k++) kept += probs[order[k]!]!;
    let u = this.rng.next() * kept;
    for (let k = 0; k < keep; k++) {
      u -= probs[order[k]!]!;
      if (u < 0) return order[k]!;
    }
    return order[keep - 1]!;
  }
}

/**
 * Per-sequence samplers of a runtime that samples on its own side (`StepRuntime.stepSample`): a
 * sequence's sampler is made from the parameters its first sampled row carries and keeps its PRNG
 * state until the sequence is released, so a seeded request draws the same tokens as one sampled
 * by its own `Sampler` on the caller's thread.
 */
export class RowSamplers {
  readonly #samplers = new Map<string | number, Sampler>();

  sample(seqId: string | number, params: SamplingParams, logits: ArrayLike<number>): number {
    let s = this.#samplers.get(seqId);
    if (!s) {
      s = new Sampler(params);
      this.#samplers.set(seqId, s);
    }
    return s.sample(logits);
  }

  release(seqId: string | number): void {
    this.#samplers.delete(seqId);
  }

  get size(): number {
    return this.#samplers.size;
  }
}

export interface StopOptions {
  maxTokens: number;
  stop?: string[];
  eosTokenIds?: number[];
}

export type StopReason = "eos" | "stop" | "length";

export type StopCheck = { done: false } | { done: true; reason: StopReason; text: string };

/**
 * Stop conditions for one sequence. `check` is called after each generated token with
 * the full decoded completion so far; a stop string ends generation and is cut from the
 * text (as the OpenAI API does). `streamableLength` tells a streamer how much text is
 * safe to emit: a tail that could still become a stop string is held back.
 */
export class StopCondition {
  private readonly stop: string[];
  private readonly eos: Set<number>;

  constructor(readonly options: StopOptions) {
    this.stop = (options.stop ?? []).filter((s) => s.length > 0);
    this.eos = new Set(options.eosTokenIds ?? []);
  }

  check(tokenId: number, generatedTokens: number, text: string): StopCheck {
    if (this.eos.has(tokenId)) return { done: true, reason: "eos", text };
    let cut = -1;
    for (const s of this.stop) {
      const at = text.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) return { done: true, reason: "stop", text: text.slice(0, cut) };
    if (generatedTokens >= this.options.maxTokens) return { done: true, reason: "length", text };
    return { done: false };
  }

  streamableLength(text: string): number {
    let hold = 0;
    for (const s of this.stop) {
      for (let k = Math.min(s.length - 1, text.length); k > 0; k--) {
        if (text.endsWith(s.slice(0, k))) {
          hold = Math.max(hold, k);
          break;
        }
      }
    }
    return text.length - hold;
  }
}
