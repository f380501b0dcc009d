// bench:peers, decode and RSS: our ONNX runtime vs llama.cpp (node-llama-cpp) on the same weights.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  argmax,
  generateBaseModel,
  generateRandomPeft,
  loadPeftAdapter,
  SMOLLM_135M_CONFIG,
  type StepRow,
  type StepRuntime,
  type WeightFormat,
  WorkerRuntime,
  writeBaseModelDir,
  writeLoraGguf,
  writeModelGguf,
  writePeftAdapter,
} from "@openledger/model-runtime";
import {
  getLlama,
  type Llama,
  type LlamaContext,
  LlamaLogLevel,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { type DecodeResult, median, type RssResult, round } from "./peers-common.ts";

/** Prompt tokens per row before the timed steps, unless `--context` asks for longer ones. */
const PROMPT = 8;
const RANK = 16;
const ADAPTERS = 8;
const CONFIG = SMOLLM_135M_CONFIG;

export interface ModelFiles {
  /** HF directory: config.json + model.safetensors (f32) */
  modelDir: string;
  gguf: Record<"f32" | "q8_0" | "q4_0", string>;
  adapterDirs: string[];
  adapterGgufs: string[];
}

export async function prepareModelFiles(tmp: string, log: (m: string) => void): Promise<ModelFiles> {
  log("generating a SmolLM-135M-shaped model (random f32 weights) and 8 rank-16 q/k/v/o adapters");
  const model = generateBaseModel(CONFIG, 1);
  const modelDir = join(tmp, "model");
  await writeBaseModelDir(modelDir, model);
  const gguf = {
    f32: join(tmp, "model-f32.gguf"),
    q8_0: join(tmp, "model-q8_0.gguf"),
    q4_0: join(tmp, "model-q4_0.gguf"),
  };
  log("writing GGUF files (F32, Q8_0, Q4_0)");
  await writeModelGguf(gguf.f32, model, { type: "F32" });
  await writeModelGguf(gguf.q8_0, model, { type: "Q8_0" });
  await writeModelGguf(gguf.q4_0, model, { type: "Q4_0" });
  const adapterDirs: string[] = [];
  const adapterGgufs: string[] = [];
  for (let i = 0; i < ADAPTERS; i++) {
    const dir = join(tmp, `adapter-${i}`);
    await writePeftAdapter(dir, generateRandomPeft(CONFIG, { rank: RANK, seed: `peer-${i}` }));
    const path = join(tmp, `adapter-${i}.gguf`);
    await writeLoraGguf(path, CONFIG, await loadPeftAdapter(CONFIG, dir));
    adapterDirs.push(dir);
    adapterGgufs.push(path);
  }
  return { modelDir, gguf, adapterDirs, adapterGgufs };
}

/** The prompt of row i, `length` tokens (deterministic, printable-ish ids). */
const promptOf = (i: number, length: number): number[] =>
  Array.from({ length }, (_, t) => 32 + ((i * 31 + t * 13) % 90));

/**
 * One timed run: tokens/s, and the process's CPU time per token over the same steps (all
 * threads: a spinning thread counts, a preempted one does not, so without spinning it hardly
 * depends on the machine's load).
 */
interface Measured {
  tokPerS: number;
  cpuMsPerToken: number;
}

/** Times `steps` calls of `step`, each producing `tokens` tokens. */
async function timed(steps: number, tokens: number, step: () => Promise<unknown>): Promise<Measured> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) await step();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return {
    tokPerS: (tokens * steps * 1000) / ms,
    cpuMsPerToken: (cpu.user + cpu.system) / 1000 / (tokens * steps),
  };
}

interface Side {
  /** Prefill (untimed) then `steps` timed greedy decode steps; returns tokens/s. */
  run(steps: number): Promise<Measured>;
}

/** Our runtime: `batch` rows on `slots`, greedy argmax per row (sampling on our side too). */
/** Our configuration's key in the results: "2t sleep", "1t spin". */
const oursKey = (threads: number, spin: boolean) => `${threads}t ${spin ? "spin" : "sleep"}`;

class OursSide implements Side {
  private round = 0;
  /** Whether the last timed step ran in the native decode addon (StepTimings.native). */
  native = false;
  constructor(
    private readonly rt: StepRuntime,
    private readonly slots: number[],
    private readonly prompt: number,
  ) {}

  async run(steps: number): Promise<Measured> {
    const r = this.round++;
    const ids = this.slots.map((_, i) => `r${r}-${i}`);
    let rows: StepRow[] = this.slots.map((slot, i) => ({
      seqId: ids[i]!,
      tokens: promptOf(i, this.prompt),
      slot,
    }));
    const next = (logits: Float32Array[]) =>
      this.slots.map((slot, i) => ({ seqId: ids[i]!, tokens: [argmax(logits[i]!)], slot }));
    rows = next(await this.rt.step(rows)); // prefill
    rows = next(await this.rt.step(rows)); // first decode step (untimed: KV layout settles)
    const m = await timed(steps, this.slots.length, async () => {
      rows = next(await this.rt.step(rows));
    });
    this.native = this.rt.lastTimings.native;
    for (const id of ids) this.rt.release(id);
    return m;
  }
}

/**
 * llama.cpp: `perContext` sequences in each context (one context per distinct adapter),
 * every sequence decoding greedily; one "step" = one token for every sequence. A context's
 * sequences are requested together, so node-llama-cpp batches them into one llama_decode;
 * contexts take turns (run concurrently, N contexts x their threads oversubscribe the 2
 * cores and every ggml barrier spins: measured 0.2 tok/s for 8 contexts).
 */
class PeerSide implements Side {
  constructor(
    private readonly contexts: LlamaContext[],
    private readonly perContext: number,
    private readonly prompt: number,
  ) {}

  async run(steps: number): Promise<Measured> {
    const groups = this.contexts.map((ctx) =>
      Array.from({ length: this.perContext }, () => ctx.getSequence()),
    );
    const seqs = groups.flat();
    try {
      let i = 0;
      const its = groups.map((g) =>
        g.map((s) =>
          s.evaluate(promptOf(i++, this.prompt) as Token[], { temperature: 0 })[Symbol.asyncIterator](),
        ),
      );
      const stepAll = async () => {
        for (const g of its) await Promise.all(g.map((it) => it.next()));
      };
      await stepAll(); // prefill + first token
      await stepAll(); // first decode step (untimed)
      const m = await timed(steps, seqs.length, stepAll);
      await Promise.all(its.flat().map((it) => it.return?.()));
      return m;
    } finally {
      for (const s of seqs) s.dispose();
    }
  }
}

interface Case {
  name: string;
  /** prompt tokens per row before the timed steps: the cached positions the steps attend over */
  context: number;
  batch: number;
  adapters: number;
  weights: string;
  /** by our configuration (`oursKey`: intra-op threads and spin setting) */
  ours: Map<string, OursSide>;
  /** by llama.cpp thread count */
  peer: Map<number, Side>;
}

export async function runDecode(
  files: ModelFiles,
  opts: {
    threads: number;
    peerThreads: number[];
    /** Spin settings of our intra-op workers tried (RuntimeOptions.spinWait); best median reported. */
    oursSpin: boolean[];
    /** Our intra-op thread counts tried (default [threads]); best median reported, as for the peer. */
    oursThreads?: number[];
    rounds: number;
    steps: number;
    quick: boolean;
    /**
     * Prompt lengths (default [8]): every case runs after a prompt of each, so the steps attend over
     * that many cached positions (+ the steps before them) — how attention scales with the context.
     */
    contexts?: number[];
    /** Only the cases whose "name (weights)" contains one of these (default: all). */
    cases?: string[];
    log: (m: string) => void;
  },
): Promise<DecodeResult[]> {
  const { log } = opts;
  for (const p of opts.contexts ?? [])
    if (!Number.isInteger(p) || p < 1 || p + opts.steps + 2 > CONFIG.maxPositionEmbeddings)
      throw new Error(
        `--context ${p}: prompts of 1..${CONFIG.maxPositionEmbeddings - opts.steps - 2} tokens fit the model's ${CONFIG.maxPositionEmbeddings} positions with ${opts.steps} steps`,
      );
  const wanted = (name: string, weights: string) =>
    !opts.cases || opts.cases.some((c) => `${name} (${weights})`.includes(c));
  // The gateway's runtime: the multi-LoRA graph on its own thread (WorkerRuntime, which reads
  // the weights itself); rows without an adapter use slot 0.
  // int8c runs twice: in onnxruntime (nativeDecode off) and in the native decode addon
  // (RuntimeOptions.nativeDecode, with as many threads as onnxruntime gets).
  const ours = async (weights: WeightFormat, slots = 1, nativeDecode = false) => {
    const out = new Map<string, WorkerRuntime>();
    for (const threads of opts.oursThreads ?? [opts.threads]) {
      for (const spinWait of opts.oursSpin) {
        out.set(
          oursKey(threads, spinWait),
          await WorkerRuntime.create(
            { dir: files.modelDir },
            {
              intraOpThreads: threads,
              weights,
              slots: slots + 1,
              rankBuckets: [RANK],
              spinWait,
              nativeDecode,
              nativeDecodeThreads: threads,
            },
          ),
        );
      }
    }
    return out;
  };
  const batches = opts.quick ? [1, 8] : [1, 8, 64];
  const needF32 =
    batches.some((b) => wanted(`decode b=${b}`, "f32 / F32")) ||
    wanted("8 rows, 8 distinct adapters", "f32 / F32");
  const needInt8 = wanted("decode b=1, 8-bit", "int8 / Q8_0");
  const needInt4 = wanted("decode b=1, 4-bit", "int4 / Q4_0");
  const needInt8c = wanted("decode b=1, 8-bit per-channel", "int8c / Q8_0");
  const needNative = wanted("decode b=1, 8-bit per-channel, native", "int8c-native / Q8_0");
  const needNativeLora = wanted("decode b=1, 8-bit per-channel, native, 1 adapter", "int8c-native / Q8_0");
  log("building our sessions (f32, int8, int4 as the cases need; multi-LoRA graph)");
  const none = new Map<string, WorkerRuntime>();
  const f32rt = needF32 ? await ours("f32", ADAPTERS) : none;
  for (const rt of f32rt.values()) {
    for (const [i, dir] of files.adapterDirs.entries())
      rt.loadAdapter(i + 1, await loadPeftAdapter(CONFIG, dir));
  }
  const int8rt = needInt8 ? await ours("int8") : none;
  const int4rt = needInt4 ? await ours("int4") : none;
  const int8crt = needInt8c ? await ours("int8c") : none;
  const nativert = needNative || needNativeLora ? await ours("int8c", 1, true) : none;
  // The adapter case: adapter 0 in slot 1 of the same runtimes (llama.cpp: its GGUF on the Q8_0 model).
  if (needNativeLora)
    for (const rt of nativert.values())
      rt.loadAdapter(1, await loadPeftAdapter(CONFIG, files.adapterDirs[0]!));
  const oursSides = (rts: Map<string, WorkerRuntime>, slots: number[], prompt: number) =>
    new Map([...rts].map(([key, rt]) => [key, new OursSide(rt, slots, prompt)]));

  log("loading llama.cpp (node-llama-cpp 3.21.1, prebuilt CPU binaries)");
  const llama: Llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const models: LlamaModel[] = [];
  // Contexts live only while their measurement runs (a few hundred MB each with logits and
  // compute buffers): the bench stays within a few GB on the shared machine.
  const ctx = (m: LlamaModel, sequences: number, threads: number, prompt: number, lora?: string) =>
    m.createContext({
      sequences,
      contextSize: Math.max(256, sequences * 64, sequences * (prompt + opts.steps + 16)),
      batchSize: Math.min(512, Math.max(64, sequences * prompt)),
      threads: { ideal: threads, min: threads },
      ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
    });
  const f32 = await llama.loadModel({ modelPath: files.gguf.f32 });
  const q8 = await llama.loadModel({ modelPath: files.gguf.q8_0 });
  const q4 = await llama.loadModel({ modelPath: files.gguf.q4_0 });
  models.push(f32, q8, q4);

  // Each peer configuration is measured at every thread count in opts.peerThreads; the
  // figure reported is its best median (see the RESULTS note on ggml's spinning threads).
  const peerSides = (m: LlamaModel, b: number, prompt: number, lora?: string[]): Map<number, Side> => {
    const out = new Map<number, Side>();
    for (const t of opts.peerThreads) {
      out.set(t, {
        async run(steps: number): Promise<Measured> {
          const contexts = lora
            ? await Promise.all(lora.map((g) => ctx(m, 1, t, prompt, g)))
            : [await ctx(m, b, t, prompt)];
          try {
            return await new PeerSide(contexts, lora ? 1 : b, prompt).run(steps);
          } finally {
            for (const c of contexts) await c.dispose();
          }
        },
      });
    }
    return out;
  };
  const all: Case[] = [];
  for (const prompt of opts.contexts ?? [PROMPT]) {
    for (const b of batches) {
      all.push({
        name: `decode b=${b}`,
        context: prompt,
        batch: b,
        adapters: 0,
        weights: "f32 / F32",
        ours: oursSides(f32rt, Array(b).fill(0), prompt),
        peer: peerSides(f32, b, prompt),
      });
    }
    all.push({
      name: "decode b=1, 8-bit",
      context: prompt,
      batch: 1,
      adapters: 0,
      weights: "int8 / Q8_0",
      ours: oursSides(int8rt, [0], prompt),
      peer: peerSides(q8, 1, prompt),
    });
    all.push({
      name: "decode b=1, 8-bit per-channel",
      context: prompt,
      batch: 1,
      adapters: 0,
      weights: "int8c / Q8_0",
      ours: oursSides(int8crt, [0], prompt),
      peer: peerSides(q8, 1, prompt),
    });
    all.push({
      name: "decode b=1, 8-bit per-channel, native",
      context: prompt,
      batch: 1,
      adapters: 0,
      weights: "int8c-native / Q8_0",
      ours: oursSides(nativert, [0], prompt),
      peer: peerSides(q8, 1, prompt),
    });
    all.push({
      name: "decode b=1, 8-bit per-channel, native, 1 adapter",
      context: prompt,
      batch: 1,
      adapters: 1,
      weights: "int8c-native / Q8_0",
      ours: oursSides(nativert, [1], prompt),
      peer: peerSides(q8, 1, prompt, files.adapterGgufs.slice(0, 1)),
    });
    all.push({
      name: "decode b=1, 4-bit",
      context: prompt,
      batch: 1,
      adapters: 0,
      weights: "int4 / Q4_0",
      ours: oursSides(int4rt, [0], prompt),
      peer: peerSides(q4, 1, prompt),
    });
    all.push({
      name: "8 rows, 8 distinct adapters",
      context: prompt,
      batch: ADAPTERS,
      adapters: ADAPTERS,
      weights: "f32 / F32",
      ours: oursSides(
        f32rt,
        Array.from({ length: ADAPTERS }, (_, i) => i + 1),
        prompt,
      ),
      peer: peerSides(f32, 1, prompt, files.adapterGgufs),
    });
  }
  const cases = all.filter((c) => wanted(c.name, c.weights));

  const oursRounds = cases.map((c) => new Map([...c.ours.keys()].map((s) => [s, [] as Measured[]])));
  const peerRounds = cases.map((c) => new Map([...c.peer.keys()].map((t) => [t, [] as Measured[]])));
  const tps = (xs: Measured[]) => median(xs.map((x) => x.tokPerS));
  /** The configuration with the best median tokens/s, and that median. */
  const best = <K>(byConfig: Map<K, Measured[]>): [K, number] =>
    [...byConfig].map(([k, xs]): [K, number] => [k, tps(xs)]).reduce((a, b) => (b[1] > a[1] ? b : a));
  const cpuMs = (xs: Measured[]) => median(xs.map((x) => x.cpuMsPerToken));
  for (let r = 0; r < opts.rounds; r++) {
    for (const [i, c] of cases.entries()) {
      // b=64 steps take ~1 s each; 8 contexts stepping in turn are 8 decodes per step.
      const steps = c.batch >= 64 || c.adapters > 1 ? Math.max(2, opts.steps >> 2) : opts.steps;
      const runPeer = async () => {
        for (const [t, side] of c.peer) peerRounds[i]!.get(t)!.push(await side.run(steps));
      };
      const runOurs = async () => {
        for (const [key, side] of c.ours) oursRounds[i]!.get(key)!.push(await side.run(steps));
      };
      if (r % 2 === 0) {
        await runOurs();
        await runPeer();
      } else {
        await runPeer();
        await runOurs();
      }
      const now = (x: Measured) => `${round(x.tokPerS, 1)} tok/s (${round(x.cpuMsPerToken, 1)} CPU ms/token)`;
      const oursNow = [...oursRounds[i]!].map(([key, xs]) => `${key} ${now(xs.at(-1)!)}`).join(", ");
      const peerNow = [...peerRounds[i]!].map(([t, xs]) => `${t}t ${now(xs.at(-1)!)}`).join(", ");
      log(
        `round ${r + 1}/${opts.rounds} ${c.name} (${c.weights}), context ${c.context}: ours ${oursNow}; llama.cpp ${peerNow}`,
      );
    }
  }
  for (const m of models) await m.dispose();
  await llama.dispose();
  for (const rts of [f32rt, int8rt, int4rt, int8crt, nativert])
    for (const rt of rts.values()) await rt.dispose();
  return cases.map((c, i) => {
    const [oursConfig, ours] = best(oursRounds[i]!);
    const [peerThreads, peer] = best(peerRounds[i]!);
    const oursCpu = cpuMs(oursRounds[i]!.get(oursConfig)!);
    const peerCpu = cpuMs(peerRounds[i]!.get(peerThreads)!);
    return {
      case: c.name,
      context: c.context,
      batch: c.batch,
      adapters: c.adapters,
      weights: c.weights,
      ours: round(ours, 2),
      peer: round(peer, 2),
      ratio: round(ours / peer, 3),
      peerThreads,
      oursThreads: Number.parseInt(oursConfig, 10),
      oursSpin: oursConfig.endsWith("spin"),
      oursPath: c.ours.get(oursConfig)!.native ? "native" : "onnxruntime",
      oursCpuMsPerToken: round(oursCpu, 3),
      peerCpuMsPerToken: round(peerCpu, 3),
      cpuRatio: round(peerCpu / oursCpu, 3),
      oursRounds: oursRounds[i]!.get(oursConfig)!.map((x) => round(x.tokPerS, 2)),
      oursMedianByConfig: Object.fromEntries(
        [...oursRounds[i]!].map(([key, xs]) => [key, round(tps(xs), 2)]),
      ),
      oursCpuMsByConfig: Object.fromEntries(
        [...oursRounds[i]!].map(([key, xs]) => [key, round(cpuMs(xs), 3)]),
      ),
      peerRounds: peerRounds[i]!.get(peerThreads)!.map((x) => round(x.tokPerS, 2)),
      peerMedianByThreads: Object.fromEntries([...peerRounds[i]!].map(([t, xs]) => [t, round(tps(xs), 2)])),
    };
  });
}

const PEERS_TS = fileURLToPath(new URL("./peers.ts", import.meta.url));

/** Peak RSS of a fresh process per side, same weights. */
export async function runRss(
  files: ModelFiles,
  opts: { threads: number; log: (m: string) => void },
): Promise<RssResult[]> {
  const measure = (side: "ours" | "peer", weights: string): { peakMiB: number; rssMiB: number } => {
    const res = spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        PEERS_TS,
        "--child",
        `rss-${side}`,
        "--weights",
        weights,
        "--model-dir",
        files.modelDir,
        "--gguf",
        weights === "f32" ? files.gguf.f32 : files.gguf.q8_0,
        "--threads",
        String(opts.threads),
      ],
      { encoding: "utf8" },
    );
    if (res.status !== 0) throw new Error(`rss child ${side} failed: ${res.stderr}`);
    return JSON.parse(res.stdout.trim().split("\n").at(-1)!);
  };
  const out: RssResult[] = [];
  for (const weights of ["f32", "int8", "int8c", "int8c-native"]) {
    const ours = measure("ours", weights);
    const peer = measure("peer", weights);
    opts.log(
      `RSS ${weights}: ours ${ours.peakMiB} MiB (${ours.rssMiB} after decoding), llama.cpp ${peer.peakMiB} MiB (${peer.rssMiB})`,
    );
    out.push({
      weights: weights === "f32" ? "f32 / F32" : `${weights} / Q8_0`,
      ours: ours.peakMiB,
      peer: peer.peakMiB,
      ratio: round(ours.peakMiB / peer.peakMiB, 3),
      oursAfterDecode: ours.rssMiB,
      peerAfterDecode: peer.rssMiB,
    });
  }
  return out;
}

/** Child: load, prompt + 16 decode steps at batch 1, print peak RSS and the RSS then. */
export async function rssChild(side: "ours" | "peer", argv: string[]): Promise<void> {
  const arg = (n: string) => argv[argv.indexOf(n) + 1]!;
  const threads = Number(arg("--threads"));
  const { processMemory } = await import("./peers-common.ts");
  if (side === "ours") {
    // The gateway's configuration: multi-LoRA graph, 16 slots, rank 16, q/k/v/o, on its own
    // thread, which reads the weights itself (onnxruntime holds the only copy).
    // "int8c-native": int8c with the native decode addon, which holds its own int8 copy and f32 embedding.
    const weights = arg("--weights");
    const rt = await WorkerRuntime.create(
      { dir: arg("--model-dir") },
      {
        intraOpThreads: threads,
        slots: 16,
        rankBuckets: [RANK],
        weights: (weights === "int8c-native" ? "int8c" : weights) as WeightFormat,
        nativeDecode: weights === "int8c-native",
      },
    );
    await new OursSide(rt, [0], PROMPT).run(16);
  } else {
    const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
    const m = await llama.loadModel({ modelPath: arg("--gguf") });
    const c = await m.createContext({
      sequences: 1,
      contextSize: 256,
      threads: { ideal: threads, min: threads },
    });
    await new PeerSide([c], 1, PROMPT).run(16);
  }
  const { peak, rss } = processMemory();
  const mib = (b: number) => Math.round(b / 2 ** 20);
  process.stdout.write(`${JSON.stringify({ peakMiB: mib(peak), rssMiB: mib(rss) })}\n`);
  process.exit(0);
}
