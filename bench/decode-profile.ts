/**
 * Where a batch-1 decode step of our runtime goes: the gateway's multi-LoRA graph (no adapter
 * row, so the LoRA deltas are skipped), SmolLM-135M shape with random weights, f32 / int8 /
 * int4, for each thread count, spin setting, attention implementation and graph asked for.
 *
 * 1. Timing: one session per configuration, stepped in interleaved rounds (order flipped per
 *    round), `--steps` timed greedy steps after an 8-token prefill and one untimed step; per
 *    configuration the median step (ms), split into the time inside `session.run` and the time
 *    outside it (feeds, KV bookkeeping), and the greedy tokens (identical across configurations
 *    of one weight format, or the bench says so).
 * 2. Profile (`--profile`): each configuration once more under onnxruntime's profiler; per op
 *    type the kernel time per step, nodes per step, and onnxruntime's own `model_run` time, so
 *    the gap between the sum of kernels and a run (the executor's per-node cost) shows.
 *
 *   npm run bench:decode-profile -- [--json] [--weights int8,f32] [--threads 1,2] [--spin 0,1]
 *     [--attention fused,ops] [--graph lora,base] [--rounds N] [--steps N] [--profile]
 *
 * --graph base: the plain graph without LoRA inputs (no `If` nodes): what the LoRA plumbing costs
 * a step that does not use it.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type AttentionImpl,
  argmax,
  generateBaseModel,
  ModelRuntime,
  type RuntimeOptions,
  SMOLLM_135M_CONFIG,
  type WeightFormat,
} from "@openledger/model-runtime";
import { type OrtProfileSummary, summarizeOrtProfile } from "./ort-profile.ts";
import { argValue, loadAverage, median, round } from "./peers-common.ts";

const args = process.argv.slice(2);
const list = (name: string, dflt: string) => argValue(args, name, dflt).split(",");
const WEIGHTS = list("--weights", "int8") as WeightFormat[];
const THREADS = list("--threads", "2").map(Number);
const SPIN = list("--spin", "0").map((s) => s === "1");
const ATTENTION = list("--attention", "fused") as AttentionImpl[];
const GRAPHS = list("--graph", "lora") as ("lora" | "base")[];
const ROUNDS = Number(argValue(args, "--rounds", "5"));
const STEPS = Number(argValue(args, "--steps", "16"));
const PROFILE = args.includes("--profile");
const PROMPT = [1, 2, 3, 4, 5, 6, 7, 8];
const log = (m: string) => process.stderr.write(`[bench:decode-profile] ${m}\n`);

interface Config {
  weights: WeightFormat;
  threads: number;
  spin: boolean;
  attention: AttentionImpl;
  graph: "lora" | "base";
}
const configs: Config[] = WEIGHTS.flatMap((weights) =>
  THREADS.flatMap((threads) =>
    SPIN.flatMap((spin) =>
      ATTENTION.flatMap((attention) => GRAPHS.map((graph) => ({ weights, threads, spin, attention, graph }))),
    ),
  ),
);
const label = (c: Config) =>
  `${c.weights} ${c.threads}t${c.spin ? " spin" : ""} ${c.attention}${c.graph === "base" ? " base" : ""}`;
const options = (c: Config): RuntimeOptions => ({
  weights: c.weights,
  intraOpThreads: c.threads,
  spinWait: c.spin,
  attention: c.attention,
  lora: c.graph === "lora",
  slots: 2,
  rankBuckets: [16],
});

/** Prefill, one untimed step, then `steps` timed greedy steps. */
async function decode(rt: ModelRuntime, id: string, steps: number) {
  let [logits] = await rt.step([{ seqId: id, tokens: PROMPT, slot: 0 }]);
  let t = argmax(logits!);
  [logits] = await rt.step([{ seqId: id, tokens: [t], slot: 0 }]);
  const tokens: number[] = [];
  const stepMs: number[] = [];
  const runMs: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let s = 0; s < steps; s++) {
    t = argmax(logits!);
    tokens.push(t);
    const t0 = performance.now();
    [logits] = await rt.step([{ seqId: id, tokens: [t], slot: 0 }]);
    stepMs.push(performance.now() - t0);
    runMs.push(rt.lastTimings.runMs);
  }
  const cpu = process.cpuUsage(cpu0);
  rt.release(id);
  return {
    tokens,
    stepMs: median(stepMs),
    fastestMs: Math.min(...stepMs),
    runMs: median(runMs),
    cpuMs: (cpu.user + cpu.system) / 1000 / steps,
  };
}

log(`generating the SmolLM-135M-shaped model; building ${configs.length} sessions`);
const model = generateBaseModel(SMOLLM_135M_CONFIG, 1);
const runtimes = [];
for (const c of configs) runtimes.push(await ModelRuntime.create(model, options(c)));
const rounds = configs.map(() => [] as { stepMs: number; fastestMs: number; runMs: number; cpuMs: number }[]);
const tokens = configs.map(() => [] as number[][]);
for (let r = 0; r < ROUNDS; r++) {
  const order = configs.map((_, i) => i);
  if (r % 2) order.reverse();
  for (const i of order) {
    const res = await decode(runtimes[i]!, `r${r}`, STEPS);
    rounds[i]!.push(res);
    tokens[i]!.push(res.tokens);
  }
  log(
    `round ${r + 1}/${ROUNDS}: ${configs.map((c, i) => `${label(c)} ${round(rounds[i]!.at(-1)!.stepMs, 2)} ms`).join(", ")}`,
  );
}
for (const rt of runtimes) await rt.dispose();

const profiles: (OrtProfileSummary | null)[] = configs.map(() => null);
if (PROFILE) {
  const tmp = await mkdtemp(join(tmpdir(), "bench-decode-profile-"));
  try {
    for (const [i, c] of configs.entries()) {
      log(`profiling ${label(c)}`);
      const prefix = `decode-${i}`;
      const rt = await ModelRuntime.create(model, {
        ...options(c),
        sessionOptions: { enableProfiling: true, profileFilePrefix: join(tmp, prefix) },
      });
      await decode(rt, "profile", STEPS);
      rt.endProfiling();
      await rt.dispose();
      profiles[i] = await summarizeOrtProfile(tmp, prefix, STEPS);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

const out = {
  model:
    "SmolLM-135M shape, random weights, batch 1 (graph lora: the gateway's multi-LoRA graph, no adapter row)",
  rounds: ROUNDS,
  steps: STEPS,
  loadAverage: loadAverage(),
  results: configs.map((c, i) => {
    const stepMs = median(rounds[i]!.map((x) => x.stepMs));
    const runMs = median(rounds[i]!.map((x) => x.runMs));
    const sameWeights = configs.findIndex((o) => o.weights === c.weights);
    return {
      ...c,
      stepMs: round(stepMs, 3),
      tokPerS: round(1000 / stepMs, 1),
      fastestStepMs: round(Math.min(...rounds[i]!.map((x) => x.fastestMs)), 3),
      /** process CPU time per step (all threads; hardly depends on the machine's load without spinning) */
      cpuMsPerStep: round(median(rounds[i]!.map((x) => x.cpuMs)), 3),
      runMs: round(runMs, 3),
      outsideRunMs: round(stepMs - runMs, 3),
      stepMsRounds: rounds[i]!.map((x) => round(x.stepMs, 2)),
      greedyTokensAsFirstConfig: JSON.stringify(tokens[i]) === JSON.stringify(tokens[sameWeights]),
      profile: profiles[i],
    };
  }),
};
if (args.includes("--json")) process.stdout.write(`${JSON.stringify(out)}\n`);
else {
  console.log(
    "| weights | threads | spin | attention | graph | ms/step | fastest | CPU ms/step | tok/s | in session.run | outside |",
  );
  console.log("| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of out.results)
    console.log(
      `| ${r.weights} | ${r.threads} | ${r.spin} | ${r.attention} | ${r.graph} | ${r.stepMs} | ${r.fastestStepMs} | ${r.cpuMsPerStep} | ${r.tokPerS} | ${r.runMs} | ${r.outsideRunMs} |`,
    );
  for (const r of out.results) {
    if (!r.profile) continue;
    const p = r.profile;
    console.log(
      `\n${label(r)}: model_run ${p.modelRunMs} ms, kernels ${p.kernelMs} ms, ${p.nodesPerRun} nodes per step`,
    );
    for (const o of p.ops.slice(0, 16))
      console.log(
        `  ${o.op.padEnd(34)} ${o.ms.toFixed(3).padStart(8)} ms  ${(o.share * 100).toFixed(1).padStart(5)}%  ${o.nodes} nodes`,
      );
  }
  console.log(`\nload average ${out.loadAverage}`);
}
