/**
 * What a batch-1 int8 GEMV costs natively against onnxruntime's DynamicQuantizeMatMul chain, on the
 * SmolLM-135M decode shapes: 30 layers x (q/k/v packed 960x576, o 576x576, gate/up packed 3072x576,
 * down 576x1536) + the LM head 49,152x576 — the 121 int8c matmuls of a step, ~134.6 MB of weights and
 * scales. Weights come from the runtime's quantizer (`quantizePerChannel`, seeded random f32), the
 * activations are quantized per call to uint8 as DynamicQuantizeMatMul does. Sides, interleaved per
 * round, each `--runs` passes: onnxruntime-node (one graph of the 121 nodes, outputs Concat'ed into one
 * fetch; 1 and 2 intra-op threads), bench/gemv.cpp (AVX-512 VNNI, compiled here with
 * g++ -O3 -march=native -fopenmp; 1 and 2 threads, a barrier after every matrix) and a plain streaming
 * read of the same bytes (1 and 2 threads). The native accumulators are checked equal to a scalar
 * loop's, and the native outputs against onnxruntime's. Figures: median ms per pass (a token's worth of
 * matmuls) of wall and process CPU, and GB/s over the lesser of wall and CPU / threads.
 *
 *   npm run bench:gemv -- [--json] [--rounds 15] [--runs 5]
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import onnxProto from "onnx-proto";
import ort from "onnxruntime-node";
import { FLOAT, GraphBuilder } from "../packages/model-runtime/src/graph.ts";
import { quantizePerChannel } from "../packages/model-runtime/src/quantize.ts";
import { argValue, loadAverage, median, round } from "./peers-common.ts";

const { onnx } = onnxProto;
const INT8 = 3;
const args = process.argv.slice(2);
const ROUNDS = Number(argValue(args, "--rounds", "15"));
const RUNS = Number(argValue(args, "--runs", "5"));
const H = 576;
const FF = 1536;
const LAYERS = 30;
const VOCAB = 49_152;

/** [rows (out), cols (in)] of every matmul of a step, in order. */
const SHAPES: [number, number][] = [];
for (let l = 0; l < LAYERS; l++) SHAPES.push([H + 2 * 192, H], [H, H], [2 * FF, H], [H, FF]);
SHAPES.push([VOCAB, H]);

let seed = 0x9e3779b9;
const rnd = (): number => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
};
const randoms = (n: number): Float32Array => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rnd();
  return a;
};

const dir = mkdtempSync(join(tmpdir(), "bench-gemv-"));
try {
  // Weights: quantized once; the ONNX graph takes MatMul's B [in, out], the native side [out, in].
  const g = new GraphBuilder();
  g.input("x576", FLOAT, [1, H]);
  g.input("x1536", FLOAT, [1, FF]);
  const header = new Int32Array(1 + 2 * SHAPES.length);
  header[0] = SHAPES.length;
  const x576 = randoms(H);
  const x1536 = randoms(FF);
  const parts: Uint8Array[] = [
    new Uint8Array(header.buffer),
    new Uint8Array(x576.buffer),
    new Uint8Array(x1536.buffer),
  ];
  const outs: string[] = [];
  for (const [i, [rows, cols]] of SHAPES.entries()) {
    header[1 + 2 * i] = rows;
    header[2 + 2 * i] = cols;
    const q = quantizePerChannel(randoms(rows * cols), rows, cols);
    const wq = g.init(`m${i}.q8c`, [cols, rows], INT8, new Uint8Array(q.data.buffer));
    const sc = g.floatInit(`m${i}.scales`, [rows], q.scales);
    outs.push(
      g.opN(
        "DynamicQuantizeMatMul",
        [cols === H ? "x576" : "x1536", wq, sc],
        1,
        {},
        undefined,
        "com.microsoft",
      )[0]!,
    );
    const rowMajor = new Int8Array(rows * cols);
    for (let c = 0; c < cols; c++)
      for (let r = 0; r < rows; r++) rowMajor[r * cols + c] = q.data[c * rows + r]!;
    parts.push(new Uint8Array(rowMajor.buffer), new Uint8Array(q.scales.buffer));
  }
  const totalOut = SHAPES.reduce((a, [r]) => a + r, 0);
  g.op("Concat", outs, { axis: 1 }, "y");
  g.output("y", FLOAT, [1, totalOut]);
  const model = onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 10,
      opsetImport: [
        { domain: "", version: 23 },
        { domain: "com.microsoft", version: 1 },
      ],
      graph: { name: "gemv", node: g.nodes, initializer: g.initializers, input: g.inputs, output: g.outputs },
    }),
  ).finish();
  const weightsFile = join(dir, "weights.bin");
  writeFileSync(weightsFile, Buffer.concat(parts));
  const weightBytes = SHAPES.reduce((a, [r, c]) => a + r * c + 4 * r, 0);

  const bin = join(dir, "gemv");
  const src = fileURLToPath(new URL("./gemv.cpp", import.meta.url));
  execFileSync("g++", ["-O3", "-march=native", "-fopenmp", "-o", bin, src], { stdio: "pipe" });
  // Passive waiting, as onnxruntime here runs (allow_spinning 0): a spinning barrier on a loaded
  // 2-core machine burns the core its partner needs.
  const child = spawn(bin, [weightsFile], {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, OMP_WAIT_POLICY: "passive" },
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const ask = async (cmd?: string): Promise<Record<string, unknown>> => {
    if (cmd) child.stdin.write(`${cmd}\n`);
    const line = await lines.next();
    if (line.done) throw new Error(`gemv exited (${child.exitCode})`);
    return JSON.parse(line.value);
  };
  const ready = (await ask()) as { matrices: number; bytes: number; mismatches: number; isa: string };
  if (ready.mismatches !== 0)
    throw new Error(`native GEMV != scalar reference in ${ready.mismatches} outputs`);

  const sessions = new Map<number, ort.InferenceSession>();
  for (const threads of [1, 2]) {
    sessions.set(
      threads,
      await ort.InferenceSession.create(model, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        extra: { session: { intra_op: { allow_spinning: "0" } } },
      }),
    );
  }
  const feeds = {
    x576: new ort.Tensor("float32", x576, [1, H]),
    x1536: new ort.Tensor("float32", x1536, [1, FF]),
  };

  // Native vs onnxruntime on the same quantized weights and inputs.
  const ortY = (await sessions.get(1)!.run(feeds)).y!.data as Float32Array;
  await ask(`gemv 1 1`);
  await ask(`dump ${join(dir, "y.bin")}`);
  const y = new Float32Array(readFileSync(join(dir, "y.bin")).buffer.slice(0));
  let maxDiff = 0;
  let maxAbs = 0;
  for (let i = 0; i < totalOut; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(y[i]! - ortY[i]!));
    maxAbs = Math.max(maxAbs, Math.abs(ortY[i]!));
  }
  const relDiff = maxDiff / maxAbs;
  if (!(relDiff < 0.02)) throw new Error(`native GEMV differs from onnxruntime by ${relDiff} of max |y|`);

  const SIDES = [
    { side: "onnxruntime DynamicQuantizeMatMul", threads: 1 },
    { side: "onnxruntime DynamicQuantizeMatMul", threads: 2 },
    { side: "native VNNI GEMV", threads: 1 },
    { side: "native VNNI GEMV", threads: 2 },
    { side: "memory read", threads: 1 },
    { side: "memory read", threads: 2 },
  ] as const;
  const wall = SIDES.map(() => [] as number[]);
  const cpu = SIDES.map(() => [] as number[]);
  const load0 = loadAverage();
  for (let r = 0; r < ROUNDS; r++) {
    const order = SIDES.map((_, i) => i);
    if (r % 2) order.reverse();
    for (const i of order) {
      const { side, threads } = SIDES[i]!;
      if (side.startsWith("onnxruntime")) {
        const s = sessions.get(threads)!;
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        for (let j = 0; j < RUNS; j++) await s.run(feeds);
        wall[i]!.push((performance.now() - t0) / RUNS);
        const c = process.cpuUsage(c0);
        cpu[i]!.push((c.user + c.system) / 1000 / RUNS);
      } else {
        const res = (await ask(`${side === "memory read" ? "read" : "gemv"} ${threads} ${RUNS}`)) as {
          wallMs: number;
          cpuMs: number;
        };
        wall[i]!.push(res.wallMs);
        cpu[i]!.push(res.cpuMs);
      }
    }
  }
  child.stdin.end();
  for (const s of sessions.values()) await s.release();

  const results = SIDES.map(({ side, threads }, i) => {
    const wallMs = median(wall[i]!);
    const cpuMs = median(cpu[i]!);
    const ms = Math.min(wallMs, cpuMs / threads);
    return {
      side,
      threads,
      wallMs: round(wallMs, 3),
      cpuMs: round(cpuMs, 3),
      ms: round(ms, 3),
      gbPerS: round(weightBytes / ms / 1e6, 1),
    };
  });
  const ortMs = results[0]!.ms;
  const out = {
    matrices: ready.matrices,
    weightBytes,
    isa: ready.isa,
    scalarMismatches: ready.mismatches,
    maxDiffVsOrtOfMaxAbs: round(relDiff, 6),
    rounds: ROUNDS,
    runs: RUNS,
    loadAverage: [load0, loadAverage()],
    results: results.map((r) => ({ ...r, vsOrt1Thread: round(ortMs / r.ms, 2) })),
  };
  if (args.includes("--json")) process.stdout.write(`${JSON.stringify(out)}\n`);
  else {
    console.log(
      "| side | threads | wall ms / pass | CPU ms / pass | ms (min of wall, CPU / threads) | GB/s | speed vs ORT 1 thread |",
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const r of out.results)
      console.log(
        `| ${r.side} | ${r.threads} | ${r.wallMs} | ${r.cpuMs} | ${r.ms} | ${r.gbPerS} | ${r.vsOrt1Thread} |`,
      );
    console.log(
      `\n${ready.matrices} matrices, ${(weightBytes / 1e6).toFixed(1)} MB, ${ready.isa}; native = scalar reference ` +
        `(0 mismatches), max |native − ORT| ${out.maxDiffVsOrtOfMaxAbs} of max |y|; load average ${load0} → ${loadAverage()}`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
