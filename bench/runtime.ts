/**
 * Model-runtime benchmark: multi-LoRA decode throughput (OpenLoRA's core claim).
 *
 * For the tiny config and a SmolLM-135M-shaped config (random weights), decode tokens/s
 * for batches 1..64 whose rows are spread over 1, 8 and 64 distinct rank-16 adapters
 * (q, k, v, o), against, in the same run and with the same onnxruntime threads:
 *   (a) the base model with no LoRA (the ceiling),
 *   (b) merged weights: each adapter's rows as a separate batch on W + scale*B*A, re-merged
 *       whenever the adapter changes (merge time included).
 * Plus: adapter load time disk -> slot (p50/p99); the in-graph layout "segment" (each
 * distinct adapter read once) vs "row" (per-row gather); mixed ranks padded to the largest
 * slot rank vs bucketed by rank.
 *
 * Timing: the machine is shared, so each compared pair (base vs LoRA, segment vs row,
 * pad vs bucket) runs on separate sessions stepped alternately, and each figure is the
 * median step time; prefill and the first decode step are not timed.
 *
 *   npm run bench:runtime                 human table (stderr progress)
 *   npm run bench:runtime -- --json       one JSON object on stdout
 *   npm run bench:runtime -- --quick      tiny config only, fewer steps
 *   options: --configs tiny,smollm  --threads 2  --steps N (timed pairs; default tiny 40, smollm 8)
 *            --batches 1,8,16,32,64
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AdapterMerger,
  adapterBytes,
  type BaseModel,
  baseWeightBytes,
  generateBaseModel,
  generateRandomPeft,
  type LlamaConfig,
  type LoraAdapter,
  type LoraModule,
  loadPeftAdapter,
  ModelRuntime,
  SMOLLM_135M_CONFIG,
  type StepRow,
  TINY_CONFIG,
  writePeftAdapter,
} from "@openledger/model-runtime";

const args = process.argv.slice(2);
const JSON_OUT = args.includes("--json");
const QUICK = args.includes("--quick");
const argStr = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const THREADS = Number(argStr("--threads", "2"));
// Tiny steps take ~1 ms, so they need many more samples than SmolLM's ~0.1 s steps.
const STEPS_ARG = args.includes("--steps") ? Number(argStr("--steps", "4")) : undefined;
let STEPS = 4;
const CONFIG_NAMES = argStr("--configs", QUICK ? "tiny" : "tiny,smollm").split(",") as ("tiny" | "smollm")[];
const BATCHES = argStr("--batches", "1,8,16,32,64").split(",").map(Number);
const ADAPTER_COUNTS = [1, 8, 64];
const RANK = 16;
const PROMPT = 8;
const MODULES: LoraModule[] = ["q_proj", "k_proj", "v_proj", "o_proj"];
const CONFIGS: Record<string, LlamaConfig> = { tiny: TINY_CONFIG, smollm: SMOLLM_135M_CONFIG };

const log = (msg: string) => process.stderr.write(`[bench:runtime] ${msg}\n`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

interface DecodeRow {
  config: string;
  batch: number;
  adapters: number;
  tokPerSec: number;
  baseTokPerSec: number;
  mergedTokPerSec: number;
  baseWeightBytes: number;
  adapterBytes: number;
  boundTokPerSec: number;
  ratioVsBase: number;
  ratioVsBound: number;
  speedupVsMerged: number;
}

/** A set of sequences decoding together on one runtime. */
class Cohort {
  private last: number[];
  private started = false;
  readonly stepMs: number[] = [];

  constructor(
    readonly rt: ModelRuntime,
    readonly name: string,
    readonly slots: number[],
    seed: number,
    vocab: number,
  ) {
    this.last = slots.map((_, i) => (seed * 31 + i * 7) % Math.min(vocab, 256));
  }

  private rows(): StepRow[] {
    return this.slots.map((slot, i) => ({
      seqId: `${this.name}-${i}`,
      tokens: this.started
        ? [this.last[i]!]
        : Array.from({ length: PROMPT }, (_, t) => (this.last[i]! + t * 13) % 256),
      slot,
    }));
  }

  /** One step; feeds back greedy-free fixed tokens (sampling cost is not the runtime's). */
  async step(timed: boolean): Promise<void> {
    const rows = this.rows();
    const t0 = performance.now();
    await this.rt.step(rows);
    const ms = performance.now() - t0;
    this.started = true;
    this.last = this.last.map((t) => (t * 17 + 3) % 256);
    if (timed) this.stepMs.push(ms);
  }

  tokPerSec(): number {
    return (this.slots.length * 1000) / median(this.stepMs);
  }

  release(): void {
    this.slots.forEach((_, i) => {
      this.rt.release(`${this.name}-${i}`);
    });
  }
}

/**
 * Two cohorts on different runtimes, stepped alternately (A, B, A, B, ...) so that load
 * from other processes on this shared machine hits both alike. Prefill and the first
 * decode step are not timed.
 */
async function paired(a: Cohort, b: Cohort): Promise<void> {
  for (let s = 0; s < 2; s++) {
    await a.step(false);
    await b.step(false);
  }
  for (let s = 0; s < STEPS; s++) {
    await a.step(true);
    await b.step(true);
  }
}

/** Rows spread round-robin over `k` adapters in slots 1..k. */
const spread = (batch: number, k: number, offset = 0) =>
  Array.from({ length: batch }, (_, i) => 1 + offset + (i % k));

async function mergedTokPerSec(
  rt: ModelRuntime,
  merger: AdapterMerger,
  adapters: LoraAdapter[],
  batch: number,
  k: number,
  state: { current: number },
): Promise<number> {
  // Each adapter's rows are their own batch on merged weights; switching adapters re-merges.
  const groups = Array.from({ length: k }, (_, g) =>
    Array.from({ length: batch }, (_, i) => i).filter((i) => i % k === g),
  );
  const useAdapter = async (g: number) => {
    if (state.current === g) return;
    for (const [key, w] of await merger.merge(adapters[g]!)) {
      const [l, m] = key.split(".");
      rt.setExternalWeight(Number(l), m as LoraModule, w);
    }
    state.current = g;
  };
  const rowsOf = (g: number, started: boolean): StepRow[] =>
    groups[g]!.map((i) => ({
      seqId: `merged-${batch}-${k}-${i}`,
      tokens: started ? [(i * 5 + 1) % 256] : Array.from({ length: PROMPT }, (_, t) => (i + t * 13) % 256),
      slot: 0,
    }));
  // Prefill (untimed) in one batch: its KV only has to have the right shape for the timing.
  await rt.step(groups.flatMap((_, g) => rowsOf(g, false)));
  // Timed: M decode steps for every row; a different adapter is merged before timing starts,
  // so even k = 1 pays one merge.
  state.current = -1;
  const steps = k >= 16 ? 1 : Math.max(2, STEPS);
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    for (let g = 0; g < k; g++) {
      await useAdapter(g);
      await rt.step(rowsOf(g, true));
    }
  }
  const ms = performance.now() - t0;
  for (let i = 0; i < batch; i++) rt.release(`merged-${batch}-${k}-${i}`);
  return (batch * steps * 1000) / ms;
}

async function writeAdapters(
  config: LlamaConfig,
  dir: string,
  ranks: number[],
  seedPrefix: string,
): Promise<string[]> {
  const dirs: string[] = [];
  for (let i = 0; i < ranks.length; i++) {
    const d = join(dir, `${seedPrefix}-${i}`);
    await writePeftAdapter(
      d,
      generateRandomPeft(config, { rank: ranks[i]!, seed: `${seedPrefix}-${i}`, targetModules: MODULES }),
    );
    dirs.push(d);
  }
  return dirs;
}

async function benchConfig(configName: string, out: Output): Promise<void> {
  const config = CONFIGS[configName]!;
  STEPS = STEPS_ARG ?? (configName === "tiny" ? 40 : QUICK ? 3 : 8);
  const W = baseWeightBytes(config);
  const A = adapterBytes(config, RANK, MODULES);
  log(
    `${configName}: generating base model (${(W / 1e6).toFixed(1)} MB f32 weights, adapter ${(A / 1e6).toFixed(2)} MB)`,
  );
  const model: BaseModel = generateBaseModel(config, 1);
  const tmp = await mkdtemp(join(tmpdir(), "bench-runtime-"));
  try {
    const maxK = Math.max(...ADAPTER_COUNTS);
    log(`${configName}: writing ${maxK} PEFT adapters (rank ${RANK}) to ${tmp}`);
    const dirs = await writeAdapters(config, tmp, Array(maxK).fill(RANK), "a");

    log(`${configName}: building sessions (intra-op threads ${THREADS})`);
    const base = await ModelRuntime.create(model, { lora: false, intraOpThreads: THREADS });
    const lora = await ModelRuntime.create(model, {
      slots: maxK + 1,
      rankBuckets: [RANK],
      intraOpThreads: THREADS,
    });
    const merged = await ModelRuntime.create(model, {
      lora: false,
      externalWeights: MODULES,
      intraOpThreads: THREADS,
    });
    const merger = await AdapterMerger.create(model, MODULES, RANK, THREADS);

    // Adapter load: disk (adapter_config.json + adapter_model.safetensors) -> validated -> slot.
    const loadMs: number[] = [];
    const adapters: LoraAdapter[] = [];
    for (let i = 0; i < dirs.length; i++) {
      const t0 = performance.now();
      const adapter = await loadPeftAdapter(config, dirs[i]!);
      lora.loadAdapter(i + 1, adapter);
      loadMs.push(performance.now() - t0);
      adapters.push(adapter);
    }
    out.adapterLoad[configName] = {
      p50: percentile(loadMs, 50),
      p99: percentile(loadMs, 99),
      n: loadMs.length,
    };
    log(
      `${configName}: adapter load p50 ${percentile(loadMs, 50).toFixed(1)} ms, p99 ${percentile(loadMs, 99).toFixed(1)} ms`,
    );
    for (let l = 0; l < config.numLayers; l++) {
      for (const m of MODULES) {
        const name = `model.layers.${l}.self_attn.${m}.weight`;
        merged.setExternalWeight(l, m, model.weights.get(name)!.data);
      }
    }
    const mergeState = { current: -1 };

    for (const batch of BATCHES) {
      const ks = [...new Set(ADAPTER_COUNTS.map((k) => Math.min(k, batch)))];
      for (const k of ks) {
        log(`${configName}: batch ${batch}, ${k} adapters: base and LoRA steps alternating, ${STEPS} pairs`);
        const baseCohort = new Cohort(base, `base-${batch}-${k}`, Array(batch).fill(0), 1, config.vocabSize);
        const c = new Cohort(lora, `lora-${batch}-${k}`, spread(batch, k), k, config.vocabSize);
        await paired(baseCohort, c);
        baseCohort.release();
        c.release();
        log(`${configName}: batch ${batch}, ${k} adapters: merged-weights baseline`);
        const mergedTps = await mergedTokPerSec(merged, merger, adapters, batch, k, mergeState);
        const tps = c.tokPerSec();
        const baseTps = baseCohort.tokPerSec();
        const bound = (baseTps * W) / (W + k * A);
        out.decode.push({
          config: configName,
          batch,
          adapters: k,
          tokPerSec: round(tps),
          baseTokPerSec: round(baseTps),
          mergedTokPerSec: round(mergedTps),
          baseWeightBytes: W,
          adapterBytes: A,
          boundTokPerSec: round(bound),
          ratioVsBase: round(tps / baseTps, 3),
          ratioVsBound: round(tps / bound, 3),
          speedupVsMerged: round(tps / mergedTps, 2),
        });
        log(
          `${configName}: b=${batch} k=${k}: ${tps.toFixed(1)} tok/s, base ${baseTps.toFixed(1)}, merged ${mergedTps.toFixed(1)}`,
        );
      }
    }
    await base.dispose();
    await merged.dispose();
    await merger.dispose();

    // Layout comparison at 64 rows: segment (distinct adapters read once) vs per-row gather.
    log(`${configName}: LoRA layout: segment vs row gather (batch 64)`);
    const row = await ModelRuntime.create(model, {
      slots: maxK + 1,
      rankBuckets: [RANK],
      loraMode: "row",
      intraOpThreads: THREADS,
    });
    adapters.forEach((a, i) => {
      row.loadAdapter(i + 1, a);
    });
    for (const k of [8, 64]) {
      const seg = new Cohort(lora, `seg-${k}`, spread(64, k), k, config.vocabSize);
      const rowC = new Cohort(row, `row-${k}`, spread(64, k), k, config.vocabSize);
      await paired(seg, rowC);
      out.loraModes.push({
        config: configName,
        batch: 64,
        adapters: k,
        segmentTokPerSec: round(seg.tokPerSec()),
        rowTokPerSec: round(rowC.tokPerSec()),
      });
      seg.release();
      rowC.release();
    }
    await row.dispose();
    await lora.dispose();

    // Mixed ranks: pad every adapter to the largest slot rank vs one stack per rank bucket.
    const mixRanks = [4, 8, 16, 32];
    log(
      `${configName}: mixed ranks ${mixRanks}: pad to ${Math.max(...mixRanks)} vs bucket by rank (batch 64)`,
    );
    const mixed = (
      await writeAdapters(
        config,
        tmp,
        Array.from({ length: maxK }, (_, i) => mixRanks[i % 4]!),
        "mix",
      )
    ).map((d) => d);
    const mixedAdapters: LoraAdapter[] = [];
    for (const d of mixed) mixedAdapters.push(await loadPeftAdapter(config, d));
    const pad = await ModelRuntime.create(model, {
      slots: maxK + 1,
      rankBuckets: [32],
      intraOpThreads: THREADS,
    });
    const bucket = await ModelRuntime.create(model, {
      slots: maxK + 1,
      rankBuckets: mixRanks,
      intraOpThreads: THREADS,
    });
    mixedAdapters.forEach((a, i) => {
      pad.loadAdapter(i + 1, a);
      bucket.loadAdapter(i + 1, a);
    });
    for (const k of [8, 64]) {
      const p = new Cohort(pad, `pad-${k}`, spread(64, k), k, config.vocabSize);
      const q = new Cohort(bucket, `bucket-${k}`, spread(64, k), k, config.vocabSize);
      await paired(p, q);
      out.rankModes.push({
        config: configName,
        batch: 64,
        adapters: k,
        ranks: mixRanks,
        padTokPerSec: round(p.tokPerSec()),
        bucketTokPerSec: round(q.tokPerSec()),
      });
      p.release();
      q.release();
    }
    await pad.dispose();
    await bucket.dispose();
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

interface Output {
  decode: DecodeRow[];
  adapterLoad: Record<string, { p50: number; p99: number; n: number }>;
  loraModes: {
    config: string;
    batch: number;
    adapters: number;
    segmentTokPerSec: number;
    rowTokPerSec: number;
  }[];
  rankModes: {
    config: string;
    batch: number;
    adapters: number;
    ranks: number[];
    padTokPerSec: number;
    bucketTokPerSec: number;
  }[];
}

function goals(decode: DecodeRow[]) {
  const result: { config: string; goal: string; value: number; target: number; pass: boolean }[] = [];
  for (const config of new Set(decode.map((d) => d.config))) {
    const at = (k: number) => decode.find((d) => d.config === config && d.batch === 64 && d.adapters === k);
    const k8 = at(8);
    const k64 = at(64);
    if (k8)
      result.push({
        config,
        goal: "64 rows / 8 adapters vs base",
        value: k8.ratioVsBase,
        target: 0.85,
        pass: k8.ratioVsBase >= 0.85,
      });
    if (k64) {
      result.push({
        config,
        goal: "64 rows / 64 adapters vs memory-traffic bound",
        value: k64.ratioVsBound,
        target: 0.8,
        pass: k64.ratioVsBound >= 0.8,
      });
      result.push({
        config,
        goal: "64 rows / 64 adapters vs merged weights",
        value: k64.speedupVsMerged,
        target: 10,
        pass: k64.speedupVsMerged >= 10,
      });
    }
  }
  return result;
}

async function main(): Promise<void> {
  const out: Output = { decode: [], adapterLoad: {}, loraModes: [], rankModes: [] };
  const t0 = performance.now();
  for (const name of CONFIG_NAMES) await benchConfig(name, out);
  const g = goals(out.decode);
  const headline = out.adapterLoad["smollm"] ?? out.adapterLoad["tiny"]!;
  const result = {
    threads: { intraOp: THREADS, interOp: 1 },
    promptTokens: PROMPT,
    rank: RANK,
    targetModules: MODULES,
    timedStepPairs: STEPS_ARG ?? { tiny: 40, smollm: QUICK ? 3 : 8 },
    decode: out.decode,
    adapterLoadMs: {
      p50: round(headline.p50, 2),
      p99: round(headline.p99, 2),
      config: out.adapterLoad["smollm"] ? "smollm" : "tiny",
      byConfig: out.adapterLoad,
    },
    loraModes: out.loraModes,
    rankModes: out.rankModes,
    goals: g,
    elapsedSec: round((performance.now() - t0) / 1000),
  };
  if (JSON_OUT) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const pad = (s: string | number, n: number) => String(s).padStart(n);
  console.log(
    `threads: intra-op ${THREADS}, inter-op 1; prompt ${PROMPT} tokens; rank ${RANK} on ${MODULES.join(",")}`,
  );
  console.log(
    `${"config".padEnd(7)}${pad("batch", 6)}${pad("k", 4)}${pad("tok/s", 9)}${pad("base", 9)}${pad("merged", 9)}${pad("bound", 9)}${pad("/base", 7)}${pad("/bound", 8)}${pad("/merged", 9)}`,
  );
  for (const d of out.decode) {
    console.log(
      `${d.config.padEnd(7)}${pad(d.batch, 6)}${pad(d.adapters, 4)}${pad(d.tokPerSec, 9)}${pad(d.baseTokPerSec, 9)}${pad(d.mergedTokPerSec, 9)}${pad(d.boundTokPerSec, 9)}${pad(d.ratioVsBase, 7)}${pad(d.ratioVsBound, 8)}${pad(d.speedupVsMerged, 9)}`,
    );
  }
  for (const [c, l] of Object.entries(out.adapterLoad)) {
    console.log(
      `adapter load disk->slot (${c}, rank ${RANK}, n=${l.n}): p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms`,
    );
  }
  for (const m of out.loraModes) {
    console.log(
      `layout ${m.config} b=64 k=${m.adapters}: segment ${m.segmentTokPerSec} tok/s, row-gather ${m.rowTokPerSec} tok/s`,
    );
  }
  for (const m of out.rankModes) {
    console.log(
      `mixed ranks ${m.ranks} ${m.config} b=64 k=${m.adapters}: pad ${m.padTokPerSec} tok/s, bucket ${m.bucketTokPerSec} tok/s`,
    );
  }
  for (const x of g)
    console.log(`goal [${x.config}] ${x.goal}: ${x.value} (target ${x.target}) ${x.pass ? "PASS" : "FAIL"}`);
}

await main();
