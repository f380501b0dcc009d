/**
 * Gateway benchmark: the running OpenLoRA gateway (in-process Fastify on a free port,
 * real Postgres/Redis, a local Hardhat chain holding the clients' escrow) driven over HTTP
 * by many concurrent streaming clients, with requests spread Zipf(1.1) over N registered
 * adapters (N = 10, 1,000, 10,000), compared in the same run with the same load on a
 * single adapter. Reports tokens/s, client-side time to first token p50/p99, RSS and the
 * mean distinct adapters per engine step, for the tiny model and a SmolLM-135M-shaped one
 * (random weights, a byte-level BPE tokenizer without merges).
 *
 * Adapters are registered through the gateway's own store + registration code
 * (`AdapterStore.putLinked` + `app.registration.register`) with on-chain registration
 * skipped (10,000 ModelRegistry transactions would dominate the run). They are distinct
 * adapters (distinct lora_alpha, so distinct content hashes, decoded and slotted one by
 * one) built on a few distinct rank-16 weight files hard-linked on disk: 10,000 SmolLM
 * adapters would otherwise need 74 GB of disk.
 *
 *   npm run bench:gateway                 human table (progress on stderr)
 *   npm run bench:gateway -- --json       one JSON object on stdout
 *   options: --configs tiny,smollm  --adapters 10,1000,10000  --rounds N (default: 6 tiny, 4 SmolLM)  --quick (tiny, 10 and 1000)
 *            --clients-in-process (the HTTP clients on the gateway's thread, not their own: their
 *            work then shows in the event-loop delay)  --prefill mixed|separate (override the configs' mode)
 *            --no-slot-files (cold loads decode the PEFT files, GATEWAY_ADAPTER_SLOT_FILES=false)
 *            --step-trace (the 12 slowest requests' steps: kind of each, where the load landed, admission, ms;
 *            per arm, prefill and decode steps split: runtime prepare/run, copies, load-thread time and GC
 *            during each, the slowest prefill steps)  --step-trace-file PATH (also every step as JSON lines)
 *            --max-prefill-tokens N (GATEWAY_MAX_PREFILL_TOKENS: the per-step prefill budget, padded; 0 = none)
 *            --restart (after the measured slices: close the gateway, start it again on the same data and
 *            run one Zipf slice right away: `restart` in the JSON)  --no-hot-set (GATEWAY_HOT_SET=false: the
 *            restarted gateway's RAM tier starts empty instead of warming the saved hot set)
 */
import { createHash } from "node:crypto";
import { appendFileSync } from "node:fs";
import { access, link, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import { OPEN } from "@openledger/chain";
import { startLocalChain } from "@openledger/chain/testing";
import { createTestDatabase } from "@openledger/db/testing";
import { buildGateway, gatewayConfig } from "@openledger/gateway";
import { createLogger } from "@openledger/logger";
import {
  adapterBytes,
  baseWeightBytes,
  byteLevelBpeTokenizerJson,
  bytesToUnicode,
  generateBaseModel,
  generateRandomPeft,
  type LlamaConfig,
  SMOLLM_135M_CONFIG,
  slotFileName,
  TINY_CONFIG,
  writeBaseModelDir,
  writePeftAdapter,
} from "@openledger/model-runtime";
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from "@openledger/queue/testing";
import type { RequestTimings } from "@openledger/serving-core";
import type { RequestPhases } from "../apps/gateway/src/lib/request-phases.ts";
import { depositToEscrow } from "../apps/gateway/src/testing.ts";
import {
  type ClientRequest,
  type DriveLoad,
  type DriveRequest,
  drive,
  type LoadResult,
} from "./gateway-clients.ts";
import { loadAverage, mainThreadCpuMs } from "./peers-common.ts";

const args = process.argv.slice(2);
const JSON_OUT = args.includes("--json");
const QUICK = args.includes("--quick");
/** The bench's HTTP clients on the gateway's own thread (as before 2026-12-03) instead of a worker thread. */
const CLIENTS_IN_PROCESS = args.includes("--clients-in-process");
const argStr = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const CONFIGS = argStr("--configs", QUICK ? "tiny" : "tiny,smollm").split(",") as ("tiny" | "smollm")[];
const ADAPTER_COUNTS = argStr("--adapters", QUICK ? "10,1000" : "10,1000,10000")
  .split(",")
  .map(Number);
const RANK = 16;
const ZIPF_S = 1.1;
const ROUNDS_ARG = args.includes("--rounds") ? Number(argStr("--rounds", "4")) : undefined;
/**
 * Cold loads decode the PEFT files every time (GATEWAY_ADAPTER_SLOT_FILES=false), as before slot
 * files: the A side of their A/B.
 */
const NO_SLOT_FILES = args.includes("--no-slot-files");
/** Per-step prefill token budget (GATEWAY_MAX_PREFILL_TOKENS; 0 = the batch budget, 512) for an A/B of chunked prefill. */
const MAX_PREFILL_TOKENS = Number(argStr("--max-prefill-tokens", "0"));
/** A restart of the gateway after the measured slices, then one Zipf slice (see the header). */
const RESTART = args.includes("--restart");
/** GATEWAY_HOT_SET=false: the A side of the hot set's A/B on `--restart`. */
const NO_HOT_SET = args.includes("--no-hot-set");
if (!Number.isInteger(MAX_PREFILL_TOKENS) || MAX_PREFILL_TOKENS < 0) {
  throw new Error("--max-prefill-tokens must be an integer >= 0");
}
/** The slowest requests' steps from arrival to first token, each step's rows (prefill p / decode d), L = the load landed, A = admitted. */
const STEP_TRACE = args.includes("--step-trace") || args.includes("--step-trace-file");
/** --step-trace-file PATH: every traced step of every arm (StepRecord + load/GC overlap) as JSON lines. */
const STEP_TRACE_FILE = args.includes("--step-trace-file") ? argStr("--step-trace-file", "") : "";
/**
 * BENCH_GATEWAY_BASELINE=1: the request path as before 2026-12-05 (every admission that finds no
 * fresh escrow balance reads its own, Billing.shareBalanceReads = false; one admission statement
 * per request, Billing.batchAdmissions = false; one recording statement per request,
 * InferenceRecorder.batchRecords = false), the A side of an interleaved A/B of the fixes to
 * the outside-engine stalls (bench/RESULTS.md).
 */
const BASELINE = process.env.BENCH_GATEWAY_BASELINE === "1";
/** Overrides the configs' prefill mode (GATEWAY_PREFILL_MODE) for an A/B of the two. */
const PREFILL_ARG = args.includes("--prefill") ? argStr("--prefill", "") : undefined;
if (PREFILL_ARG !== undefined && PREFILL_ARG !== "mixed" && PREFILL_ARG !== "separate") {
  throw new Error("--prefill must be mixed or separate");
}

/**
 * Load per config. Tiny: a slice takes only seconds, so 6 interleaved slices of 4
 * requests per client keep one slow second of the shared machine from deciding the ratio.
 * SmolLM steps are ~100x slower on this CPU, so it has fewer clients; its request count is
 * sized for a steady state (each client runs 8 requests of 32 tokens per arm, in 4
 * interleaved slices of 2, so most of the run has every client in flight and the RAM tier
 * has turned over) while the whole bench stays around 10-15 minutes.
 */
const LOAD = {
  tiny: {
    clients: 64,
    requests: 1536,
    rounds: 6,
    maxTokens: 32,
    weightFiles: 64,
    slots: 65,
    ramBytes: 64 << 20,
    prefill: "mixed",
  },
  smollm: {
    clients: 16,
    requests: 128,
    rounds: 4,
    maxTokens: 32,
    weightFiles: 8,
    slots: 17,
    ramBytes: 512 << 20,
    prefill: "separate",
  },
} as const;

const log = (...a: unknown[]) => console.error("[bench:gateway]", ...a);

interface Run {
  config: "tiny" | "smollm";
  adapters: number;
  tokPerSec: number;
  singleAdapterTokPerSec: number;
  ratio: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  singleTtftP50Ms: number;
  singleTtftP99Ms: number;
  rssBytes: number;
  adapterRamBytes: number;
  meanDistinctAdaptersPerStep: number;
  meanBatchRows: number;
  requests: number;
  clients: number;
  maxTokens: number;
  memoryBoundTokPerSec?: number;
  memoryBoundRatio?: number;
  /** Same as memoryBoundRatio (the issue's name for it). */
  memTrafficBoundRatio?: number;
  /** Mean rows per engine step (batch occupancy), Zipf load and single-adapter baseline. */
  rowsPerStep: number;
  singleRowsPerStep: number;
  ramLoads: number;
  /** Cold loads (disk -> RAM) during the Zipf load = ramLoads. */
  coldLoads: number;
  slotMisses: number;
  /** Event-loop delay p99 / max during the Zipf load (a load on the main thread shows here). */
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
  singleEventLoopDelayP99Ms: number;
  /** Main-thread CPU (user + system) per generated token, µs, Zipf load and single-adapter baseline. */
  mainThreadCpuUsPerToken?: number;
  singleMainThreadCpuUsPerToken?: number;
  /** Where each arm's time to first token goes (see `breakdown`), Zipf load and single-adapter baseline. */
  ttftBreakdown: { zipf: Breakdown; single: Breakdown };
  /** Zipf requests whose TTFT exceeded 1.5x the single-adapter TTFT p99 (the aim's bound), by cause. */
  stalls: { count: number; byCause: Record<string, number> };
  /** The runtime thread's split of a step (outside / inside onnxruntime, runs, KV rebuilds), Zipf and single. */
  runtimePerStep: { zipf: RuntimeSplit; single: RuntimeSplit };
  /**
   * The Zipf warm-up slice (before the measured ones; the single arm's adapter is warmed the same
   * way): its requests met an adapter RAM tier holding nothing of the Zipf load, as after a restart.
   * Not part of the TTFT ratio; `ttftP99Ratio` is against the measured single-adapter p99.
   */
  /** `--restart`: one Zipf slice right after the gateway restarted (hot set warmed or not). */
  restart?: {
    hotSet: boolean;
    /** Adapters in RAM when the slice began (the hot set warmed so far). */
    ramAdaptersAtStart: number;
    requests: number;
    ttftP50Ms: number;
    ttftP99Ms: number;
    /** Against the single-adapter arm's TTFT p99 measured before the restart. */
    ttftP99Ratio: number;
    coldLoads: number;
  };
  coldStart: {
    requests: number;
    ttftP50Ms: number;
    ttftP99Ms: number;
    ttftP99Ratio: number;
    firstTokenStepsP99: number;
    coldLoads: number;
  };
  /** Wall time of the Zipf arm's cold loads (read, decode, slot layout on the load threads). */
  coldLoadMs: { count: number; p50: number; p99: number; max: number; fromSlotFiles: number };
}

/** --step-trace: one engine step as the engine and the runtime thread saw it. */
interface StepRecord {
  step: number;
  /** Rows: `<prefill>p<decode>d`. */
  kind: string;
  distinct: number;
  startedAt: number;
  /** The engine's time for the step (post, runtime thread, reply, commit). */
  ms: number;
  /** The runtime thread's split (StepTimings). */
  prepareMs: number;
  runMs: number;
  copies: number;
  /** Stack entries the step's runs read that no row uses (StepTimings.unusedAdapterReads). */
  unusedReads: number;
  /** Adapters written into device slots for this step (each a copy on the runtime thread before it runs). */
  slotWrites: number;
  /** Runtime-thread ms writing loaded adapters into slot-stack entries just before the step (StepTimings.slotWriteMs). */
  slotWriteMs: number;
  runs: number;
  rebuilt: boolean;
}

interface RuntimeSplit {
  prepareMsPerStep: number;
  runMsPerStep: number;
  runsPerStep: number;
  rebuildsPerStep: number;
  adapterCopiesPerStep: number;
  /** Stack entries read by the LoRA MatMuls that no row of the run uses (gaps in the slot ranges). */
  unusedAdapterReadsPerStep: number;
  /** Runtime-thread ms per step writing loaded adapters into their slot-stack entries (between steps). */
  slotWriteMsPerStep: number;
}

/** One request as both sides saw it: the client's times and the gateway's own (scheduler) timings. */
interface Joined extends ClientRequest {
  tier: RequestTimings["adapterTier"];
  /** Engine submit -> admission into the running batch (a cold adapter's load is in here). */
  queueMs: number;
  /** Admission -> first token sampled (the step that prefills the prompt, or several for a chunked one). */
  prefillMs: number;
  /** The gateway's TTFT (submit -> first token sampled). */
  serverTtftMs: number;
  /** Client TTFT minus the gateway's: HTTP, auth and the reservation before submit, and delivery of the first event after it. */
  outsideMs: number;
  /**
   * `outsideMs` split by the gateway's request-path marks (lib/request-phases.ts), ms: before the
   * route's hook (the client's send, connection, headers), auth, body (parse + validation), model
   * (lookup + tokenize), balance (escrow read or cache), reserve (the reservation statement), submit,
   * deliver (engine's first token -> first event written). Undefined for a request without marks.
   */
  phases?: Record<(typeof PHASE_NAMES)[number], number>;
  /** Scheduler steps from arrival to admission and to the first token (machine speed does not enter). */
  admitSteps: number;
  firstTokenSteps: number;
  /**
   * For a request that waited for its adapter's disk load (tier cold or loading on arrival): the
   * load it waited for, split into waiting for a load permit (arrival -> the loader called), the
   * load itself (loader called -> RAM), and the wait after it landed until admission, in ms and in
   * steps. Undefined for requests that found the adapter in RAM or a slot.
   */
  load?: { permitWaitMs: number; runMs: number; afterMs: number; afterSteps: number };
}

interface Breakdown {
  requests: number;
  /** Requests per adapter tier at arrival (slot, ram, loading, cold). */
  tiers: Record<string, number>;
  ttftP50Ms: number;
  ttftP99Ms: number;
  /** Client TTFT to the first event with text (p99): differs from TTFT when text is held back. */
  firstTextP99Ms: number;
  queueP50Ms: number;
  queueP99Ms: number;
  prefillP50Ms: number;
  prefillP99Ms: number;
  outsideP50Ms: number;
  outsideP99Ms: number;
  /**
   * Time per output token after the first, per request ((total - TTFT) / (tokens - 1), client
   * side), p50 / p99: what decode rows pay for prefill work sharing or interleaving their steps.
   */
  tpotP50Ms: number;
  tpotP99Ms: number;
  /** Steps from arrival to the first token: p50, p99, max. */
  firstTokenStepsP50: number;
  firstTokenStepsP99: number;
  firstTokenStepsMax: number;
  /** TTFT p99 of the requests whose adapter was in a slot on arrival, and of the others (RAM, loading, disk). */
  warmTtftP99Ms: number;
  coldTtftP99Ms: number;
  /**
   * Requests whose first text reached the client over 1 s after the engine's first token: text the
   * decoder held back (an incomplete or invalid UTF-8 run, special tokens), not a scheduling wait.
   */
  textHeldOver1s: number;
  /** p50 / p99 / max of each part of `outsideMs` (see Joined.phases), ms. */
  outsidePhases: Record<string, number[]>;
  /** Requests that waited for a disk load, and p50 / p99 / max of the parts of that wait (see Joined.load). */
  loadWaits: {
    requests: number;
    permitWaitMs: number[];
    runMs: number[];
    afterMs: number[];
    afterSteps: number[];
  };
}

// ---------------------------------------------------------------- helpers

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function breakdown(reqs: Joined[]): Breakdown {
  const col = (f: (r: Joined) => number) => reqs.map(f);
  const tiers: Record<string, number> = {};
  for (const r of reqs) tiers[r.tier] = (tiers[r.tier] ?? 0) + 1;
  const warm = reqs.filter((r) => r.tier === "slot" || r.tier === "base").map((r) => r.ttftMs);
  const cold = reqs.filter((r) => r.tier !== "slot" && r.tier !== "base").map((r) => r.ttftMs);
  const steps = col((r) => r.firstTokenSteps);
  const tpot = reqs
    .filter((r) => r.completionTokens > 1)
    .map((r) => (r.totalMs - r.ttftMs) / (r.completionTokens - 1));
  const round = (x: number) => Math.round(x);
  return {
    requests: reqs.length,
    tiers,
    ttftP50Ms: round(
      percentile(
        col((r) => r.ttftMs),
        50,
      ),
    ),
    ttftP99Ms: round(
      percentile(
        col((r) => r.ttftMs),
        99,
      ),
    ),
    firstTextP99Ms: round(
      percentile(
        col((r) => (r.firstTextMs < 0 ? r.totalMs : r.firstTextMs)),
        99,
      ),
    ),
    queueP50Ms: round(
      percentile(
        col((r) => r.queueMs),
        50,
      ),
    ),
    queueP99Ms: round(
      percentile(
        col((r) => r.queueMs),
        99,
      ),
    ),
    prefillP50Ms: round(
      percentile(
        col((r) => r.prefillMs),
        50,
      ),
    ),
    prefillP99Ms: round(
      percentile(
        col((r) => r.prefillMs),
        99,
      ),
    ),
    outsideP50Ms: round(
      percentile(
        col((r) => r.outsideMs),
        50,
      ),
    ),
    outsideP99Ms: round(
      percentile(
        col((r) => r.outsideMs),
        99,
      ),
    ),
    tpotP50Ms: Number(percentile(tpot, 50).toFixed(1)),
    tpotP99Ms: Number(percentile(tpot, 99).toFixed(1)),
    firstTokenStepsP50: percentile(steps, 50),
    firstTokenStepsP99: percentile(steps, 99),
    firstTokenStepsMax: Math.max(0, ...steps),
    warmTtftP99Ms: round(percentile(warm, 99)),
    coldTtftP99Ms: round(percentile(cold, 99)),
    textHeldOver1s: reqs.filter(
      (r) => (r.firstTextMs < 0 ? r.totalMs : r.firstTextMs) - r.serverTtftMs > 1000,
    ).length,
    loadWaits: loadWaits(reqs),
    outsidePhases: Object.fromEntries(
      PHASE_NAMES.map((ph) => {
        const xs = reqs.flatMap((r) => (r.phases ? [r.phases[ph]] : []));
        return [
          ph,
          [50, 99].map((q) => Math.round(percentile(xs, q))).concat(Math.round(Math.max(0, ...xs))),
        ];
      }),
    ),
  };
}

const PHASE_NAMES = ["client", "auth", "body", "model", "balance", "reserve", "submit", "deliver"] as const;

function loadWaits(reqs: Joined[]): Breakdown["loadWaits"] {
  const loads = reqs.flatMap((r) => (r.load ? [r.load] : []));
  const p = (xs: number[]) =>
    [50, 99].map((q) => Math.round(percentile(xs, q))).concat(Math.round(Math.max(0, ...xs)));
  return {
    requests: loads.length,
    permitWaitMs: p(loads.map((l) => l.permitWaitMs)),
    runMs: p(loads.map((l) => l.runMs)),
    afterMs: p(loads.map((l) => l.afterMs)),
    afterSteps: p(loads.map((l) => l.afterSteps)),
  };
}

/** The largest part of a slow request's TTFT: waiting for admission, the prefill, or outside the engine. */
function causeOf(r: Joined): string {
  const parts: [string, number][] = [
    [r.tier === "slot" ? "queue" : "adapter-load+queue", r.queueMs],
    ["prefill", r.prefillMs],
    ["outside-engine", r.outsideMs],
  ];
  parts.sort((x, y) => y[1] - x[1]);
  const top = parts[0]![0];
  if (top !== "outside-engine" || !r.phases) return top;
  const [phase] = Object.entries(r.phases).sort((x, y) => y[1] - x[1])[0]!;
  return `outside-engine:${phase}`;
}

function describeRequest(r: Joined): string {
  return (
    `${r.model} [${r.tier}] TTFT ${r.ttftMs.toFixed(0)} ms (first text ${r.firstTextMs.toFixed(0)}, total ${r.totalMs.toFixed(0)}): ` +
    `queue ${r.queueMs.toFixed(0)} ms / ${r.admitSteps} steps, prefill ${r.prefillMs.toFixed(0)} ms, ` +
    `first token at step +${r.firstTokenSteps}, outside the engine ${r.outsideMs.toFixed(0)} ms` +
    (r.phases
      ? ` (${Object.entries(r.phases)
          .map(([k, v]) => `${k} ${v.toFixed(0)}`)
          .join(", ")})`
      : "") +
    ", " +
    (r.load
      ? `load: permit wait ${r.load.permitWaitMs.toFixed(0)} ms, load ${r.load.runMs.toFixed(0)} ms, admitted ${r.load.afterMs.toFixed(0)} ms / ${r.load.afterSteps} steps after it landed, `
      : "") +
    `text ${JSON.stringify(r.head)}` +
    ((r as { debug?: string }).debug ? ` steps ${(r as { debug?: string }).debug}` : "")
  );
}

/** Deterministic PRNG (mulberry32): the same request sequence in every run. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Zipf(s) sampler over ranks 0..n-1 by inverse CDF. */
function zipf(n: number, s: number, rand: () => number) {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += 1 / (k + 1) ** s;
    cdf[k] = sum;
  }
  return () => {
    const u = rand() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** A byte-level BPE tokenizer.json covering the whole SmolLM vocab (ids past the bytes are
 *  multi-character tokens with no merges: encoding is per byte, every sampled id decodes). */
function smollmTokenizer(vocabSize: number) {
  const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
  const chars = bytesToUnicode();
  const vocab: Record<string, number> = {};
  specials.forEach((s, i) => {
    vocab[s] = i;
  });
  for (const ch of chars) vocab[ch] = Object.keys(vocab).length;
  // Ids past the bytes are strings of 2-3 printable ASCII characters: every sampled id then
  // decodes to valid UTF-8. (Two arbitrary byte symbols often decode to an incomplete UTF-8
  // sequence, which the route rightly holds back until its next bytes arrive; with random
  // weights some adapters then streamed nothing until the end, and TTFT measured the whole
  // request.)
  const printable = Array.from({ length: 94 }, (_, i) => String.fromCharCode(33 + i));
  for (let id = Object.keys(vocab).length, k = 0; id < vocabSize; k++) {
    const len = k < 94 * 94 ? 2 : 3;
    let n = len === 2 ? k : k - 94 * 94;
    let tok = "";
    for (let j = 0; j < len; j++) {
      tok += printable[n % 94]!;
      n = Math.floor(n / 94);
    }
    if (vocab[tok] === undefined) vocab[tok] = id++;
  }
  return {
    tokenizer: byteLevelBpeTokenizerJson({ specialTokens: specials, vocab, merges: [] }),
    tokenizerConfig: { eos_token: "<|endoftext|>", bos_token: null },
  };
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

// ---------------------------------------------------------------- load

/**
 * The clients run on their own thread (bench/gateway-clients.ts) unless `--clients-in-process`:
 * 64 streaming clients' fetch, stream reading and parsing on the gateway's thread would be part
 * of the event-loop delay the bench reports for the gateway.
 */
class Clients {
  #worker: Worker | null = null;
  #next = 0;
  #pending = new Map<number, { resolve: (r: LoadResult) => void; reject: (e: Error) => void }>();

  constructor(inProcess: boolean) {
    if (inProcess) return;
    this.#worker = new Worker(new URL("./gateway-clients-entry.cjs", import.meta.url));
    this.#worker.on("message", (m: { id: number; result?: LoadResult; error?: string }) => {
      const p = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      if (m.result) p?.resolve(m.result);
      else p?.reject(new Error(`client thread: ${m.error}`));
    });
    this.#worker.on("error", (err) => {
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    });
  }

  run(baseURL: string, keys: string[], load: DriveLoad, models: string[]): Promise<LoadResult> {
    if (!this.#worker) return drive(baseURL, keys, load, models);
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker!.postMessage({ id, baseURL, keys, load, models } satisfies DriveRequest);
    });
  }

  async close(): Promise<void> {
    await this.#worker?.terminate();
  }
}

// ---------------------------------------------------------------- main

/** The runtime thread's split of a slice's steps (summed from `StepTimings`), all zero. */
function emptyRuntimeSplit() {
  return {
    steps: 0,
    prepareMs: 0,
    runMs: 0,
    runs: 0,
    rebuilds: 0,
    adapterCopies: 0,
    unusedReads: 0,
    slotWriteMs: 0,
  };
}

async function benchConfig(name: "tiny" | "smollm", workDir: string, chainEnv: ChainEnv): Promise<Run[]> {
  const cfg: LlamaConfig = name === "tiny" ? TINY_CONFIG : SMOLLM_135M_CONFIG;
  const load = LOAD[name];
  const modelDir = join(workDir, `model-${name}`);
  log(`${name}: writing the base model (random weights)`);
  const base = generateBaseModel(cfg, 1);
  if (name === "smollm") {
    const t = smollmTokenizer(cfg.vocabSize);
    base.tokenizerJson = t.tokenizer;
    base.tokenizerConfig = t.tokenizerConfig;
  }
  await writeBaseModelDir(modelDir, base);

  const database = await createTestDatabase(`bench-gw-${name}`);
  const prefix = uniquePrefix(`bench-gw-${name}`);
  const config = gatewayConfig({
    DATABASE_URL: database.url,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: "warn",
    CHAIN_RPC_URL: chainEnv.rpcUrl,
    CHAIN_ADDRESSES_FILE: chainEnv.addressesFile,
    GATEWAY_MODEL_DIR: modelDir,
    GATEWAY_BASE_MODEL_ID: `bench-${name}`,
    GATEWAY_DATA_DIR: join(workDir, `store-${name}`),
    GATEWAY_CHAIN_REGISTRATION: "false",
    GATEWAY_SLOTS: String(load.slots),
    GATEWAY_MAX_RUNNING: "64",
    GATEWAY_PREFILL_MODE: PREFILL_ARG ?? load.prefill,
    GATEWAY_MAX_BATCH_TOKENS: "512",
    GATEWAY_MAX_PREFILL_TOKENS: String(MAX_PREFILL_TOKENS),
    GATEWAY_HOT_SET: String(!NO_HOT_SET),
    GATEWAY_MAX_ADAPTER_RANK: String(RANK),
    GATEWAY_ADAPTER_RAM_BYTES: String(load.ramBytes),
    GATEWAY_RATE_REQUESTS_PER_MIN: "0",
    GATEWAY_THREADS: "2",
    GATEWAY_ADAPTER_SLOT_FILES: String(!NO_SLOT_FILES),
  });
  // The service's log lines go to stderr with the progress: stdout holds only the table or, with
  // --json, the one JSON object (a warning under load, e.g. a failed renewal, used to land before it).
  const app = await buildGateway(config, {
    logger: createLogger({ name: "gateway", level: config.LOG_LEVEL, destination: process.stderr }),
  });
  if (BASELINE) {
    app.billing.shareBalanceReads = false;
    app.billing.batchAdmissions = false;
    app.inferences.batchRecords = false;
  }
  await app.listen({ port: 0, host: "127.0.0.1" });
  const addr = app.server.address();
  const baseURL = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  const keys: string[] = [];
  for (const a of chainEnv.accounts) keys.push((await app.apiKeys.create(a, "bench")).key);

  // Distinct weight files, then adapters = weight file x distinct lora_alpha.
  const weightFiles: {
    path: string;
    digest: Buffer;
    config: Record<string, unknown>;
    slotFile: string | undefined;
  }[] = [];
  const slotName = slotFileName(cfg, app.host.runtime.slotLayout);
  for (let w = 0; w < load.weightFiles; w++) {
    const peft = generateRandomPeft(cfg, { rank: RANK, seed: `bench-${name}-${w}`, strength: 0.3 });
    const dir = join(workDir, `peft-${name}-${w}`);
    await writePeftAdapter(dir, peft);
    // What the upload route does before storing an adapter: load it (validation), which lays it
    // out for the slots and writes its slot file. The adapters sharing these weights link it
    // (their slot files differ only by the scale, applied at load: slot-file.ts).
    await app.host.loadPool.load(dir);
    const slotFile = join(dir, slotName);
    weightFiles.push({
      path: join(dir, "adapter_model.safetensors"),
      digest: createHash("sha256").update(peft.safetensors).digest(),
      config: peft.adapterConfig as Record<string, unknown>,
      slotFile: (await access(slotFile).then(
        () => true,
        () => false,
      ))
        ? slotFile
        : undefined,
    });
  }
  let registered = 0;
  const register = async (upTo: number) => {
    const t = performance.now();
    const ids = Array.from({ length: upTo - registered }, (_, k) => registered + k);
    await pool(ids, 16, async (i) => {
      const wf = weightFiles[i % weightFiles.length]!;
      const alpha = RANK * 2 * (1 + Math.floor(i / weightFiles.length) / 100_000);
      const configBytes = Buffer.from(JSON.stringify({ ...wf.config, lora_alpha: alpha }));
      const hash = await app.catalog.store.putLinked(configBytes, wf.path, wf.digest);
      if (wf.slotFile) await link(wf.slotFile, join(app.catalog.store.dirOf(hash), slotName)).catch(() => {});
      await app.registration.register({
        id: `${name}-a${i}`,
        owner: chainEnv.accounts[0]!.toLowerCase(),
        contentHash: hash,
        priceIn: 1000n,
        priceOut: 2000n,
        datanetVersionIds: [],
        onChain: false,
      });
    });
    log(
      `${name}: registered ${upTo - registered} adapters in ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
    registered = upTo;
  };

  const host = app.host;
  // The gateway's own timings of every request (scheduler: submit, admission, first token, in ms
  // and in steps; the adapter's tier on arrival), joined with the client's by inference id.
  const served = new Map<string, { timings: RequestTimings; adapterId: string | null }>();
  // The request path's marks before the engine (and the first event's write), by inference id.
  const marks = new Map<string, RequestPhases>();
  app.requestPhases.hooks.onPhases = (id, phases) => {
    marks.set(id, phases);
  };
  const onFinished = host.hooks.onFinished;
  host.hooks.onFinished = (r) => {
    onFinished(r);
    served.set(r.id, { timings: r.timings, adapterId: r.adapterId });
  };
  // Every disk load: the adapter, when the loader was called (a load permit was free), when it
  // landed in RAM, and the scheduler's step then (a request's wait after its load, in steps).
  const loads = new Map<string, { startAt: number; endAt: number; endStep: number }[]>();
  const locator = host.hooks.locator;
  const loadingDirs = new Map<string, { adapterId: string; startAt: number }>();
  host.hooks.locator = {
    dirOf: (adapterId) => {
      const dir = locator.dirOf(adapterId);
      if (dir !== undefined) loadingDirs.set(dir, { adapterId, startAt: performance.now() });
      return dir;
    },
  };
  const loadOf = (adapterId: string, queuedAt: number, admittedAt: number) => {
    // The load this request waited for: the last one to land before its admission.
    let best: { startAt: number; endAt: number; endStep: number } | undefined;
    for (const l of loads.get(adapterId) ?? []) {
      if (l.endAt <= admittedAt + 1e-3 && l.endAt >= queuedAt && (!best || l.endAt > best.endAt)) best = l;
    }
    return best;
  };
  const joinTimings = (c: ClientRequest): Joined | undefined => {
    const s = served.get(c.id);
    served.delete(c.id);
    const m = marks.get(c.id);
    marks.delete(c.id);
    const t = s?.timings;
    if (t === undefined || t.admittedAt === undefined || t.firstTokenAt === undefined) return undefined;
    const serverTtftMs = t.firstTokenAt - t.queuedAt;
    const l =
      (t.adapterTier === "cold" || t.adapterTier === "loading") && s?.adapterId
        ? loadOf(s.adapterId, t.queuedAt, t.admittedAt)
        : undefined;
    const phases =
      m?.authedAt !== undefined &&
      m.handlerAt !== undefined &&
      m.foundAt !== undefined &&
      m.balanceAt !== undefined &&
      m.reservedAt !== undefined &&
      m.submittedAt !== undefined &&
      m.firstSentAt !== undefined
        ? {
            auth: m.authedAt - m.arrivedAt,
            body: m.handlerAt - m.authedAt,
            model: m.foundAt - m.handlerAt,
            balance: m.balanceAt - m.foundAt,
            reserve: m.reservedAt - m.balanceAt,
            // submittedAt is taken just after the scheduler's queuedAt: the larger of the two.
            submit: Math.max(0, t.queuedAt - m.reservedAt),
            deliver: m.firstSentAt - t.firstTokenAt,
            client:
              c.ttftMs -
              serverTtftMs -
              (Math.max(t.queuedAt, m.reservedAt) - m.arrivedAt) -
              (m.firstSentAt - t.firstTokenAt),
          }
        : undefined;
    return {
      ...c,
      ...(phases ? { phases } : {}),
      tier: t.adapterTier,
      queueMs: t.admittedAt - t.queuedAt,
      prefillMs: t.firstTokenAt - t.admittedAt,
      serverTtftMs,
      outsideMs: c.ttftMs - serverTtftMs,
      admitSteps: (t.admittedStep ?? t.queuedStep) - t.queuedStep,
      firstTokenSteps: (t.firstTokenStep ?? t.queuedStep) - t.queuedStep,
      ...(l
        ? {
            load: {
              permitWaitMs: Math.max(0, l.startAt - t.queuedAt),
              runMs: l.endAt - Math.max(l.startAt, t.queuedAt),
              afterMs: t.admittedAt - l.endAt,
              afterSteps: (t.admittedStep ?? l.endStep) - l.endStep,
            },
            ...(STEP_TRACE
              ? {
                  debug: Array.from(
                    { length: (t.firstTokenStep ?? 0) - t.queuedStep + 1 },
                    (_, k) =>
                      `${t.queuedStep + k}:${stepKinds.get(t.queuedStep + k)}${t.queuedStep + k === l.endStep ? "L" : ""}${t.queuedStep + k === t.admittedStep ? "A" : ""}(${stepRecords.get(t.queuedStep + k)?.ms.toFixed(0) ?? "-"})`,
                  ).join(" "),
                }
              : {}),
          }
        : {}),
    };
  };
  // The runtime thread's own split of each step: outside onnxruntime (feeds: KV copies, the LoRA
  // stacks) vs inside it, session runs, KV rebuilds.
  const rt = emptyRuntimeSplit();
  const onStep = host.hooks.onStep;
  const stepKinds = new Map<number, string>();
  // --step-trace: every step's own record (see StepRecord), and the main thread's GC pauses.
  const stepRecords = new Map<number, StepRecord>();
  const gcPauses: { at: number; ms: number }[] = [];
  const gcObserver = STEP_TRACE
    ? new PerformanceObserver((list) => {
        for (const e of list.getEntries()) gcPauses.push({ at: e.startTime, ms: e.duration });
      })
    : undefined;
  gcObserver?.observe({ entryTypes: ["gc"] });
  let slotWritesSeen = 0;
  host.hooks.onStep = (st) => {
    onStep(st);
    const t = host.runtime.lastTimings;
    if (STEP_TRACE) {
      // Slot writes since the last step: planned with this step, the runtime thread copies each
      // adapter into its slot entry before it runs the step (outside prepareMs).
      const misses = host.cache.metrics().slots.misses;
      const slotWrites = misses - slotWritesSeen;
      slotWritesSeen = misses;
      stepKinds.set(st.step, `${st.prefillRows}p${st.decodeRows}d`);
      stepRecords.set(st.step, {
        step: st.step,
        kind: `${st.prefillRows}p${st.decodeRows}d`,
        distinct: st.distinctAdapters,
        startedAt: st.startedAt,
        ms: st.durationMs,
        prepareMs: t.prepareMs,
        runMs: t.runMs,
        copies: t.adapterCopies,
        unusedReads: t.unusedAdapterReads,
        slotWrites,
        slotWriteMs: t.slotWriteMs,
        runs: t.runs,
        rebuilt: t.kvRebuilt,
      });
    }
    rt.steps += 1;
    rt.prepareMs += t.prepareMs;
    rt.runMs += t.runMs;
    rt.runs += t.runs;
    rt.rebuilds += t.kvRebuilt ? 1 : 0;
    rt.adapterCopies += t.adapterCopies;
    rt.unusedReads += t.unusedAdapterReads;
    rt.slotWriteMs += t.slotWriteMs;
  };
  // Wall time of each cold load (disk read, decode and slot layout on the load threads).
  const loadMs: number[] = [];
  const loadSpans: { startAt: number; endAt: number }[] = [];
  const poolLoad = host.loadPool.load.bind(host.loadPool);
  host.loadPool.load = async (dir) => {
    const t = performance.now();
    try {
      return await poolLoad(dir);
    } finally {
      const endAt = performance.now();
      loadMs.push(endAt - t);
      if (STEP_TRACE) loadSpans.push({ startAt: t, endAt });
      const started = loadingDirs.get(dir);
      loadingDirs.delete(dir);
      if (started) {
        const list = loads.get(started.adapterId) ?? [];
        list.push({ startAt: started.startAt, endAt, endStep: host.scheduler.stats().step });
        loads.set(started.adapterId, list);
      }
    }
  };
  const clients = new Clients(CLIENTS_IN_PROCESS);
  const stepTotals = () => host.engine.metrics().totals;
  let peakRss = 0;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 200);
  interface Acc {
    tokens: number;
    seconds: number;
    ttfts: number[];
    steps: number;
    distinct: number;
    rows: number;
    loads: number;
    slotMisses: number;
    rss: number;
    loopP99: number;
    loopMax: number;
    /** Main-thread CPU ms during the slices (undefined off Linux). */
    mainCpuMs: number | undefined;
    reqs: Joined[];
    loadMs: number[];
    /** Cold loads read from slot files (the rest decoded the PEFT files). */
    slotFileLoads: number;
    rt: typeof rt;
    /** Scheduler step ids [from, to) of each slice (--step-trace reads their StepRecords). */
    stepRanges: [number, number][];
  }
  const empty = (): Acc => ({
    mainCpuMs: 0,
    loopP99: 0,
    loopMax: 0,
    tokens: 0,
    seconds: 0,
    ttfts: [],
    steps: 0,
    distinct: 0,
    rows: 0,
    loads: 0,
    slotMisses: 0,
    rss: 0,
    reqs: [],
    loadMs: [],
    slotFileLoads: 0,
    rt: emptyRuntimeSplit(),
    stepRanges: [],
  });
  /** One slice of a load (requests offset..offset+count), added to `acc`. */
  const slice = async (acc: Acc, pick: (i: number) => string, offset: number, count: number) => {
    const before = stepTotals();
    const schedBefore = host.scheduler.stats();
    const cacheBefore = host.cache.metrics();
    peakRss = process.memoryUsage().rss;
    const loop = monitorEventLoopDelay({ resolution: 5 });
    const cpu0 = mainThreadCpuMs();
    loop.enable();
    const models = Array.from({ length: count }, (_, i) => pick(offset + i));
    loadMs.length = 0;
    const rt0 = { ...rt };
    const slotFileLoads0 = host.loadPool.slotFileLoads;
    const r = await clients.run(baseURL, keys, { ...load, requests: count }, models);
    acc.loadMs.push(...loadMs);
    acc.slotFileLoads += host.loadPool.slotFileLoads - slotFileLoads0;
    for (const k of Object.keys(rt) as (keyof typeof rt)[]) acc.rt[k] += rt[k] - rt0[k];
    loop.disable();
    const cpu1 = mainThreadCpuMs();
    acc.mainCpuMs = cpu0 !== undefined && cpu1 !== undefined ? acc.mainCpuMs! + (cpu1 - cpu0) : undefined;
    acc.loopP99 = Math.max(acc.loopP99, loop.percentile(99) / 1e6);
    acc.loopMax = Math.max(acc.loopMax, loop.max / 1e6);
    const after = stepTotals();
    const schedAfter = host.scheduler.stats();
    const cacheAfter = host.cache.metrics();
    acc.stepRanges.push([schedBefore.step + 1, schedAfter.step + 1]);
    if (r.errors) throw new Error(`${r.errors} requests failed: ${r.failures.join("; ")}`);
    log(
      `  slice: ${r.tokens} tokens in ${r.seconds.toFixed(1)} s, ${after.steps - before.steps} steps, ` +
        `RAM loads ${cacheAfter.ram.loads - cacheBefore.ram.loads}, slot drains ${schedAfter.drains - schedBefore.drains}, ` +
        `preemptions ${schedAfter.preemptions - schedBefore.preemptions}; slowest TTFT ${r.slow
          .map((x) => `${x.model} ${x.ttftMs.toFixed(0)}/${x.totalMs.toFixed(0)} ms`)
          .join(", ")}`,
    );
    acc.tokens += r.tokens;
    acc.seconds += r.seconds;
    acc.ttfts.push(...r.ttfts);
    for (const c of r.requests) {
      const j = joinTimings(c);
      if (j) acc.reqs.push(j);
    }
    acc.steps += after.steps - before.steps;
    acc.distinct += after.distinctAdapters - before.distinctAdapters;
    acc.rows += after.rows - before.rows;
    acc.loads += cacheAfter.ram.loads - cacheBefore.ram.loads;
    acc.slotMisses += cacheAfter.slots.misses - cacheBefore.slots.misses;
    acc.rss = Math.max(acc.rss, peakRss, process.memoryUsage().rss);
  };
  /** --step-trace: the arm's prefill and decode steps, where their time went, and the slowest prefill steps. */
  const traceSteps = (label: string, acc: Acc) => {
    const recs: (StepRecord & { loadMs: number; landed: number; gcMs: number; gapMs: number })[] = [];
    for (const [from, to] of acc.stepRanges) {
      let prevEnd: number | undefined;
      for (let id = from; id < to; id++) {
        const r = stepRecords.get(id);
        if (r === undefined) continue;
        const end = r.startedAt + r.ms;
        const overlap = (a: number, b: number) => Math.max(0, Math.min(b, end) - Math.max(a, r.startedAt));
        recs.push({
          ...r,
          loadMs: loadSpans.reduce((n, l) => n + overlap(l.startAt, l.endAt), 0),
          landed: loadSpans.filter((l) => l.endAt >= r.startedAt && l.endAt < end).length,
          gcMs: gcPauses.reduce((n, g) => n + overlap(g.at, g.at + g.ms), 0),
          gapMs: prevEnd === undefined ? 0 : r.startedAt - prevEnd,
        });
        prevEnd = end;
      }
    }
    if (STEP_TRACE_FILE)
      appendFileSync(STEP_TRACE_FILE, recs.map((r) => `${JSON.stringify({ arm: label, ...r })}\n`).join(""));
    const fmt = (xs: number[]) =>
      [50, 99].map((q) => percentile(xs, q).toFixed(1)).join("/") + `/${Math.max(0, ...xs).toFixed(1)}`;
    for (const [kind, sel] of [
      ["prefill", (r: StepRecord) => !r.kind.startsWith("0p")],
      ["decode", (r: StepRecord) => r.kind.startsWith("0p")],
    ] as const) {
      const xs = recs.filter(sel);
      log(
        `${name} ${label}: ${xs.length} ${kind} steps p50/p99/max: step ${fmt(xs.map((r) => r.ms))} ms = ` +
          `prepare ${fmt(xs.map((r) => r.prepareMs))} + run ${fmt(xs.map((r) => r.runMs))} + ` +
          `outside the runtime ${fmt(xs.map((r) => r.ms - r.prepareMs - r.runMs))} ms; slot writes ${fmt(xs.map((r) => r.slotWrites))} taking ${fmt(xs.map((r) => r.slotWriteMs))} ms (sum ${xs.reduce((n, r) => n + r.slotWriteMs, 0).toFixed(0)}), copies ${fmt(xs.map((r) => r.copies))}, ` +
          `distinct ${fmt(xs.map((r) => r.distinct))}, load-thread ms during it ${fmt(xs.map((r) => r.loadMs))}, ` +
          `loads landed ${fmt(xs.map((r) => r.landed))}, main GC ms ${fmt(xs.map((r) => r.gcMs))}, gap before ${fmt(xs.map((r) => r.gapMs))} ms`,
      );
    }
    for (const r of recs
      .filter((x) => !x.kind.startsWith("0p"))
      .sort((x, y) => y.ms - x.ms)
      .slice(0, 6)) {
      log(
        `  slow step ${r.step} ${r.kind} ${r.distinct} adapters: ${r.ms.toFixed(0)} ms (prepare ${r.prepareMs.toFixed(1)}, run ${r.runMs.toFixed(1)}, ` +
          `${r.runs} runs${r.rebuilt ? ", KV rebuilt" : ""}, ${r.copies} copies, ${r.unusedReads} unused reads, ${r.slotWrites} slot writes taking ${r.slotWriteMs.toFixed(1)} ms), load-thread ms ${r.loadMs.toFixed(0)}, ` +
          `${r.landed} loads landed, main GC ${r.gcMs.toFixed(1)} ms, gap before ${r.gapMs.toFixed(1)} ms`,
      );
    }
  };
  const summary = (label: string, acc: Acc) => {
    const out = {
      tokPerSec: acc.tokens / acc.seconds,
      p50: percentile(acc.ttfts, 50),
      p99: percentile(acc.ttfts, 99),
      distinct: acc.steps ? acc.distinct / acc.steps : 0,
      rows: acc.steps ? acc.rows / acc.steps : 0,
      rss: acc.rss,
      ram: host.cache.metrics().ram.bytesInUse,
      loads: acc.loads,
      slotMisses: acc.slotMisses,
      loopP99: acc.loopP99,
      loopMax: acc.loopMax,
      mainCpuUsPerToken: acc.mainCpuMs !== undefined ? (acc.mainCpuMs * 1000) / acc.tokens : undefined,
      breakdown: breakdown(acc.reqs),
      runtime: {
        prepareMsPerStep: Number((acc.rt.prepareMs / Math.max(1, acc.rt.steps)).toFixed(1)),
        runMsPerStep: Number((acc.rt.runMs / Math.max(1, acc.rt.steps)).toFixed(1)),
        runsPerStep: Number((acc.rt.runs / Math.max(1, acc.rt.steps)).toFixed(2)),
        rebuildsPerStep: Number((acc.rt.rebuilds / Math.max(1, acc.rt.steps)).toFixed(2)),
        adapterCopiesPerStep: Number((acc.rt.adapterCopies / Math.max(1, acc.rt.steps)).toFixed(2)),
        unusedAdapterReadsPerStep: Number((acc.rt.unusedReads / Math.max(1, acc.rt.steps)).toFixed(2)),
        slotWriteMsPerStep: Number((acc.rt.slotWriteMs / Math.max(1, acc.rt.steps)).toFixed(2)),
      },
      coldLoadMs: {
        count: acc.loadMs.length,
        p50: Math.round(percentile(acc.loadMs, 50)),
        p99: Math.round(percentile(acc.loadMs, 99)),
        max: Math.round(Math.max(0, ...acc.loadMs)),
        fromSlotFiles: acc.slotFileLoads,
      },
    };
    const b = out.breakdown;
    log(`${name} ${label}: runtime thread per step ${JSON.stringify(out.runtime)}`);
    log(
      `${name} ${label}: TTFT p50/p99 ${b.ttftP50Ms}/${b.ttftP99Ms} ms (first text p99 ${b.firstTextP99Ms}); ` +
        `queue ${b.queueP50Ms}/${b.queueP99Ms}, prefill ${b.prefillP50Ms}/${b.prefillP99Ms}, outside the engine ${b.outsideP50Ms}/${b.outsideP99Ms} ms; ` +
        `steps to first token p50/p99/max ${b.firstTokenStepsP50}/${b.firstTokenStepsP99}/${b.firstTokenStepsMax}; ` +
        `time per output token p50/p99 ${b.tpotP50Ms}/${b.tpotP99Ms} ms; ` +
        `tiers ${JSON.stringify(b.tiers)}, TTFT p99 warm ${b.warmTtftP99Ms} / cold ${b.coldTtftP99Ms} ms, ` +
        `${b.textHeldOver1s} with text held back > 1 s; ` +
        `outside the engine by phase p50/p99/max ${Object.entries(b.outsidePhases)
          .map(([k, v]) => `${k} ${v.join("/")}`)
          .join(", ")} ms; ` +
        `${b.loadWaits.requests} waited for a load: permit wait p50/p99/max ${b.loadWaits.permitWaitMs.join("/")} ms, ` +
        `load ${b.loadWaits.runMs.join("/")} ms, admitted after it landed ${b.loadWaits.afterMs.join("/")} ms = ${b.loadWaits.afterSteps.join("/")} steps; ` +
        `${acc.loadMs.length} cold loads (${acc.slotFileLoads} from slot files) p50/p99/max ${percentile(acc.loadMs, 50).toFixed(0)}/${percentile(acc.loadMs, 99).toFixed(0)}/${Math.max(0, ...acc.loadMs).toFixed(0)} ms`,
    );
    for (const r of [...acc.reqs].sort((x, y) => y.ttftMs - x.ttftMs).slice(0, STEP_TRACE ? 12 : 3))
      log(`  slow: ${describeRequest(r)}`);
    if (STEP_TRACE) traceSteps(label, acc);
    log(
      `${name} ${label}: ${acc.tokens} tokens in ${acc.seconds.toFixed(1)} s = ${out.tokPerSec.toFixed(0)} tok/s, ` +
        `TTFT p50 ${out.p50.toFixed(0)} ms p99 ${out.p99.toFixed(0)} ms, distinct/step ${out.distinct.toFixed(1)}, ` +
        `rows/step ${out.rows.toFixed(1)}, RAM loads ${out.loads}, event-loop delay p99 ${out.loopP99.toFixed(0)} ms max ${out.loopMax.toFixed(0)} ms, ` +
        `main-thread CPU ${out.mainCpuUsPerToken?.toFixed(0) ?? "?"} µs/token`,
    );
    return out;
  };

  const runs: Run[] = [];
  let appClosed = false;
  try {
    await register(Math.max(...ADAPTER_COUNTS.slice(0, 1), 1));
    // Warm-up: session, allocator and the first adapter's slot.
    await clients.run(baseURL, keys, { clients: 4, requests: 8, maxTokens: 4 }, Array(8).fill(`${name}-a0`));
    const adapterB = adapterBytes(cfg, RANK, ["q_proj", "k_proj", "v_proj", "o_proj"]);
    const baseB = baseWeightBytes(cfg);
    for (const n of ADAPTER_COUNTS) {
      if (registered < n) await register(n);
      const rand = rng(12345);
      const z = zipf(n, ZIPF_S, rand);
      const picks = Array.from({ length: load.requests }, () => `${name}-a${z()}`);
      // The machine is shared and its load swings within minutes: the single-adapter
      // baseline and the Zipf load run interleaved in `rounds` slices, each summed.
      const accSingle = empty();
      const accMulti = empty();
      const rounds = ROUNDS_ARG ?? load.rounds;
      const per = Math.ceil(load.requests / rounds);
      // Both arms are measured warm: the single arm's adapter was warmed above; the Zipf arm gets
      // one slice of the same distribution (another seed, so not the measured requests) first,
      // which fills the RAM tier the way a running gateway's is. (Before 2026-12-04 its first
      // measured slice met an empty tier, which the single arm never did.) That slice is reported
      // on its own as `coldStart`.
      const accCold = empty();
      const zWarm = zipf(n, ZIPF_S, rng(777));
      const warmPicks = Array.from({ length: per }, () => `${name}-a${zWarm()}`);
      log(`${name} N=${n}: Zipf warm-up slice (cold start)`);
      await slice(accCold, (i) => warmPicks[i]!, 0, per);
      for (let r = 0; r < rounds; r++) {
        const count = Math.min(per, load.requests - r * per);
        await slice(accSingle, () => `${name}-a0`, r * per, count);
        await slice(accMulti, (i) => picks[i]!, r * per, count);
      }
      const single = summary(`single adapter (N=${n} registered)`, accSingle);
      const multi = summary(`N=${n} Zipf(${ZIPF_S})`, accMulti);
      const cold = summary(`N=${n} Zipf(${ZIPF_S}) cold start (warm-up slice)`, accCold);
      const stallBound = 1.5 * single.breakdown.ttftP99Ms;
      const stalled = accMulti.reqs.filter((r) => r.ttftMs > stallBound);
      const byCause: Record<string, number> = {};
      for (const r of stalled) byCause[causeOf(r)] = (byCause[causeOf(r)] ?? 0) + 1;
      log(
        `${name} N=${n}: ${stalled.length} Zipf requests over 1.5x single TTFT p99 (${stallBound.toFixed(0)} ms): ${JSON.stringify(byCause)}`,
      );
      const run: Run = {
        config: name,
        adapters: n,
        tokPerSec: Math.round(multi.tokPerSec),
        singleAdapterTokPerSec: Math.round(single.tokPerSec),
        ratio: Number((multi.tokPerSec / single.tokPerSec).toFixed(3)),
        ttftP50Ms: Math.round(multi.p50),
        ttftP99Ms: Math.round(multi.p99),
        singleTtftP50Ms: Math.round(single.p50),
        singleTtftP99Ms: Math.round(single.p99),
        rssBytes: multi.rss,
        adapterRamBytes: multi.ram,
        meanDistinctAdaptersPerStep: Number(multi.distinct.toFixed(2)),
        meanBatchRows: Number(multi.rows.toFixed(1)),
        requests: load.requests,
        clients: load.clients,
        maxTokens: load.maxTokens,
        rowsPerStep: Number(multi.rows.toFixed(1)),
        singleRowsPerStep: Number(single.rows.toFixed(1)),
        ramLoads: multi.loads,
        coldLoads: multi.loads,
        slotMisses: multi.slotMisses,
        eventLoopDelayP99Ms: Number(multi.loopP99.toFixed(1)),
        eventLoopDelayMaxMs: Number(multi.loopMax.toFixed(1)),
        singleEventLoopDelayP99Ms: Number(single.loopP99.toFixed(1)),
        ttftBreakdown: { zipf: multi.breakdown, single: single.breakdown },
        stalls: { count: stalled.length, byCause },
        coldLoadMs: multi.coldLoadMs,
        coldStart: {
          requests: cold.breakdown.requests,
          ttftP50Ms: Math.round(cold.p50),
          ttftP99Ms: Math.round(cold.p99),
          ttftP99Ratio: Number((cold.p99 / single.p99).toFixed(2)),
          firstTokenStepsP99: cold.breakdown.firstTokenStepsP99,
          coldLoads: cold.loads,
        },
        runtimePerStep: { zipf: multi.runtime, single: single.runtime },
        ...(multi.mainCpuUsPerToken !== undefined && single.mainCpuUsPerToken !== undefined
          ? {
              mainThreadCpuUsPerToken: Math.round(multi.mainCpuUsPerToken),
              singleMainThreadCpuUsPerToken: Math.round(single.mainCpuUsPerToken),
            }
          : {}),
      };
      if (name === "smollm") {
        // Memory-traffic bound (model-runtime issue), taking the single-adapter run (1 adapter
        // read per step) as the reference: single * (base + 1 a) / (base + d a).
        const bound = (single.tokPerSec * (baseB + adapterB)) / (baseB + multi.distinct * adapterB);
        run.memoryBoundTokPerSec = Math.round(bound);
        run.memoryBoundRatio = Number((multi.tokPerSec / bound).toFixed(3));
        run.memTrafficBoundRatio = run.memoryBoundRatio;
      }
      runs.push(run);
    }
    const last = runs.at(-1);
    if (RESTART && last !== undefined) {
      // A restart: close (the hot set is saved), start again on the same database and store, the
      // session warm-up as at the first start, then one Zipf slice right away (another seed).
      appClosed = true;
      await app.close();
      const again = await buildGateway(config, {
        logger: createLogger({ name: "gateway", level: config.LOG_LEVEL, destination: process.stderr }),
      });
      try {
        await again.listen({ port: 0, host: "127.0.0.1" });
        const a = again.server.address();
        const url = `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`;
        await clients.run(url, keys, { clients: 4, requests: 8, maxTokens: 4 }, Array(8).fill(`${name}-a0`));
        const n = last.adapters;
        const zr = zipf(n, ZIPF_S, rng(4242));
        const count = Math.ceil(load.requests / (ROUNDS_ARG ?? load.rounds));
        const ram0 = again.host.cache.metrics().ram;
        const r = await clients.run(
          url,
          keys,
          { ...load, requests: count },
          Array.from({ length: count }, () => `${name}-a${zr()}`),
        );
        if (r.errors)
          throw new Error(`${r.errors} requests failed after the restart: ${r.failures.join("; ")}`);
        const p99 = percentile(r.ttfts, 99);
        last.restart = {
          hotSet: !NO_HOT_SET,
          ramAdaptersAtStart: ram0.entries,
          requests: count,
          ttftP50Ms: Math.round(percentile(r.ttfts, 50)),
          ttftP99Ms: Math.round(p99),
          ttftP99Ratio: Number((p99 / last.singleTtftP99Ms).toFixed(2)),
          coldLoads: again.host.cache.metrics().ram.loads - ram0.loads,
        };
        log(`${name} N=${n} after a restart: ${JSON.stringify(last.restart)}`);
      } finally {
        await again.close();
      }
    }
  } finally {
    gcObserver?.disconnect();
    clearInterval(sampler);
    await clients.close();
    if (!appClosed) await app.close();
    await database.drop();
    await deletePrefix(prefix);
  }
  return runs;
}

interface ChainEnv {
  rpcUrl: string;
  addressesFile: string;
  accounts: string[];
}

async function main() {
  const loadAtStart = loadAverage();
  const workDir = await mkdtemp(join(tmpdir(), "bench-gateway-"));
  log("starting a local chain and funding the clients' escrow");
  const addressesFile = join(workDir, "addresses.json");
  const chain = await startLocalChain({ writeAddresses: addressesFile });
  const accounts: string[] = [];
  try {
    for (const user of chain.accounts.users.slice(0, 4)) {
      await depositToEscrow(chain, user, 100_000n * OPEN);
      accounts.push(user.address);
    }
    const runs: Run[] = [];
    for (const name of CONFIGS) {
      runs.push(...(await benchConfig(name, workDir, { rpcUrl: chain.rpcUrl, addressesFile, accounts })));
    }
    const meta = {
      zipfS: ZIPF_S,
      rank: RANK,
      loads: Object.fromEntries(CONFIGS.map((c) => [c, LOAD[c]])),
      chainRegistration: "skipped for the benchmark's adapters (Postgres + disk store only)",
      loadAverage: { start: loadAtStart, end: loadAverage() },
      clients: CLIENTS_IN_PROCESS ? "on the gateway's thread" : "on their own worker thread",
      slotFiles: !NO_SLOT_FILES,
      prefillMode: PREFILL_ARG ?? "per config (loads)",
      maxPrefillTokens: MAX_PREFILL_TOKENS,
      hotSet: !NO_HOT_SET,
      requestPath: BASELINE ? "baseline (BENCH_GATEWAY_BASELINE=1)" : "current",
      cpus: (await readFile("/proc/cpuinfo", "utf8").catch(() => ""))
        .split("\n")
        .filter((l) => l.startsWith("processor")).length,
    };
    if (JSON_OUT) {
      process.stdout.write(`${JSON.stringify({ runs, meta })}\n`);
    } else {
      const header = [
        "config",
        "adapters",
        "tok/s",
        "single tok/s",
        "ratio",
        "TTFT p50/p99 ms",
        "single TTFT p50/p99",
        "distinct/step",
        "rows/step (single)",
        "loop delay p99 ms",
        "RSS MB",
        "mem-bound ratio",
      ];
      console.log(header.join(" | "));
      for (const r of runs) {
        console.log(
          [
            r.config,
            r.adapters,
            r.tokPerSec,
            r.singleAdapterTokPerSec,
            r.ratio,
            `${r.ttftP50Ms}/${r.ttftP99Ms}`,
            `${r.singleTtftP50Ms}/${r.singleTtftP99Ms}`,
            r.meanDistinctAdaptersPerStep,
            `${r.rowsPerStep} (${r.singleRowsPerStep})`,
            r.eventLoopDelayP99Ms,
            Math.round(r.rssBytes / 2 ** 20),
            r.memoryBoundRatio ?? "-",
          ].join(" | "),
        );
      }
    }
  } finally {
    await chain.stop();
    await rm(workDir, { recursive: true, force: true });
  }
}

await main();
