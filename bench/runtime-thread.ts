/**
 * Event-loop delay while the model decodes: the runtime on the calling thread (`ModelRuntime`:
 * onnxruntime-node runs each step synchronously there) vs on its own thread (`WorkerRuntime`,
 * what the gateway uses). Same SmolLM-135M-shaped model (random f32 weights), 8 rows decoding
 * greedily, alternated per round; `monitorEventLoopDelay` (5 ms resolution) over the timed steps,
 * and the main thread's own CPU time per step (/proc/self/schedstat). Three variants: the runtime
 * on this thread, on its own thread with the argmax over the logits here, and on its own thread
 * sampling there (`stepSample`, what the gateway does). The gateway-level figures (TTFT, adapters) are `npm run bench:gateway`.
 *
 *   node --import tsx bench/runtime-thread.ts [--json] [--rounds N] [--steps N] [--rows N (default 8)]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import {
  argmax,
  generateBaseModel,
  loadBaseModelDir,
  ModelRuntime,
  SMOLLM_135M_CONFIG,
  type StepRuntime,
  WorkerRuntime,
  writeBaseModelDir,
} from "@openledger/model-runtime";
import { loadAverage, mainThreadCpuMs, median, round } from "./peers-common.ts";

const args = process.argv.slice(2);
const arg = (n: string, d: string) => (args.includes(n) ? args[args.indexOf(n) + 1]! : d);
const ROUNDS = Number(arg("--rounds", "3"));
const STEPS = Number(arg("--steps", "12"));
const ROWS = Number(arg("--rows", "8"));
const log = (m: string) => process.stderr.write(`[bench:runtime-thread] ${m}\n`);

type Mode = "logits" | "sampleThere";

/**
 * 8 rows decoding greedily. "logits": the step returns logits and this thread takes the argmax
 * (the gateway before 2026-12-03); "sampleThere": `stepSample`, the runtime samples and returns
 * token ids (the gateway now).
 */
async function measure(
  rt: StepRuntime,
  tag: string,
  mode: Mode,
): Promise<{ stepMs: number; p50: number; p99: number; max: number; mainCpuMsPerStep: number }> {
  const h = monitorEventLoopDelay({ resolution: 5 });
  let rows = Array.from({ length: ROWS }, (_, i) => ({
    seqId: `${tag}-${i}`,
    tokens: [40 + i, 41, 42, 43],
    slot: 0,
  }));
  const greedy = { temperature: 0 };
  const next = async (): Promise<number[]> => {
    if (mode === "sampleThere")
      return [...(await rt.stepSample(rows.map((r) => ({ ...r, sample: greedy }))))];
    return (await rt.step(rows)).map((l) => argmax(l));
  };
  let tokens = await next();
  h.enable();
  const cpu0 = mainThreadCpuMs() ?? 0;
  const t0 = performance.now();
  for (let s = 0; s < STEPS; s++) {
    rows = rows.map((r, i) => ({ ...r, tokens: [tokens[i]!] }));
    tokens = await next();
  }
  const ms = performance.now() - t0;
  const cpu = (mainThreadCpuMs() ?? 0) - cpu0;
  h.disable();
  for (const r of rows) rt.release(r.seqId);
  return {
    stepMs: ms / STEPS,
    p50: h.percentile(50) / 1e6,
    p99: h.percentile(99) / 1e6,
    max: h.max / 1e6,
    mainCpuMsPerStep: cpu / STEPS,
  };
}

const dir = await mkdtemp(join(tmpdir(), "bench-runtime-thread-"));
try {
  log("writing a SmolLM-135M-shaped model");
  await writeBaseModelDir(dir, generateBaseModel(SMOLLM_135M_CONFIG, 1));
  const local = await ModelRuntime.create(await loadBaseModelDir(dir, { lazy: true }), {
    intraOpThreads: 2,
    slots: 2,
    releaseWeights: true,
  });
  const remote = await WorkerRuntime.create({ dir }, { intraOpThreads: 2, slots: 2 });
  const res = {
    sameThread: [] as Awaited<ReturnType<typeof measure>>[],
    ownThread: [] as Awaited<ReturnType<typeof measure>>[],
    ownThreadSampling: [] as Awaited<ReturnType<typeof measure>>[],
  };
  for (let r = 0; r < ROUNDS; r++) {
    res.sameThread.push(await measure(local, `l${r}`, "logits"));
    res.ownThread.push(await measure(remote, `w${r}`, "logits"));
    res.ownThreadSampling.push(await measure(remote, `s${r}`, "sampleThere"));
    const f = (x: Awaited<ReturnType<typeof measure>>[]) =>
      `p99 ${round(x.at(-1)!.p99, 1)} ms, main-thread CPU ${round(x.at(-1)!.mainCpuMsPerStep, 2)} ms/step`;
    log(
      `round ${r + 1}: same thread ${f(res.sameThread)}; own thread ${f(res.ownThread)}; own thread sampling there ${f(res.ownThreadSampling)}`,
    );
  }
  await local.dispose();
  await remote.dispose();
  const summary = (xs: Awaited<ReturnType<typeof measure>>[]) => ({
    stepMs: round(median(xs.map((x) => x.stepMs)), 1),
    eventLoopDelayP50Ms: round(median(xs.map((x) => x.p50)), 1),
    eventLoopDelayP99Ms: round(median(xs.map((x) => x.p99)), 1),
    eventLoopDelayMaxMs: round(median(xs.map((x) => x.max)), 1),
    mainThreadCpuMsPerStep: round(median(xs.map((x) => x.mainCpuMsPerStep)), 2),
  });
  const out = {
    sameThread: summary(res.sameThread),
    ownThread: summary(res.ownThread),
    ownThreadSampling: summary(res.ownThreadSampling),
    rows: ROWS,
    rounds: ROUNDS,
    steps: STEPS,
    loadAverage: loadAverage(),
  };
  if (args.includes("--json")) process.stdout.write(`${JSON.stringify(out)}\n`);
  else {
    console.log("| runtime | step ms | event-loop delay p50 / p99 / max ms | main-thread CPU ms/step |");
    console.log("| --- | ---: | ---: | ---: |");
    for (const [k, v] of [
      ["same thread (ModelRuntime)", out.sameThread],
      ["own thread (WorkerRuntime), sampling here", out.ownThread],
      ["own thread, sampling there (stepSample)", out.ownThreadSampling],
    ] as const)
      console.log(
        `| ${k} | ${v.stepMs} | ${v.eventLoopDelayP50Ms} / ${v.eventLoopDelayP99Ms} / ${v.eventLoopDelayMaxMs} | ${v.mainThreadCpuMsPerStep} |`,
      );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
