/**
 * Policy simulation: the real cache + scheduler driven on a virtual clock, with a toy
 * model whose step time follows a memory-traffic cost model and adapter loads that take
 * virtual time. It measures what the *policies* cost (batch occupancy, distinct adapters
 * per step, stalls waiting for loads, RAM) independently of the hardware, comparing N
 * adapters against a single adapter under the same load in the same run.
 *
 *   node --import tsx packages/serving-core/src/simulate.ts [--json] [--requests 4000]
 *
 * Not a substitute for the gateway benchmark, which runs the real model.
 */
import { pathToFileURL } from "node:url";
import { AdapterCache } from "./adapter-cache.ts";
import { ManualClock } from "./clock.ts";
import type { LoadedAdapter } from "./ram-cache.ts";
import { Scheduler, type SchedulerOptions } from "./scheduler.ts";
import { type FakeWeights, flush, seedOf, ToyModel } from "./test-helpers.ts";

export interface SimulationOptions {
  adapters: number;
  requests: number;
  /** Closed loop: this many requests in flight at all times. */
  concurrency: number;
  zipfS: number;
  promptTokens: number;
  maxNewTokens: number;
  accounts: number;
  numSlots: number;
  ramAdapters: number;
  adapterBytes: number;
  loadMs: number;
  /** Step cost model (virtual ms): base + per distinct adapter + per padded token. */
  stepBaseMs: number;
  stepAdapterMs: number;
  stepTokenMs: number;
  scheduler: Partial<SchedulerOptions>;
  seed: number;
}

export interface SimulationResult {
  adapters: number;
  tokPerSec: number;
  /** Output tokens per executed step: what the policy controls (occupancy, stalls). */
  tokensPerStep: number;
  /** Mean virtual step time: what the cost model (physics) charges. */
  meanStepMs: number;
  meanBatch: number;
  meanDistinctAdaptersPerStep: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  ramPeakBytes: number;
  ramBudgetBytes: number;
  loads: number;
  ramEvictions: number;
  slotEvictions: number;
  emptySteps: number;
}

export const DEFAULT_SIMULATION: SimulationOptions = {
  adapters: 1000,
  requests: 4000,
  concurrency: 64,
  zipfS: 1.1,
  promptTokens: 16,
  maxNewTokens: 32,
  accounts: 16,
  numSlots: 65,
  ramAdapters: 256,
  adapterBytes: 1_000_000,
  loadMs: 20,
  stepBaseMs: 20,
  stepAdapterMs: 0.3,
  stepTokenMs: 0.02,
  scheduler: {},
  seed: 42,
};

export async function simulate(o: SimulationOptions): Promise<SimulationResult> {
  const clock = new ManualClock(0);
  const model = new ToyModel(o.numSlots);
  const pending: { at: number; id: string; resolve: (v: LoadedAdapter<FakeWeights>) => void }[] = [];
  const loader = {
    load: (id: string) =>
      new Promise<LoadedAdapter<FakeWeights>>((resolve) => {
        pending.push({ at: clock.now() + o.loadMs, id, resolve });
      }),
  };
  const cache = new AdapterCache<FakeWeights>({
    loader,
    slotWriter: model,
    ramBudgetBytes: o.ramAdapters * o.adapterBytes,
    numSlots: o.numSlots,
    maxConcurrentLoads: 4,
  });
  const scheduler = new Scheduler<unknown, FakeWeights>({
    cache,
    clock,
    maxBatchTokens: 512,
    maxRunningSequences: 64,
    maxPromptTokens: o.promptTokens,
    maxNewTokens: o.maxNewTokens,
    costModel: "padded",
    ...o.scheduler,
  });
  // Zipf over adapters via the inverse CDF, driven by a seeded LCG (deterministic).
  const cdf = new Float64Array(o.adapters);
  let acc = 0;
  for (let k = 0; k < o.adapters; k++) {
    acc += 1 / (k + 1) ** o.zipfS;
    cdf[k] = acc;
  }
  let state = o.seed >>> 0;
  const rand = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const pick = () => {
    const u = rand() * acc;
    let lo = 0;
    let hi = o.adapters - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return `adapter-${lo}`;
  };
  const ttft: number[] = [];
  let submitted = 0;
  let finished = 0;
  let tokens = 0;
  let steps = 0;
  let rowsTotal = 0;
  let distinctTotal = 0;
  let emptySteps = 0;
  let ramPeak = 0;
  let busyMs = 0;
  while (finished < o.requests) {
    while (submitted < o.requests && submitted - finished < o.concurrency) {
      scheduler.submit({
        id: `r${submitted}`,
        account: `acct${submitted % o.accounts}`,
        adapterId: pick(),
        promptTokens: Array.from({ length: o.promptTokens }, (_, i) => (i * 7 + submitted) % 1000),
        maxNewTokens: o.maxNewTokens,
      });
      submitted += 1;
    }
    const plan = scheduler.schedule();
    model.release(plan.release);
    const rows = plan.batch.rows;
    if (rows.length === 0) {
      // Nothing runnable: jump to the next load completion.
      emptySteps += 1;
      const next = Math.min(...pending.map((p) => p.at));
      if (!Number.isFinite(next)) throw new Error("simulation stalled: nothing runnable and no load pending");
      clock.set(Math.max(clock.now(), next));
    } else {
      const out = model.step(plan.batch);
      const distinct = new Set(rows.flatMap((r) => (r.adapterId === null ? [] : [r.adapterId]))).size;
      const longest = Math.max(...rows.map((r) => r.tokens.length));
      const stepMs = o.stepBaseMs + o.stepAdapterMs * distinct + o.stepTokenMs * rows.length * longest;
      clock.advance(stepMs);
      busyMs += stepMs;
      const res = scheduler.commit(plan, out);
      model.release(res.release);
      steps += 1;
      rowsTotal += rows.length;
      distinctTotal += distinct;
      for (const e of res.events) {
        if (e.type === "token") tokens += 1;
        else {
          finished += 1;
          const t = e.result.timings;
          if (t.firstTokenAt !== undefined) ttft.push(t.firstTokenAt - t.queuedAt);
        }
      }
    }
    for (let i = pending.length - 1; i >= 0; i--) {
      const p = pending[i];
      if (p === undefined || p.at > clock.now()) continue;
      pending.splice(i, 1);
      p.resolve({ weights: { adapterId: p.id, seed: seedOf(p.id) }, bytes: o.adapterBytes });
    }
    await flush();
    ramPeak = Math.max(ramPeak, cache.metrics().ram.bytesInUse);
  }
  ttft.sort((a, b) => a - b);
  const q = (p: number) => ttft[Math.min(ttft.length - 1, Math.floor(p * ttft.length))] ?? 0;
  const m = cache.metrics();
  return {
    adapters: o.adapters,
    tokPerSec: (tokens / clock.now()) * 1000,
    tokensPerStep: tokens / Math.max(1, steps),
    meanStepMs: busyMs / Math.max(1, steps),
    meanBatch: rowsTotal / Math.max(1, steps),
    meanDistinctAdaptersPerStep: distinctTotal / Math.max(1, steps),
    ttftP50Ms: q(0.5),
    ttftP99Ms: q(0.99),
    ramPeakBytes: ramPeak,
    ramBudgetBytes: m.ram.budgetBytes,
    loads: m.ram.loads,
    ramEvictions: m.ram.evictions,
    slotEvictions: m.slots.evictions,
    emptySteps,
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const json = args.includes("--json");
  const reqIdx = args.indexOf("--requests");
  const requests = reqIdx >= 0 ? Number(args[reqIdx + 1]) : DEFAULT_SIMULATION.requests;
  const runs: (SimulationResult & {
    prefetch: boolean;
    singleAdapterTokPerSec: number;
    ratio: number;
    tokensPerStepVsSingle: number;
  })[] = [];
  for (const prefetch of [true, false]) {
    const base = { ...DEFAULT_SIMULATION, requests, scheduler: prefetch ? {} : { prefetchDepth: 0 } };
    process.stderr.write(`single adapter (prefetch ${prefetch})...\n`);
    const single = await simulate({ ...base, adapters: 1 });
    for (const adapters of [10, 1000, 10_000]) {
      process.stderr.write(`${adapters} adapters (prefetch ${prefetch})...\n`);
      const r = await simulate({ ...base, adapters });
      runs.push({
        ...r,
        prefetch,
        singleAdapterTokPerSec: single.tokPerSec,
        ratio: r.tokPerSec / single.tokPerSec,
        tokensPerStepVsSingle: r.tokensPerStep / single.tokensPerStep,
      });
    }
  }
  if (json) {
    process.stdout.write(`${JSON.stringify({ options: { ...DEFAULT_SIMULATION, requests }, runs })}\n`);
    return;
  }
  console.log(
    "adapters prefetch  tok/s(virtual)  vs-single  tok/step vs-single  step ms  batch  distinct/step  ttft p50/p99 ms  loads  RAM peak/budget MB",
  );
  for (const r of runs) {
    console.log(
      [
        String(r.adapters).padStart(8),
        String(r.prefetch).padStart(8),
        r.tokPerSec.toFixed(0).padStart(15),
        r.ratio.toFixed(3).padStart(10),
        r.tokensPerStep.toFixed(1).padStart(8),
        r.tokensPerStepVsSingle.toFixed(3).padStart(10),
        r.meanStepMs.toFixed(1).padStart(8),
        r.meanBatch.toFixed(1).padStart(6),
        r.meanDistinctAdaptersPerStep.toFixed(1).padStart(14),
        `${r.ttftP50Ms.toFixed(0)}/${r.ttftP99Ms.toFixed(0)}`.padStart(16),
        String(r.loads).padStart(6),
        `${(r.ramPeakBytes / 1e6).toFixed(0)}/${(r.ramBudgetBytes / 1e6).toFixed(0)}`.padStart(19),
      ].join(" "),
    );
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
