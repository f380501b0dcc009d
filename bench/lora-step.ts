/**
 * Where a multi-row step goes with many distinct adapters: ModelRuntime.step on the SmolLM-135M
 * shape (random weights), ROWS new prompts of PROMPT tokens, then DECODE decode steps of those rows,
 * with the rows over one rank-16 adapter ("one") vs over ROWS distinct ones ("many": the set
 * alternates between two disjoint sets each round, so every prompt run meets adapters it has not
 * stacked, as the gateway's Zipf traffic does), and over ROWS distinct ones on every other slot
 * ("spread": the slots a run reads as one range of the slot stack hold as many adapters it does not
 * use, between its own, as in a slot table whose LRU keeps idle adapters among the running ones),
 * and over fewer adapters with Zipf-like shares ("skewed": 14 rows as 5, 3, 2, 1, 1, 1, 1 over 7
 * adapters; the graph pads every adapter's segment to the longest, so its LoRA MatMuls run 7 x 40
 * rows for the step's 112 prompt tokens). Arms interleaved, order rotated per round; medians.
 * Per arm: prefill step ms (the runtime's feed preparation vs onnxruntime's run), adapter copies,
 * decode step ms, and per wave (its prefill and decode steps) feed preparation ms and adapter copies.
 * `--profile`: each arm once more under onnxruntime's profiler, kernel ms per op type per prefill
 * run and per decode run. The JSON carries each arm's first greedy tokens (`firstTokens`).
 *
 *   npm run bench:lora-step -- [--json] [--weights f32|int8|int8c] [--rows 14] [--prompt 8]
 *     [--decode 8] [--rounds 8] [--threads 2] [--mode segment|row] [--profile]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  argmax,
  generateBaseModel,
  generateRandomAdapter,
  ModelRuntime,
  type RuntimeOptions,
  SMOLLM_135M_CONFIG,
  type WeightFormat,
} from "@openledger/model-runtime";
import { type OrtProfileSummary, summarizeOrtProfile } from "./ort-profile.ts";
import { argValue, loadAverage, median, round } from "./peers-common.ts";

const args = process.argv.slice(2);
const JSON_OUT = args.includes("--json");
const WEIGHTS = argValue(args, "--weights", "f32") as WeightFormat;
const ROWS = Number(argValue(args, "--rows", "14"));
const PROMPT = Number(argValue(args, "--prompt", "8"));
const DECODE = Number(argValue(args, "--decode", "8"));
const ROUNDS = Number(argValue(args, "--rounds", "8"));
const THREADS = Number(argValue(args, "--threads", "2"));
const MODE = argValue(args, "--mode", "segment") as "segment" | "row";
const PROFILE = args.includes("--profile");
const log = (m: string) => process.stderr.write(`[bench:lora-step] ${m}\n`);

const ARMS = ["one", "many", "spread", "skewed"] as const;
type Arm = (typeof ARMS)[number];
const config = SMOLLM_135M_CONFIG;
log(
  `SmolLM-135M shape, ${WEIGHTS}, ${ROWS} rows x ${PROMPT} tokens, ${2 * ROWS} adapters, load ${loadAverage()}`,
);
const model = generateBaseModel(config, 1);
const adapters = Array.from({ length: 2 * ROWS }, (_, i) =>
  generateRandomAdapter(config, { rank: 16, seed: i + 1 }),
);
const options: RuntimeOptions = {
  weights: WEIGHTS,
  intraOpThreads: THREADS,
  slots: 2 * ROWS + 1,
  rankBuckets: [16],
  targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"],
  loraMode: MODE,
  nativeDecode: false,
};
const create = async (extra: RuntimeOptions = {}) => {
  const rt = await ModelRuntime.create(model, { ...options, ...extra });
  for (const [i, a] of adapters.entries()) rt.loadAdapter(i + 1, rt.prepareAdapter(a));
  return rt;
};

/** Row i's adapter in the "skewed" arm: shares 5/14, 3/14, 2/14 of the rows, then one row each. */
const skewedAdapter = (i: number) => {
  const bounds = [5, 8, 10].map((b) => Math.round((b * ROWS) / 14));
  const k = bounds.findIndex((b) => i < b);
  return k >= 0 ? k : 3 + i - bounds[2]!;
};
const slotsOf = (arm: Arm, r: number) =>
  Array.from({ length: ROWS }, (_, i) =>
    arm === "one"
      ? 1 + (r % 2) * ROWS
      : arm === "many"
        ? 1 + i + (r % 2) * ROWS
        : arm === "spread"
          ? 1 + 2 * i + (r % 2)
          : 1 + skewedAdapter(i) + (r % 2) * ROWS,
  );

interface Sample {
  prefillMs: number;
  prepareMs: number;
  runMs: number;
  copies: number;
  /** Stack entries the prefill step / a decode step read that no row uses (StepTimings.unusedAdapterReads). */
  unused: number;
  decodeUnused: number;
  decodeMs: number;
  decodePrepareMs: number;
  decodeCopies: number;
  /** The whole wave (its prefill step and decode steps): feed preparation ms and adapter copies. */
  wavePrepareMs: number;
  waveCopies: number;
  tokens: number[];
}
async function once(rt: ModelRuntime, arm: Arm, r: number, decode = DECODE): Promise<Sample> {
  const slots = slotsOf(arm, r);
  const ids = slots.map((_, i) => `${arm}-${r}-${i}`);
  const prompt = (i: number) => Array.from({ length: PROMPT }, (_, t) => 1 + ((i * 31 + t * 7) % 500));
  const t0 = performance.now();
  let logits = await rt.step(ids.map((seqId, i) => ({ seqId, tokens: prompt(i), slot: slots[i]! })));
  const prefillMs = performance.now() - t0;
  const pre = rt.lastTimings;
  const tokens: number[] = [];
  const dec: number[] = [];
  const decPrep: number[] = [];
  let decodeCopies = 0;
  const decUnused: number[] = [];
  for (let s = 0; s < decode; s++) {
    const next = logits.map((l) => argmax(l));
    tokens.push(next[0]!);
    const t1 = performance.now();
    logits = await rt.step(ids.map((seqId, i) => ({ seqId, tokens: [next[i]!], slot: slots[i]! })));
    dec.push(performance.now() - t1);
    decPrep.push(rt.lastTimings.prepareMs);
    decodeCopies += rt.lastTimings.adapterCopies;
    decUnused.push(rt.lastTimings.unusedAdapterReads);
  }
  for (const id of ids) rt.release(id);
  return {
    prefillMs,
    prepareMs: pre.prepareMs,
    runMs: pre.runMs,
    copies: pre.adapterCopies,
    unused: pre.unusedAdapterReads,
    decodeUnused: decUnused.length ? median(decUnused) : 0,
    decodeMs: median(dec),
    decodePrepareMs: median(decPrep),
    decodeCopies,
    wavePrepareMs: pre.prepareMs + decPrep.reduce((a, x) => a + x, 0),
    waveCopies: pre.adapterCopies + decodeCopies,
    tokens,
  };
}

const rt = await create();
await once(rt, "one", 0); // warm-up
await once(rt, "many", 1);
await once(rt, "spread", 0);
await once(rt, "skewed", 1);
const samples: Record<Arm, Sample[]> = { one: [], many: [], spread: [], skewed: [] };
for (let r = 0; r < ROUNDS; r++) {
  for (let k = 0; k < ARMS.length; k++) {
    const arm = ARMS[(r + k) % ARMS.length]!;
    samples[arm].push(await once(rt, arm, r));
  }
  log(
    `round ${r + 1}/${ROUNDS}: ${ARMS.map((a) => `${a} prefill ${round(samples[a].at(-1)!.prefillMs, 1)} ms (copies ${samples[a].at(-1)!.copies}) decode ${round(samples[a].at(-1)!.decodeMs, 1)} ms`).join(", ")}`,
  );
}
// The process RSS with the runtime and its adapters loaded (the slot memory and any step stacks).
const rssBytes = process.memoryUsage().rss;
await rt.dispose();

const profiles: Partial<Record<string, OrtProfileSummary>> = {};
if (PROFILE) {
  const tmp = await mkdtemp(join(tmpdir(), "bench-lora-step-"));
  try {
    for (const arm of ARMS) {
      for (const phase of ["prefill", "decode"] as const) {
        log(`profiling ${arm} ${phase}`);
        const prefix = `lora-step-${arm}-${phase}`;
        const p = await create({
          sessionOptions: { enableProfiling: true, profileFilePrefix: join(tmp, prefix) },
        });
        // The summary reads the last runs: prompt runs only, or the decode runs after them.
        for (let r = 0; r < 4; r++) await once(p, arm, r, phase === "decode" ? DECODE : 0);
        p.endProfiling();
        await p.dispose();
        profiles[`${arm} ${phase}`] = await summarizeOrtProfile(tmp, prefix, phase === "decode" ? DECODE : 3);
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

const summary = Object.fromEntries(
  ARMS.map((a) => {
    const s = samples[a];
    const m = (f: (x: Sample) => number) => round(median(s.map(f)), 2);
    return [
      a,
      {
        prefillMs: m((x) => x.prefillMs),
        prefillPrepareMs: m((x) => x.prepareMs),
        prefillRunMs: m((x) => x.runMs),
        prefillCopies: m((x) => x.copies),
        prefillUnusedReads: m((x) => x.unused),
        decodeUnusedReads: m((x) => x.decodeUnused),
        decodeStepMs: m((x) => x.decodeMs),
        decodePrepareMs: m((x) => x.decodePrepareMs),
        decodeCopies: m((x) => x.decodeCopies),
        wavePrepareMs: m((x) => x.wavePrepareMs),
        waveCopies: m((x) => x.waveCopies),
        meanWaveCopies: round(s.reduce((a, x) => a + x.waveCopies, 0) / s.length, 2),
        firstTokens: s[0]!.tokens.slice(0, 4),
      },
    ];
  }),
) as unknown as Record<Arm, Record<string, number | number[]>>;
const out = {
  bench: "lora-step",
  weights: WEIGHTS,
  mode: MODE,
  rows: ROWS,
  promptTokens: PROMPT,
  threads: THREADS,
  rounds: ROUNDS,
  loadAverage: loadAverage(),
  rssBytes,
  arms: summary,
  ratios: {
    prefill: round((summary.many.prefillMs as number) / (summary.one.prefillMs as number), 2),
    decode: round((summary.many.decodeStepMs as number) / (summary.one.decodeStepMs as number), 2),
    spreadPrefill: round((summary.spread.prefillMs as number) / (summary.one.prefillMs as number), 2),
    spreadDecode: round((summary.spread.decodeStepMs as number) / (summary.one.decodeStepMs as number), 2),
    skewedPrefill: round((summary.skewed.prefillMs as number) / (summary.one.prefillMs as number), 2),
    skewedDecode: round((summary.skewed.decodeStepMs as number) / (summary.one.decodeStepMs as number), 2),
  },
  profiles,
};
if (JSON_OUT) console.log(JSON.stringify(out));
else {
  console.log(
    "arm    prefill ms  prepare  run    copies  decode ms  decode prepare  wave prepare  wave copies (mean)",
  );
  for (const a of ARMS) {
    const s = summary[a];
    console.log(
      `${a.padEnd(6)} ${String(s.prefillMs).padStart(10)} ${String(s.prefillPrepareMs).padStart(8)} ${String(s.prefillRunMs).padStart(6)} ${String(s.prefillCopies).padStart(7)} ${String(s.decodeStepMs).padStart(10)} ${String(s.decodePrepareMs).padStart(15)} ${String(s.wavePrepareMs).padStart(13)} ${String(s.waveCopies).padStart(12)} (${s.meanWaveCopies})`,
    );
  }
  for (const [a, p] of Object.entries(profiles)) {
    if (!p) continue;
    console.log(`\n${a}: kernel ${p.kernelMs} ms per run (model_run ${p.modelRunMs} ms)`);
    for (const o of p.ops.slice(0, 12))
      console.log(`  ${o.op.padEnd(28)} ${String(o.ms).padStart(8)} ms  x${o.nodes}`);
  }
  console.log(
    `ratios many/one: prefill ${out.ratios.prefill}, decode ${out.ratios.decode}; spread/one: prefill ${out.ratios.spreadPrefill}, decode ${out.ratios.spreadDecode}; skewed/one: prefill ${out.ratios.skewedPrefill}, decode ${out.ratios.skewedDecode}; load ${out.loadAverage}`,
  );
}
