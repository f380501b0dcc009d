import { TINY_CONFIG } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import { type BaseModel, generateBaseModel, loadBaseModelDir } from "./model.ts";
import type { ModelRuntime } from "./runtime.ts";
import { Sampler, type SamplingParams, StopCondition, type StopOptions, type StopReason } from "./sampler.ts";
import { ByteTokenizer, HfTokenizer, type TextTokenizer } from "./tokenizer.ts";

export type ModelSource = { dir: string } | { tiny: true; seed?: number | string };

/**
 * Loads a base model and its tokenizer: a HF-style directory or the built-in tiny model.
 * `lazy`: weights are read from disk only when accessed (a caller that hands the model to a
 * `WorkerRuntime` needs only the config and tokenizer here).
 */
export async function loadModel(
  source: ModelSource,
  options: { lazy?: boolean } = {},
): Promise<{ model: BaseModel; tokenizer: TextTokenizer }> {
  if ("tiny" in source)
    return { model: generateBaseModel(TINY_CONFIG, source.seed ?? 1), tokenizer: new ByteTokenizer() };
  const model = await loadBaseModelDir(source.dir, options);
  return { model, tokenizer: tokenizerFor(model) };
}

export function tokenizerFor(model: BaseModel): TextTokenizer {
  if (model.tokenizerJson === undefined) {
    if (model.config.vocabSize === TINY_CONFIG.vocabSize) return new ByteTokenizer();
    throw new ModelRuntimeError("TOKENIZER_INVALID", "model directory has no tokenizer.json");
  }
  return new HfTokenizer(model.tokenizerJson, model.tokenizerConfig ?? {}, model.config.eosTokenIds);
}

let generateCounter = 0;

export interface GenerateResult {
  tokens: number[];
  text: string;
  finishReason: StopReason;
}

/**
 * Generates one completion alone (a convenience for demos and tests; the gateway drives
 * `runtime.step` itself to batch many sequences).
 */
export async function generate(
  runtime: ModelRuntime,
  tokenizer: TextTokenizer,
  options: {
    prompt: number[];
    slot?: number;
    sampling?: SamplingParams;
    stop: Omit<StopOptions, "eosTokenIds"> & { eosTokenIds?: number[] };
    seqId?: string;
  },
): Promise<GenerateResult> {
  const seqId = options.seqId ?? `generate-${++generateCounter}`;
  const sampler = new Sampler(options.sampling);
  const stop = new StopCondition({ eosTokenIds: tokenizer.eosTokenIds, ...options.stop });
  const slot = options.slot ?? 0;
  const tokens: number[] = [];
  try {
    let [logits] = await runtime.step([{ seqId, tokens: options.prompt, slot }]);
    for (;;) {
      const token = sampler.sample(logits!);
      const isEos = tokenizer.eosTokenIds.includes(token);
      if (!isEos) tokens.push(token);
      const check = stop.check(token, tokens.length + (isEos ? 1 : 0), tokenizer.decode(tokens));
      if (check.done) return { tokens, text: check.text, finishReason: check.reason };
      [logits] = await runtime.step([{ seqId, tokens: [token], slot }]);
    }
  } finally {
    runtime.release(seqId);
  }
}
