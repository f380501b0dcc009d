/**
 * What onnxruntime-node charges a `session.run` per graph element, apart from the kernels' own
 * work: per executed node, per `If` (the else-branch taken, one Identity, as the LoRA skip runs
 * it; with 1 and with 15 outer-scope values read by the other branch), per fed input and per
 * fetched output. Each case is a small graph over a [1,1,576] tensor (SmolLM's hidden size) run
 * `--runs` times per round in interleaved rounds; the figure is the median µs per run (the lesser
 * of wall and process CPU time, so a preempted round does not count) minus the empty graph's,
 * divided by the count. These are the per-step costs a batch-1 decode step pays for its ~580
 * nodes, 60 `If`s, ~216 fed inputs and 2 outputs (bench/RESULTS.md, "Peers", 2026-12-04 evening).
 *
 *   npm run bench:ort-overhead -- [--json] [--threads 1] [--rounds 30] [--runs 100]
 */
import onnxProto from "onnx-proto";
import ort from "onnxruntime-node";
import { FLOAT, GraphBuilder } from "../packages/model-runtime/src/graph.ts";
import { argValue, loadAverage, median, round } from "./peers-common.ts";

const { onnx } = onnxProto;
const BOOL = 9;
const args = process.argv.slice(2);
const THREADS = Number(argValue(args, "--threads", "1"));
const ROUNDS = Number(argValue(args, "--rounds", "30"));
const RUNS = Number(argValue(args, "--runs", "100"));
const HIDDEN = 576;
const KV = 192;

type Kind = "empty" | "node" | "if" | "if15" | "input" | "output" | "concatOutput";
interface Case {
  kind: Kind;
  count: number;
  what: string;
}
const CASES: Case[] = [
  { kind: "empty", count: 0, what: "empty graph (one Relu + Identity)" },
  { kind: "node", count: 120, what: "an executed node (Relu on [1,1,576])" },
  { kind: "if", count: 60, what: "an If, else-branch taken (one Identity)" },
  { kind: "if15", count: 60, what: "the same If, the then-branch reading 15 outer values" },
  { kind: "input", count: 242, what: "a fed input ([1,576,16], not read)" },
  { kind: "output", count: 60, what: "a fetched output ([1,1,192]; 60 Slice+Relu feed them)" },
  { kind: "concatOutput", count: 60, what: "the same 60 tensors Concat'ed into one output" },
];

function graph(c: Case): Uint8Array {
  const g = new GraphBuilder();
  g.input("x", FLOAT, [1, 1, HIDDEN]);
  g.input("on", BOOL, []);
  const wide = c.kind === "if15" ? 14 : 0;
  for (let j = 0; j < wide; j++) g.input(`w${j}`, FLOAT, [1, 1, HIDDEN]);
  if (c.kind === "input") for (let j = 0; j < c.count; j++) g.input(`extra${j}`, FLOAT, ["u", HIDDEN, 16]);
  let x = g.op("Relu", ["x"]);
  const floatOut = (name: string) => ({ name, type: { tensorType: { elemType: FLOAT } } });
  if (c.kind === "node") for (let i = 0; i < c.count; i++) x = g.op("Relu", [x]);
  if (c.kind === "if" || c.kind === "if15") {
    for (let i = 0; i < c.count; i++) {
      const name = `if${i}`;
      const then: OnnxNode[] = [];
      let t = x;
      for (let j = 0; j < Math.max(1, wide); j++) {
        then.push({
          opType: "Add",
          input: [t, wide ? `w${j}` : t],
          output: [`${name}.a${j}`],
          name: `${name}.a${j}`,
        });
        t = `${name}.a${j}`;
      }
      const other = { opType: "Identity", input: [x], output: [`${name}.e`], name: `${name}.e` };
      g.nodes.push({
        opType: "If",
        input: ["on"],
        output: [name],
        name,
        attribute: [
          {
            name: "then_branch",
            type: onnx.AttributeProto.AttributeType.GRAPH,
            g: { name: `${name}.then`, node: then, output: [floatOut(t)] },
          },
          {
            name: "else_branch",
            type: onnx.AttributeProto.AttributeType.GRAPH,
            g: { name: `${name}.else`, node: [other], output: [floatOut(`${name}.e`)] },
          },
        ],
      });
      x = name;
    }
  }
  if (c.kind === "output" || c.kind === "concatOutput") {
    const parts = Array.from({ length: c.count }, () =>
      g.op("Relu", [g.op("Slice", [x, g.int64Init([0]), g.int64Init([KV]), g.int64Init([2])])]),
    );
    if (c.kind === "output") {
      parts.forEach((p, i) => {
        g.op("Identity", [p], {}, `o${i}`);
        g.output(`o${i}`, FLOAT, [1, 1, KV]);
      });
    } else {
      g.op("Concat", parts, { axis: 2 }, "o");
      g.output("o", FLOAT, [1, 1, KV * c.count]);
    }
  }
  g.op("Identity", [x], {}, "y");
  g.output("y", FLOAT, [1, 1, HIDDEN]);
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 10,
      opsetImport: [{ domain: "", version: 23 }],
      graph: { name: c.kind, node: g.nodes, initializer: g.initializers, input: g.inputs, output: g.outputs },
    }),
  ).finish();
}
type OnnxNode = GraphBuilder["nodes"][number];

const sessions: ort.InferenceSession[] = [];
for (const c of CASES) {
  sessions.push(
    await ort.InferenceSession.create(graph(c), {
      intraOpNumThreads: THREADS,
      interOpNumThreads: 1,
      extra: { session: { intra_op: { allow_spinning: "0" } } },
    }),
  );
}
const x = new ort.Tensor("float32", new Float32Array(HIDDEN), [1, 1, HIDDEN]);
const on = new ort.Tensor("bool", Uint8Array.of(0), []);
const extra = new ort.Tensor("float32", new Float32Array(HIDDEN * 16), [1, HIDDEN, 16]);
const feedsOf = (c: Case): Record<string, ort.Tensor> => {
  const feeds: Record<string, ort.Tensor> = { x, on };
  if (c.kind === "if15") for (let j = 0; j < 14; j++) feeds[`w${j}`] = x;
  if (c.kind === "input") for (let j = 0; j < c.count; j++) feeds[`extra${j}`] = extra;
  return feeds;
};
const perRun = CASES.map(() => [] as number[]);
for (let r = 0; r < ROUNDS; r++) {
  const order = CASES.map((_, i) => i);
  if (r % 2) order.reverse();
  for (const i of order) {
    const feeds = feedsOf(CASES[i]!);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let j = 0; j < RUNS; j++) await sessions[i]!.run(feeds);
    const wallUs = ((performance.now() - t0) * 1000) / RUNS;
    const cpu = process.cpuUsage(cpu0);
    perRun[i]!.push(Math.min(wallUs, (cpu.user + cpu.system) / RUNS));
  }
}
for (const s of sessions) await s.release();

const empty = median(perRun[0]!);
const out = {
  threads: THREADS,
  rounds: ROUNDS,
  runs: RUNS,
  loadAverage: loadAverage(),
  results: CASES.map((c, i) => {
    const us = median(perRun[i]!);
    return {
      case: c.kind,
      what: c.what,
      count: c.count,
      usPerRun: round(us, 2),
      usEach: c.count ? round((us - empty) / c.count, 3) : null,
    };
  }),
};
if (args.includes("--json")) process.stdout.write(`${JSON.stringify(out)}\n`);
else {
  console.log("| case | count | µs per run | µs each (over the empty graph) |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const r of out.results) console.log(`| ${r.what} | ${r.count} | ${r.usPerRun} | ${r.usEach ?? "–"} |`);
  console.log(`\nthreads ${THREADS}, load average ${out.loadAverage}`);
}
