/**
 * Batch-1 decode on the gateway's multi-LoRA graph when no row has an adapter: the LoRA deltas
 * skipped (an `If` on `lora_on`, the default) vs always computed (`loraSkip: false`, the graph
 * before), SmolLM-135M shape (random weights), same weights and threads, the two sessions
 * stepped alternately (order flipped per round); medians over rounds and the fastest step of
 * each side (the machine is shared). Greedy tokens are compared.
 *
 *   npm run bench:lora-skip -- [--json] [--weights int8|f32|int4] [--rounds N] [--steps N] [--threads N]
 */
import {
  argmax,
  generateBaseModel,
  ModelRuntime,
  SMOLLM_135M_CONFIG,
  type WeightFormat,
} from "@openledger/model-runtime";
import { argValue, loadAverage, median, round } from "./peers-common.ts";

const args = process.argv.slice(2);
const WEIGHTS = argValue(args, "--weights", "int8") as WeightFormat;
const ROUNDS = Number(argValue(args, "--rounds", "8"));
const STEPS = Number(argValue(args, "--steps", "16"));
const THREADS = Number(argValue(args, "--threads", "2"));
const log = (m: string) => process.stderr.write(`[bench:lora-skip] ${m}\n`);

log(`building two ${WEIGHTS} sessions (SmolLM-135M shape)`);
const model = generateBaseModel(SMOLLM_135M_CONFIG, 1);
const options = { weights: WEIGHTS, intraOpThreads: THREADS, slots: 2, rankBuckets: [16] };
const sides = {
  skip: await ModelRuntime.create(model, options),
  always: await ModelRuntime.create(model, { ...options, loraSkip: false }),
};
const stepMs = { skip: [] as number[], always: [] as number[] };
const fastest = { skip: Number.POSITIVE_INFINITY, always: Number.POSITIVE_INFINITY };
const tokens = { skip: [] as number[][], always: [] as number[][] };
for (let r = 0; r < ROUNDS; r++) {
  for (const side of (r % 2 ? ["always", "skip"] : ["skip", "always"]) as (keyof typeof sides)[]) {
    const rt = sides[side];
    const id = `${side}-${r}`;
    let [logits] = await rt.step([{ seqId: id, tokens: [1, 2, 3, 4, 5, 6, 7, 8], slot: 0 }]);
    const out: number[] = [];
    const t0 = performance.now();
    for (let s = 0; s < STEPS; s++) {
      const t = argmax(logits!);
      out.push(t);
      const ts = performance.now();
      [logits] = await rt.step([{ seqId: id, tokens: [t], slot: 0 }]);
      fastest[side] = Math.min(fastest[side], performance.now() - ts);
    }
    stepMs[side].push((performance.now() - t0) / STEPS);
    tokens[side].push(out);
    rt.release(id);
  }
  log(
    `round ${r + 1}: skip ${round(stepMs.skip.at(-1)!, 1)} ms, always ${round(stepMs.always.at(-1)!, 1)} ms`,
  );
}
await sides.skip.dispose();
await sides.always.dispose();
const out = {
  weights: WEIGHTS,
  batch: 1,
  skipStepMs: round(median(stepMs.skip), 2),
  alwaysStepMs: round(median(stepMs.always), 2),
  speedup: round(median(stepMs.always) / median(stepMs.skip), 3),
  skipFastestStepMs: round(fastest.skip, 2),
  alwaysFastestStepMs: round(fastest.always, 2),
  speedupFastest: round(fastest.always / fastest.skip, 3),
  greedyTokensIdentical: JSON.stringify(tokens.skip) === JSON.stringify(tokens.always),
  rounds: ROUNDS,
  steps: STEPS,
  threads: THREADS,
  loadAverage: loadAverage(),
};
if (args.includes("--json")) process.stdout.write(`${JSON.stringify(out)}\n`);
else {
  console.log(
    "| weights | skip ms/step | always ms/step | speedup (median) | fastest step skip / always | greedy identical |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | --- |");
  console.log(
    `| ${out.weights} | ${out.skipStepMs} | ${out.alwaysStepMs} | ${out.speedup} | ${out.skipFastestStepMs} / ${out.alwaysFastestStepMs} | ${out.greedyTokensIdentical} |`,
  );
}
