/**
 * Ours against the peers a user would pick instead: llama.cpp (through node-llama-cpp's
 * prebuilt CPU binaries) for decoding, libdivsufsort for suffix arrays. Same weights, same
 * texts, same thread count, interleaved rounds, medians.
 *
 *   npm run bench:peers                 human table (progress on stderr)
 *   npm run bench:peers -- --json       one JSON object on stdout
 *   options: --quick (fewer rounds, 2M/5M-byte texts)  --only decode,rss,quality,sa  --rounds N
 *            --steps N (timed decode steps per round)  --threads N (default 2, both sides)
 *            --peer-threads 1,2 (llama.cpp thread counts tried; best median reported)
 *            --ours-spin 0 (our intra-op workers sleep; "0,1": also spinning inside a run, best median reported)
 *            --ours-threads 1,2 (our intra-op thread counts tried — and the native decode step's —, default
 *              1 and --threads like the peer's; best median reported, each configuration's tok/s and CPU
 *              ms/token in oursMedianByConfig / oursCpuMsByConfig)
 *            --cases 8-bit,4-bit (only the decode cases whose "name (weights)" contains one of these)
 *            --context 16,256,1536 (prompt tokens per row before the timed decode steps, each case at each;
 *              default 8: how the step's attention scales with the cached positions)
 *
 * Decode: a SmolLM-135M-shaped model with random weights, generated as HF safetensors (f32),
 * converted by the project's GGUF writer (packages/model-runtime/src/gguf.ts) for llama.cpp,
 * and by the project's quantizer for our int8 / int8c (per-channel) / 4-bit runtimes. Each case prefills 8 tokens
 * per row (untimed), then times greedy decode steps (sampling included on both sides). A
 * round runs every case once on each side, ours and the peer alternately (the order flips
 * each round); figures are medians over rounds. Distinct adapters on llama.cpp are one
 * context per adapter (its LoRA is per context), stepped concurrently.
 *
 * RSS: each side in its own fresh process loading the same weights (ours: the gateway's
 * runtime configuration; llama.cpp: model + one context), a prompt and 16 decode steps;
 * peak resident set (VmHWM) of the whole process.
 *
 * SA: suffix arrays of byte texts (10M bytes of State of the Union addresses, 50M bytes of
 * word-bigram text generated from them and Moby-Dick) by our SA-IS — the native addon
 * (@openledger/suffix-native, what the platform uses when built; `ours`) and the TypeScript
 * fallback (`oursTypescript`), each in a Node child process — and libdivsufsort (a C driver
 * compiled here with the system gcc; libdivsufsort-dev is installed with apt-get when
 * missing). All single-threaded; arrays checked identical. Peak bytes per input byte =
 * (peak RSS during the build - RSS with the input loaded) / n.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DecodeResult, loadAverage, type RssResult, round, type SaResult } from "./peers-common.ts";
import type { QualityResult } from "./peers-quality.ts";

const args = process.argv.slice(2);
const argStr = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const JSON_OUT = args.includes("--json");
const QUICK = args.includes("--quick");
const THREADS = Number(argStr("--threads", "2"));
const ONLY = new Set(argStr("--only", "decode,rss,quality,sa").split(","));
const log = (msg: string) => process.stderr.write(`[bench:peers] ${msg}\n`);

async function main(): Promise<void> {
  const out: {
    machine: Record<string, unknown>;
    decode: DecodeResult[];
    rss: RssResult | null;
    rssByWeights: RssResult[];
    quality: QualityResult[];
    sa: SaResult[];
  } = {
    machine: { threads: THREADS, loadAverageStart: loadAverage() },
    decode: [],
    rss: null,
    rssByWeights: [],
    quality: [],
    sa: [],
  };
  const tmp = await mkdtemp(join(tmpdir(), "bench-peers-"));
  try {
    if (ONLY.has("decode") || ONLY.has("rss") || ONLY.has("quality")) {
      const { prepareModelFiles, runDecode, runRss } = await import("./peers-decode.ts");
      const files = await prepareModelFiles(tmp, log);
      if (ONLY.has("decode")) {
        out.decode = await runDecode(files, {
          threads: THREADS,
          peerThreads: argStr("--peer-threads", `1,${THREADS}`)
            .split(",")
            .map(Number)
            .filter((t, i, a) => a.indexOf(t) === i),
          // Both sides get the same choice of thread counts (1 and --threads), best median reported:
          // a memory-bound b=1 step can run faster on one thread than on two (the native step does).
          oursThreads: argStr("--ours-threads", `1,${THREADS}`)
            .split(",")
            .map(Number)
            .filter((t, i, a) => a.indexOf(t) === i),
          oursSpin: argStr("--ours-spin", "0")
            .split(",")
            .map((x) => x === "1")
            .filter((t, i, a) => a.indexOf(t) === i),
          rounds: Number(argStr("--rounds", QUICK ? "2" : "5")),
          steps: Number(argStr("--steps", QUICK ? "4" : "16")),
          quick: QUICK,
          ...(args.includes("--cases") ? { cases: argStr("--cases", "").split(",") } : {}),
          ...(args.includes("--context") ? { contexts: argStr("--context", "").split(",").map(Number) } : {}),
          log,
        });
      }
      if (ONLY.has("rss")) {
        out.rssByWeights = await runRss(files, { threads: THREADS, log });
        out.rss = out.rssByWeights.find((r) => r.weights.startsWith("f32")) ?? null;
      }
      if (ONLY.has("quality")) {
        const { runQuality } = await import("./peers-quality.ts");
        out.quality = await runQuality({
          modelDir: files.modelDir,
          threads: THREADS,
          trainSteps: Number(argStr("--train-steps", QUICK ? "60" : "600")),
          log,
        });
      }
    }
    if (ONLY.has("sa")) {
      const { runSa } = await import("./peers-sa.ts");
      out.sa = await runSa(tmp, {
        sizes: QUICK ? [2_000_000, 5_000_000] : [10_000_000, 50_000_000],
        rounds: Number(argStr("--sa-rounds", QUICK ? "1" : "3")),
        log,
      });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  out.machine.loadAverageEnd = loadAverage();

  if (JSON_OUT) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  if (out.decode.length > 0) {
    console.log("\nDecode tokens/s (medians of interleaved rounds; ratio = ours / llama.cpp)\n");
    console.log(
      "| case | context | batch | adapters | weights (ours / llama.cpp) | ours tok/s (workers) | llama.cpp tok/s (threads) | ratio | CPU ms/token ours / llama.cpp |",
    );
    console.log("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    for (const d of out.decode) {
      console.log(
        `| ${d.case} | ${d.context} | ${d.batch} | ${d.adapters} | ${d.weights} | ${round(d.ours, 1)} (${d.oursThreads}t ${d.oursSpin ? "spin" : "sleep"}) | ${round(d.peer, 1)} (${d.peerThreads}) | ${round(d.ratio)} | ${round(d.oursCpuMsPerToken, 2)} / ${round(d.peerCpuMsPerToken, 2)} |`,
      );
    }
  }
  if (out.rssByWeights.length > 0) {
    console.log("\nPeak RSS, same weights (MiB)\n");
    console.log("| weights | ours | llama.cpp | ratio |");
    console.log("| --- | ---: | ---: | ---: |");
    for (const r of out.rssByWeights)
      console.log(`| ${r.weights} | ${r.ours} | ${r.peer} | ${round(r.ratio)} |`);
  }
  if (out.quality.length > 0) {
    console.log("\nQuantized weights vs f32 (held-out next-token loss in nats; greedy agreement with f32)\n");
    console.log(
      "| model | tokens | loss f32 | loss int8 | loss int4 | loss int8c | agreement int8 | int4 | int8c |",
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const q of out.quality) {
      const l = (w: "f32" | "int8" | "int4" | "int8c") => (q.loss ? q.loss[w] : "n/a");
      const a = q.greedyAgreement;
      console.log(
        `| ${q.model} | ${q.heldOutTokens} | ${l("f32")} | ${l("int8")} | ${l("int4")} | ${l("int8c")} | ${a.int8} | ${a.int4} | ${a.int8c} |`,
      );
    }
  }
  if (out.sa.length > 0) {
    console.log(
      "\nSuffix array build, bytes/s, 1 thread (medians; ratio = ours / libdivsufsort; ours = the builder the platform uses)\n",
    );
    console.log(
      "| input | ours (builder) | ours TypeScript | libdivsufsort | ratio | ratio TypeScript | ours peak B/byte | TypeScript peak B/byte | libdivsufsort peak B/byte | identical |",
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (const s of out.sa) {
      const f = (x: number | null, d = 0) => (x === null ? "n/a" : round(x, d).toLocaleString("en-US"));
      console.log(
        `| ${s.input} | ${f(s.ours)} (${s.oursBuilder}) | ${f(s.oursTypescript)} | ${f(s.libdivsufsort)} | ${f(s.ratio, 2)} | ${f(s.ratioTypescript, 2)} | ${f(s.oursBytesPerToken, 2)} | ${f(s.oursTypescriptBytesPerToken, 2)} | ${f(s.libdivsufsortBytesPerToken, 2)} | ${s.identical ?? "n/a"} |${s.note ? ` ${s.note}` : ""}`,
      );
    }
  }
  console.log(`\nload average ${JSON.stringify(out.machine)}`);
}

// Child modes (RSS and SA measurements run in fresh processes).
const mode = argStr("--child", "");
if (mode === "") {
  await main();
} else {
  const { childMain } = await import("./peers-child.ts");
  await childMain(mode, args);
}
